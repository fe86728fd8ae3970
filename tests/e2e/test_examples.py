"""Every example in examples/ is applied and run, so the README's examples stay true."""

from __future__ import annotations

from pathlib import Path

import yaml

from conveyor.api import parse_pipeline_spec
from conveyor.engine.validate import validate_pipeline
from tests.e2e.conveyor import (
    GROUP,
    VERSION,
    Conveyor,
    conveyor_cli,
    job_status,
    phase,
    succeeded_condition,
)
from tests.e2e.support import ROOT, Clusters

EXAMPLES = ROOT / "examples"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_basic_example_runs_to_the_manual_gate_and_through(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    conveyor.create(load(EXAMPLES / "basic" / "pipeline.yaml"))
    name = conveyor.create(load(EXAMPLES / "basic" / "run.yaml"))["metadata"]["name"]
    waiting = conveyor.wait_run(
        name, lambda r: succeeded_condition(r).get("reason") == "ManualActionRequired"
    )
    assert job_status(waiting, "unit")["phase"] == "Succeeded"
    assert job_status(waiting, "release")["phase"] == "Manual"
    played = conveyor_cli(clusters, "play", name, "release", "-n", conveyor.ns)
    assert played.returncode == 0, played.stderr
    done = conveyor.wait_finished(name)
    assert phase(done) == "Succeeded"
    assert job_status(done, "cleanup")["phase"] == "Succeeded"
    assert job_status(done, "notify-failure")["phase"] == "Skipped"


def test_the_go_app_pipeline_is_accepted_and_valid(conveyor: Conveyor) -> None:
    """make demo runs it end to end; here the API server and the engine judge it."""
    manifest = load(EXAMPLES / "go-app" / "pipeline.yaml")
    conveyor.create(manifest)
    created = conveyor.api.get_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "pipelines", manifest["metadata"]["name"]
    )
    jobs = {j["name"]: j for j in created["spec"]["jobs"]}
    assert jobs["build"]["build"]["context"] == "src/"
    assert jobs["container-scan"]["scan"] == {
        "build": "build", "scanner": "clair", "severities": ["HIGH", "CRITICAL"],
        "ignoreUnfixed": False,
    }  # fmt: skip
    assert validate_pipeline(parse_pipeline_spec(created["spec"])) == []
