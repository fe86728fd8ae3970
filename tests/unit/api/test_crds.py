"""The generated CRDs: up to date, bounded, carrying the rules and columns users rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conveyor.api import crdgen
from conveyor.api.crd import all_crds

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "crds"


def test_crds_directory_is_up_to_date():
    stale = crdgen.stale_files(CRDS)
    assert stale == [], f"regenerate with `python -m conveyor.api.crdgen`: {stale}"


def test_check_mode_names_stale_files(tmp_path, capsys):
    assert crdgen.main(["--output-dir", str(tmp_path)]) == 0
    assert crdgen.main(["--check", "--output-dir", str(tmp_path)]) == 0
    target = tmp_path / "conveyor.dev_pipelineruns.yaml"
    target.write_text(target.read_text() + "# edited\n")
    capsys.readouterr()
    assert crdgen.main(["--check", "--output-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "conveyor.dev_pipelineruns.yaml" in err
    assert "conveyor.dev_pipelines.yaml" not in err


def _schema(file_name):
    crd = all_crds()[file_name]
    return crd, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(node, path="$"):
    yield path, node
    for key, value in (node.get("properties") or {}).items():
        yield from _walk(value, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("file_name", sorted(all_crds()))
def test_every_string_list_and_map_is_bounded(file_name):
    _, schema = _schema(file_name)
    for path, node in _walk(schema):
        if path in ("$.apiVersion", "$.kind"):
            continue
        if node.get("type") == "string":
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(schema)


@pytest.mark.parametrize("file_name", sorted(all_crds()))
def test_crd_shape(file_name):
    crd, schema = _schema(file_name)
    spec = crd["spec"]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert spec["group"] == "conveyor.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["conveyor"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    assert schema["properties"]["status"]["type"] == "object"


def test_pipeline_jobs_schema():
    crd, schema = _schema("conveyor.dev_pipelines.yaml")
    assert crd["spec"]["names"]["shortNames"] == ["pl"]
    spec = schema["properties"]["spec"]
    jobs = spec["properties"]["jobs"]
    assert jobs["x-kubernetes-list-type"] == "map"
    assert jobs["x-kubernetes-list-map-keys"] == ["name"]
    assert (jobs["minItems"], jobs["maxItems"]) == (1, 200)
    job = jobs["items"]["properties"]
    assert job["name"]["maxLength"] == 255
    assert job["stage"]["default"] == "test"
    assert job["when"]["default"] == "on_success"
    assert job["when"]["enum"] == [
        "on_success", "on_failure", "always", "manual", "never", "delayed"
    ]  # fmt: skip
    assert "default" not in job["allowFailure"]
    assert job["retry"]["properties"]["max"]["maximum"] == 2
    assert job["timeout"]["pattern"] == "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
    assert job["resources"]["properties"]["limits"]["additionalProperties"] == {
        "x-kubernetes-int-or-string": True
    }
    # script is required unless the job deploys or builds: a CEL rule, not `required`.
    job_rules = [v["rule"] for v in jobs["items"]["x-kubernetes-validations"]]
    assert (
        "has(self.deploy) || has(self.build) || has(self.scan) "
        "|| (has(self.script) && size(self.script) > 0)"
    ) in job_rules
    assert (
        "[has(self.deploy), has(self.build), has(self.scan)].filter(x, x).size() <= 1" in job_rules
    )
    scan = job["scan"]
    assert scan["properties"]["severities"]["items"]["enum"] == [
        "UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"
    ]  # fmt: skip
    assert [v["rule"] for v in scan["x-kubernetes-validations"]] == [
        "has(self.image) != has(self.build)"
    ]
    assert job["build"]["required"] == ["image"]
    assert "minItems" not in job["script"]
    secret = job["secretVariables"]["items"]["properties"]
    assert secret["name"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"
    assert "value" not in secret
    assert spec["properties"]["stages"]["default"] == ["build", "test", "deploy"]
    assert spec["properties"]["stages"]["x-kubernetes-list-type"] == "set"
    assert spec["properties"]["historyLimit"]["default"] == 10
    assert spec["properties"]["concurrency"]["minimum"] == 1
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert any("j.stage in self.stages" in r for r in rules)
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    # A Pipeline with a bad `needs` shows Ready False in `kubectl get pipelines`.
    assert columns == ["Ready", "Reason", "Source", "Jobs", "Age", "Message"]


def test_pipelinerun_schema():
    crd, schema = _schema("conveyor.dev_pipelineruns.yaml")
    assert crd["spec"]["names"]["shortNames"] == ["plr"]
    root_rules = [v["rule"] for v in schema["x-kubernetes-validations"]]
    assert "size(self.metadata.name) <= 63" in root_rules
    spec = schema["properties"]["spec"]
    spec_rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert "has(self.pipelineRef) != has(self.pipelineSpec)" in spec_rules
    for field in ("revision", "pipelineRef", "pipelineSpec"):
        rules = [v["rule"] for v in spec["properties"][field]["x-kubernetes-validations"]]
        assert rules[-1] == "self == oldSelf", field
    # The inline spec carries the Pipeline's own rules.
    inline = spec["properties"]["pipelineSpec"]
    assert len(inline["x-kubernetes-validations"]) == 2  # stages, immutable
    revision = spec["properties"]["revision"]
    assert revision["required"] == ["ref"]
    assert revision["properties"]["sha"]["pattern"] == "^[0-9a-f]{40}$"
    assert spec["properties"]["status"]["enum"] == ["Cancelled"]
    assert spec["properties"]["pipelineSource"]["default"] == "api"
    status = schema["properties"]["status"]["properties"]
    assert "Skipped" in status["phase"]["enum"]
    assert status["jobs"]["items"]["properties"]["phase"]["enum"] == [
        "Pending",
        "Running",
        "Succeeded",
        "Failed",
        "Skipped",
        "Manual",
        "Cancelled",
    ]
    columns = {
        c["name"]: (c["jsonPath"], c["type"])
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns == {
        "Pipeline": (".status.pipelineName", "string"),
        "Ref": (".spec.revision.ref", "string"),
        "SHA": (".status.shortSha", "string"),
        "Status": (".status.phase", "string"),
        # What a run waits for (ManualActionRequired, WaitingForApproval, ...), from the
        # condition the status already has; and a retried job, so retries show in a watch.
        "Reason": ('.status.conditions[?(@.type=="Succeeded")].reason', "string"),
        "Stage": (".status.currentStage", "string"),
        "Retried": (".status.jobs[?(@.attempt>1)].name", "string"),
        "Age": (".metadata.creationTimestamp", "date"),
        "Duration": (".status.duration", "string"),
        "Message": ('.status.conditions[?(@.type=="Succeeded")].message', "string"),
    }


def test_generated_yaml_round_trips_exactly():
    # Long CEL rules are folded by the YAML dumper; loading must give back the same text.
    for name, crd in all_crds().items():
        assert yaml.safe_load((CRDS / name).read_text()) == crd
