"""The Environment model and CRD, and the pure parts of `conveyor env add`."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from conveyor.api import ModelError, to_dict
from conveyor.api.crd import all_crds
from conveyor.api.environment import Environment, parse_environment_spec
from conveyor.cli.environments import KubeconfigRefused, check_kubeconfig, environment_spec
from conveyor.cli.main import build_parser

MINIMAL = {"kubeconfigSecret": {"name": "prod-kubeconfig"}, "namespace": "app"}


def _schema():
    crd = all_crds()["conveyor.dev_environments.yaml"]
    return crd, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_minimal_spec_gets_the_defaults():
    spec = parse_environment_spec(MINIMAL)
    assert spec.kubeconfig_secret.key == "kubeconfig"
    assert spec.context is None and spec.url is None and spec.variables == {}
    p = spec.protection
    assert (p.required_approvals, p.approvers, p.allow_initiator) == (0, (), False)
    assert p.approval_timeout == "24h" and p.timeout_seconds() == 86400
    assert not p.protected


def test_full_environment_round_trips():
    obj = {
        "metadata": {"name": "prod", "namespace": "team"},
        "spec": {
            **MINIMAL,
            "context": "prod",
            "url": "https://app.example.com",
            "variables": {"APP_FQDN": "app.example.com"},
            "protection": {
                "requiredApprovals": 2,
                "approvers": ["approver1", "group:approvers"],
                "allowInitiator": True,
                "approvalTimeout": "1h30m",
            },
        },
        "status": {
            "lastDeployment": {
                "pipelineRun": "r1",
                "job": "deploy prod",
                "revision": "main",
                "sha": "a" * 40,
                "image": "registry/app:1",
                "time": "2025-01-01T00:00:00Z",
            }
        },
    }
    env = Environment.from_dict(obj)
    assert env.name == "prod"
    assert env.spec is not None and env.spec.protection.protected
    assert env.spec.protection.timeout_seconds() == 5400
    assert env.status.last_deployment is not None
    assert env.status.last_deployment.sha == "a" * 40
    assert to_dict(env.spec) == {
        **obj["spec"],
        "kubeconfigSecret": {**MINIMAL["kubeconfigSecret"], "key": "kubeconfig"},
        "names": [],
    }


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"namespace": "Not_A_Label"}, "spec.namespace"),
        ({"kubeconfigSecret": {}}, "spec.kubeconfigSecret.name"),
        ({"kubeconfigSecret": {"name": "k", "key": "a/b"}}, "spec.kubeconfigSecret.key"),
        ({"protection": {"requiredApprovals": 11}}, "spec.protection.requiredApprovals"),
        ({"protection": {"requiredApprovals": -1}}, "spec.protection.requiredApprovals"),
        ({"protection": {"approvers": ["a b"]}}, "spec.protection.approvers[0]"),
        ({"protection": {"approvers": ["a", "a"]}}, "spec.protection.approvers"),
        ({"protection": {"approvers": [f"u{i}" for i in range(51)]}}, "spec.protection.approvers"),
        ({"protection": {"approvalTimeout": "1d"}}, "spec.protection.approvalTimeout"),
        ({"url": "ftp://x"}, "spec.url"),
    ],
)
def test_bad_specs_name_the_field(change, path):
    with pytest.raises(ModelError) as info:
        parse_environment_spec({**MINIMAL, **change})
    assert info.value.path == path


def test_crd_names_columns_and_bounds():
    crd, schema = _schema()
    names = crd["spec"]["names"]
    assert names["kind"] == "Environment"
    assert names["shortNames"] == ["env"]
    assert names["categories"] == ["conveyor"]
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns) == ["Namespace", "URL", "Approvals", "Age"]
    assert columns["Namespace"]["jsonPath"] == ".spec.namespace"
    assert columns["Approvals"]["jsonPath"] == ".spec.protection.requiredApprovals"
    assert columns["Approvals"]["type"] == "integer"
    spec = schema["properties"]["spec"]
    assert set(spec["required"]) == {"kubeconfigSecret", "namespace"}
    protection = spec["properties"]["protection"]
    req = protection["properties"]["requiredApprovals"]
    assert (req["minimum"], req["maximum"], req["default"]) == (0, 10, 0)
    approvers = protection["properties"]["approvers"]
    assert approvers["maxItems"] == 50 and approvers["x-kubernetes-list-type"] == "set"
    assert approvers["items"]["x-kubernetes-validations"][0]["rule"].startswith("!self.startsWith")
    assert protection["properties"]["allowInitiator"]["default"] is False
    assert protection["properties"]["approvalTimeout"]["default"] == "24h"
    rules = [r["rule"] for r in protection["x-kubernetes-validations"]]
    assert any("requiredApprovals == 0" in r for r in rules)
    assert "cel.bind" not in json.dumps(schema)
    secret = spec["properties"]["kubeconfigSecret"]["properties"]
    assert secret["key"]["default"] == "kubeconfig"
    assert spec["properties"]["variables"]["maxProperties"] == 100


# -- conveyor env add, without a cluster
def _kubeconfig(**user: object) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": "https://x:6443", "certificate-authority-data": "Q0E="},
                }
            ],
            "users": [{"name": "u", "user": user or {"token": "s3cr3t-t0ken"}}],
            "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
        }
    ).encode()


def test_a_plain_kubeconfig_is_accepted():
    check_kubeconfig(_kubeconfig(), "prod")


@pytest.mark.parametrize(
    ("user", "words"),
    [
        ({"exec": {"command": "aws", "apiVersion": "v1"}, "token": "s3cr3t-t0ken"}, "exec plugin"),
        ({"auth-provider": {"name": "gcp"}, "token": "s3cr3t-t0ken"}, "auth-provider plugin"),
        (
            {"tokenFile": "/var/run/secrets/token", "token": "s3cr3t-t0ken"},
            "names a file (tokenFile)",
        ),
        ({"client-key": "/etc/key.pem", "token": "s3cr3t-t0ken"}, "names a file (client-key)"),
    ],
)
def test_plugins_and_file_references_are_refused_without_quoting_the_file(user, words):
    with pytest.raises(KubeconfigRefused) as info:
        check_kubeconfig(_kubeconfig(**user), "prod", "f.yaml")
    assert words in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_a_missing_context_lists_the_known_ones():
    with pytest.raises(KubeconfigRefused, match=r"has no context 'prod2' \(contexts: prod\)"):
        check_kubeconfig(_kubeconfig(), "prod2")


def test_broken_yaml_is_refused_without_quoting_it():
    with pytest.raises(KubeconfigRefused) as info:
        check_kubeconfig(b"users:\n  - token: s3cr3t: [\n", "prod")
    assert "not valid YAML (line" in str(info.value)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(KubeconfigRefused, match="not a kubeconfig"):
        check_kubeconfig(yaml.safe_dump({"kind": "Pod"}).encode(), "prod")


def _add_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(
        [
            "env",
            "add",
            "prod",
            "--target-kubeconfig",
            "f",
            "--target-context",
            "prod",
            "--target-namespace",
            "app",
            *argv,
        ]
    )


def test_env_add_options_keep_the_two_clusters_apart():
    # As in every command, --kubeconfig, --context and -n/--namespace are Conveyor's cluster.
    args = _add_args("--context", "ci", "--kubeconfig", "ci.yaml", "--namespace", "team")
    assert (args.target_kubeconfig, args.target_context, args.target_namespace) == (
        "f",
        "prod",
        "app",
    )
    assert (args.kubeconfig, args.context, args.namespace) == ("ci.yaml", "ci", "team")


@pytest.mark.parametrize("old", ["--kube-context", "--cluster-kubeconfig"])
def test_env_add_refuses_the_old_option_names_rather_than_reading_them_anew(old, capsys):
    from conveyor.cli.main import main

    assert main([*_ADD, old, "x"]) == 2
    err = capsys.readouterr().err
    assert "--target-kubeconfig" in err and len(err.strip().splitlines()) == 1


_ADD = ["env", "add", "prod", "--target-kubeconfig", "f", "--target-context", "p"]
_ADD += ["--target-namespace", "app"]


def test_environment_spec_from_options():
    spec = environment_spec(
        _add_args(
            "--url",
            "https://app.example.com",
            "--var",
            "APP_FQDN=app.example.com",
            "--approvers",
            "approver1, group:ops",
            "--approval-timeout",
            "2h",
            "--allow-initiator",
        ),
        "team",
    )
    # The Secret lives in the credentials namespace, one per (team namespace, environment).
    assert spec["kubeconfigSecret"] == {"name": "team.prod.kubeconfig", "key": "kubeconfig"}
    assert spec["context"] == "prod" and spec["namespace"] == "app"
    assert spec["variables"] == {"APP_FQDN": "app.example.com"}
    assert spec["protection"] == {
        "requiredApprovals": 1,  # approvers given: one approval by default
        "approvers": ["approver1", "group:ops"],
        "allowInitiator": True,
        "approvalTimeout": "2h",
    }
    assert environment_spec(_add_args(), "team")["protection"]["requiredApprovals"] == 0
    assert _add_args().credentials_namespace == "conveyor-system"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--required-approvals", "2"], "needs --approvers"),
        (["--approvers", "a", "--required-approvals", "11"], "between 0 and 10"),
        (["--approval-timeout", "1d"], "not a duration"),
        (["--var", "1BAD=x"], "expected KEY=VALUE"),
        (["--approvers", "a b"], "spec.protection.approvers[0]"),
    ],
)
def test_environment_spec_refuses_bad_options(argv, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        environment_spec(_add_args(*argv), "team")


def test_env_add_stores_only_the_chosen_context():
    import json

    import yaml

    from conveyor.cli.environments import minimal_kubeconfig

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": f"https://{c}:6443"}} for c in "ab"],
        "users": [{"name": u, "user": {"token": f"secret-{u}"}} for u in "ab"],
        "contexts": [{"name": f"ctx-{x}", "context": {"cluster": x, "user": x}} for x in "ab"],
        "current-context": "ctx-a",
    }
    kept = yaml.safe_load(minimal_kubeconfig(json.dumps(doc).encode(), "ctx-b"))
    assert [c["name"] for c in kept["contexts"]] == ["ctx-b"]
    assert [c["name"] for c in kept["clusters"]] == ["b"]
    assert kept["users"] == [{"name": "b", "user": {"token": "secret-b"}}]
    assert kept["current-context"] == "ctx-b"
    assert b"secret-a" not in minimal_kubeconfig(json.dumps(doc).encode(), "ctx-b")


def test_kubeconfig_secret_names_are_valid_and_bounded():
    from conveyor.cli.environments import secret_name

    assert secret_name("team", "prod") == "team.prod.kubeconfig"
    long = secret_name("t" * 63, "e" * 253)
    assert len(long) <= 253 and long.endswith(".kubeconfig")
    assert long != secret_name("t" * 63, "e" * 252 + "f")
