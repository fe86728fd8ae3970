"""The approval gate's admission rules, enforced by the real ci API server from the requester's
identity: who may vote, on what, and who started a run. No operator runs here: Approvals are
created and decided as the operator's service account would."""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conveyor.approvals import approval_manifest, decide
from tests.e2e.conveyor import (
    GROUP,
    VERSION,
    conveyor_cli,
    install,
    service_account_kubeconfig,
)
from tests.e2e.support import ROOT, Clusters, wait_until

pytestmark = pytest.mark.e2e

MERGE = "application/merge-patch+json"
USERS = ("developer", "approver1", "approver2", "outsider")
ADMISSION = ROOT / "deploy" / "30-admission.yaml"
DIGEST = "sha256:" + "d" * 64


# -- fixtures
def _policies_active(clusters: Clusters) -> bool:
    """Policies take effect a moment after they are created: probe both with dry runs."""
    custom = client.CustomObjectsApi(clusters.api("ci"))
    run_obj = custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "pipelineruns", pipelinerun("probe"), dry_run="All"
    )
    if (run_obj["metadata"].get("annotations") or {}).get("conveyor.dev/initiator") != "admin":
        return False
    body = approval_manifest(
        "probe",
        "0",
        "deploy",
        environment(["approver1"]),
        {"ref": "main"},
        (),
        None,
        _now(),
        digest=DIGEST,
    )
    try:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "approvals", body, dry_run="All"
        )
    except ApiException as e:
        return e.status in (403, 422)
    return False


@pytest.fixture(scope="module")
def admission(clusters: Clusters) -> Clusters:
    install(clusters)
    clusters.kubectl("ci", "apply", "-f", str(ADMISSION))
    wait_until(lambda: _policies_active(clusters), timeout=60, what="the admission policies")
    return clusters


@pytest.fixture(scope="module")
def operator_api(admission: Clusters, tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    path = service_account_kubeconfig(admission, tmp_path_factory.mktemp("sa") / "kubeconfig")
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def ns(admission: Clusters, namespace: str) -> Iterator[str]:
    """The test's namespace, where every user has `edit` (which aggregates conveyor-edit) and
    `conveyor-approver` (the right to patch Approvals): the admission policy, not RBAC, is what
    these tests hold to deciding whose patch is a vote."""
    rbac = client.RbacAuthorizationV1Api(admission.api("ci"))
    for role in ("edit", "conveyor-approver"):
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"users-{role}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u}
                    for u in USERS
                ],
            },
        )
    yield namespace


# -- objects and calls
def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def environment(
    approvers: list[str], required: int = 1, allow_initiator: bool = False
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Environment",
        "metadata": {"name": "prod"},
        "spec": {
            "kubeconfigSecret": {"name": "prod-kubeconfig"},
            "namespace": "app",
            "protection": {
                "requiredApprovals": required,
                "approvers": approvers,
                "allowInitiator": allow_initiator,
            },
        },
    }


def pipelinerun(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
    }


def custom(clusters: Clusters, context: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(clusters.api(context))


def start_run(clusters: Clusters, ns: str, name: str, as_user: str = "developer") -> dict:
    return custom(clusters, f"ci-as-{as_user}").create_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", pipelinerun(name)
    )


def create_approval(
    operator_api: client.ApiClient,
    ns: str,
    run_obj: dict[str, Any],
    env: dict[str, Any],
    job: str = "deploy-prod",
) -> dict[str, Any]:
    """What the operator does: the Approval built by approval_manifest, sent as the operator."""
    meta = run_obj["metadata"]
    body = approval_manifest(
        meta["name"],
        meta["uid"],
        job,
        env,
        {"ref": "main", "sha": "a" * 40},
        ("registry.example/app@sha256:" + "0" * 64,),
        meta["annotations"]["conveyor.dev/initiator"],
        _now(),
        digest=DIGEST,
    )
    return client.CustomObjectsApi(operator_api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "approvals", body
    )


def patch(
    clusters: Clusters, user: str, ns: str, name: str, body: dict, plural: str = "approvals"
) -> dict[str, Any]:
    context = "ci" if user == "admin" else f"ci-as-{user}"
    return custom(clusters, context).patch_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name, body, _content_type=MERGE
    )


def vote(
    clusters: Clusters, user: str, ns: str, name: str, decision: str, voter: str | None = None
) -> dict[str, Any]:
    entry = {"decision": decision, "comment": f"{user} says {decision}"}
    return patch(clusters, user, ns, name, {"spec": {"votes": {voter or user: entry}}})


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    """The API server's message of a refused call (403 from RBAC or admission, 422 invalid)."""
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status in (403, 422), info.value
    return json.loads(info.value.body)["message"]


def get_approval(clusters: Clusters, ns: str, name: str) -> dict[str, Any]:
    return custom(clusters, "ci").get_namespaced_custom_object(
        GROUP, VERSION, ns, "approvals", name
    )


# -- the run's initiator
def test_pipelinerun_initiator_is_the_creator_and_immutable(admission: Clusters, ns: str) -> None:
    created = custom(admission, "ci-as-developer").create_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        "pipelineruns",
        pipelinerun("r1", **{"conveyor.dev/initiator": "approver1", "team": "web"}),
    )
    annotations = created["metadata"]["annotations"]
    assert annotations["conveyor.dev/initiator"] == "developer"
    assert annotations["team"] == "web"  # other annotations are kept

    for who in ("developer", "admin"):
        for value in ("approver1", None):
            body = {"metadata": {"annotations": {"conveyor.dev/initiator": value}}}
            message = refused(patch, admission, who, ns, "r1", body, plural="pipelineruns")
            assert "conveyor.dev/initiator] is immutable" in message
            assert "(developer)" in message
    # Other changes to the run still go through.
    patched = patch(
        admission, "developer", ns, "r1", {"metadata": {"labels": {"x": "y"}}}, "pipelineruns"
    )
    assert patched["metadata"]["annotations"]["conveyor.dev/initiator"] == "developer"


# -- votes
def test_only_listed_approvers_vote_and_only_their_own_vote(
    admission: Clusters, operator_api: client.ApiClient, ns: str
) -> None:
    run_obj = start_run(admission, ns, "r1")
    approval = create_approval(
        operator_api, ns, run_obj, environment(["approver1", "group:approvers"], required=2)
    )
    name = approval["metadata"]["name"]
    assert approval["spec"]["initiator"] == "developer"

    message = refused(vote, admission, "outsider", ns, name, "approve")
    assert "outsider is not an approver of prod" in message

    # approver1 is listed by name; the groups it claims are replaced by the authenticated ones.
    body = {"spec": {"votes": {"approver1": {"decision": "approve", "groups": ["admins"]}}}}
    stored = patch(admission, "approver1", ns, name, body)
    groups = stored["spec"]["votes"]["approver1"]["groups"]
    assert "approvers" in groups and "system:authenticated" in groups
    assert "admins" not in groups

    # approver2 counts through group:approvers, from the stamped groups.
    vote(admission, "approver2", ns, name, "reject")
    vote(admission, "approver2", ns, name, "approve")

    # (Writing approver2's vote as it already is would change nothing, so nothing to refuse.)
    for entry in ({"decision": "reject"}, {"comment": "forged"}, {"groups": []}, None):
        message = refused(
            patch, admission, "approver1", ns, name, {"spec": {"votes": {"approver2": entry}}}
        )
        assert "approver1 may only write their own vote" in message
        assert "not the vote of approver2" in message
    message = refused(vote, admission, "approver1", ns, name, "approve", voter="outsider")
    assert "not the vote of outsider" in message

    for field, value in (
        ("requiredApprovals", 1),
        ("approvers", ["approver1"]),
        ("allowInitiator", True),
        ("expiresAt", "2099-01-01T00:00:00Z"),
        ("initiator", "someone"),
        ("images", ["evil:latest"]),
    ):
        message = refused(patch, admission, "approver1", ns, name, {"spec": {field: value}})
        assert f"approver1 may not change {field}" in message

    decision = decide(get_approval(admission, ns, name), _now())
    assert decision.state == "Approved"
    assert decision.approvers_that_count == ("approver1", "approver2")

    # A vote may be withdrawn by its author before the decision.
    patch(admission, "approver2", ns, name, {"spec": {"votes": {"approver2": None}}})
    assert "approver2" not in get_approval(admission, ns, name)["spec"]["votes"]
    # Metadata is not a vote either: it is the operator's (an Approval is found by its spec,
    # and a relabelled one must not even look as if it gated another run).
    message = refused(
        patch, admission, "outsider", ns, name, {"metadata": {"labels": {"seen": "yes"}}}
    )
    assert "may only vote, in spec.votes" in message


def test_the_initiator_may_not_vote_unless_allowed(
    admission: Clusters, operator_api: client.ApiClient, ns: str
) -> None:
    run_obj = start_run(admission, ns, "r1", as_user="developer")
    strict = create_approval(operator_api, ns, run_obj, environment(["developer", "approver1"]))
    for decision in ("approve", "reject"):
        message = refused(vote, admission, "developer", ns, strict["metadata"]["name"], decision)
        assert "the run's initiator may not approve it" in message
    vote(admission, "approver1", ns, strict["metadata"]["name"], "approve")

    lenient = create_approval(
        operator_api,
        ns,
        run_obj,
        environment(["developer"], allow_initiator=True),
        job="deploy-prod-2",
    )
    vote(admission, "developer", ns, lenient["metadata"]["name"], "approve")
    decision = decide(get_approval(admission, ns, lenient["metadata"]["name"]), _now())
    assert decision.state == "Approved"


def test_only_the_operator_creates_approvals_and_writes_their_status(
    admission: Clusters, operator_api: client.ApiClient, ns: str
) -> None:
    run_obj = start_run(admission, ns, "r1")
    env = environment(["approver1"])
    body = approval_manifest(
        "r1",
        run_obj["metadata"]["uid"],
        "deploy",
        env,
        {"ref": "main"},
        (),
        "developer",
        _now(),
        digest=DIGEST,
    )
    message = refused(
        custom(admission, "ci").create_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        "approvals",
        body,
    )
    assert "created by the Conveyor operator only" in message
    refused(  # edit has no create on approvals
        custom(admission, "ci-as-approver1").create_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        "approvals",
        body,
    )

    name = create_approval(operator_api, ns, run_obj, env)["metadata"]["name"]
    status = {"status": {"decision": "Approved", "approvals": "1/1"}}
    for context in ("ci-as-approver1", "ci"):
        message = refused(
            custom(admission, context).patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            ns,
            "approvals",
            name,
            status,
            _content_type=MERGE,
        )
    assert "written by the Conveyor operator only" in message  # the admin's refusal

    # The operator decides; after that nobody votes.
    client.CustomObjectsApi(operator_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, "approvals", name, status, _content_type=MERGE
    )
    message = refused(vote, admission, "approver1", ns, name, "reject")
    assert f"approval {name} is already Approved: votes can no longer change" in message
    assert get_approval(admission, ns, name)["status"]["decision"] == "Approved"


# -- the CLI
def test_conveyor_approve_and_reject(
    admission: Clusters, operator_api: client.ApiClient, ns: str
) -> None:
    run_obj = start_run(admission, ns, "r1")
    name = create_approval(operator_api, ns, run_obj, environment(["group:approvers"], required=2))[
        "metadata"
    ]["name"]

    proc = conveyor_cli(
        admission, "approve", "r1", "-m", "ship it", "-n", ns, context="ci-as-approver1"
    )
    assert proc.returncode == 0, proc.stderr
    assert f"approver1 approved {name}" in proc.stdout
    proc = conveyor_cli(admission, "reject", name, "-n", ns, context="ci-as-approver2")
    assert proc.returncode == 0, proc.stderr
    votes = get_approval(admission, ns, name)["spec"]["votes"]
    assert votes["approver1"]["decision"] == "approve"
    assert votes["approver1"]["comment"] == "ship it"
    assert "approvers" in votes["approver1"]["groups"]
    assert votes["approver2"]["decision"] == "reject"
    assert decide(get_approval(admission, ns, name), _now()).state == "Rejected"

    proc = conveyor_cli(admission, "approve", "r1", "-n", ns, context="ci-as-outsider")
    assert proc.returncode == 1
    assert "outsider is not an approver of prod" in proc.stderr

    # Two pending gates in one run: the CLI lists them and asks for a name.
    create_approval(operator_api, ns, run_obj, environment(["approver1"]), job="deploy-eu")
    second = create_approval(operator_api, ns, run_obj, environment(["approver1"]), job="deploy-us")
    proc = conveyor_cli(admission, "approve", "r1", "-n", ns, context="ci-as-approver1")
    assert proc.returncode == 1
    assert "has 3 pending Approvals; name the one to vote on" in proc.stderr
    assert second["metadata"]["name"] in proc.stderr
    proc = conveyor_cli(admission, "approvals", "r1", "-n", ns, context="ci-as-approver1")
    assert proc.returncode == 0 and "deploy-us" in proc.stdout


def _env_add(clusters: Clusters, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            "env",
            "add",
            *args,
            "--kubeconfig",
            str(clusters.kubeconfig),
            "--context",
            "ci",
            "-n",
            ns,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": ""},
    )


def test_conveyor_env_add(admission: Clusters, ns: str, tmp_path: Path) -> None:
    secret_marker = "c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw"
    exec_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://example:6443"}}],
        "users": [
            {
                "name": "u",
                "user": {
                    "exec": {"command": "steal", "apiVersion": "client.authentication.k8s.io/v1"},
                    "token": secret_marker,
                },
            }
        ],
        "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
    }
    bad = tmp_path / "exec.yaml"
    bad.write_text(json.dumps(exec_config))
    proc = _env_add(
        admission,
        ns,
        "prod",
        "--target-kubeconfig",
        str(bad),
        "--target-context",
        "prod",
        "--target-namespace",
        "app",
    )
    assert proc.returncode == 2
    assert "exec plugin" in proc.stderr
    assert secret_marker not in proc.stderr + proc.stdout

    proc = _env_add(
        admission,
        ns,
        "prod",
        "--target-kubeconfig",
        str(admission.kubeconfig),
        "--target-context",
        "nope",
        "--target-namespace",
        "app",
    )
    assert proc.returncode == 2 and "has no context 'nope'" in proc.stderr

    proc = _env_add(
        admission,
        ns,
        "prod",
        "--target-kubeconfig",
        str(admission.kubeconfig),
        "--target-context",
        "prod",
        "--target-namespace",
        "app",
        "--url",
        "https://app.example.com",
        "--var",
        "APP_FQDN=app.example.com",
        "--approvers",
        "approver1,group:approvers",
        "--required-approvals",
        "2",
        "--approval-timeout",
        "2h",
    )
    assert proc.returncode == 0, proc.stderr
    # In the credentials namespace, not the team's: `edit` there cannot read it.
    secret = client.CoreV1Api(admission.api("ci")).read_namespaced_secret(
        f"{ns}.prod.kubeconfig", "conveyor-system"
    )
    # Only the chosen context, its cluster and user: not the file's other credentials.
    stored = yaml.safe_load(base64.b64decode(secret.data["kubeconfig"]))
    assert [c["name"] for c in stored["contexts"]] == ["prod"]
    assert stored["current-context"] == "prod"
    source = json.loads(admission.kubeconfig.read_text())
    prod = next(c for c in source["contexts"] if c["name"] == "prod")["context"]
    assert [c["name"] for c in stored["clusters"]] == [prod["cluster"]]
    assert [u["name"] for u in stored["users"]] == [prod["user"]]
    env = custom(admission, "ci").get_namespaced_custom_object(
        GROUP, VERSION, ns, "environments", "prod"
    )
    assert env["spec"]["kubeconfigSecret"] == {
        "name": f"{ns}.prod.kubeconfig",
        "key": "kubeconfig",
    }
    assert env["spec"]["context"] == "prod"
    assert env["spec"]["namespace"] == "app"
    assert env["spec"]["variables"] == {"APP_FQDN": "app.example.com"}
    assert env["spec"]["protection"] == {
        "requiredApprovals": 2,
        "approvers": ["approver1", "group:approvers"],
        "allowInitiator": False,
        "approvalTimeout": "2h",
    }

    # Again, without protection: the Environment is replaced, not merged.
    proc = _env_add(
        admission,
        ns,
        "prod",
        "--target-kubeconfig",
        str(admission.kubeconfig),
        "--target-context",
        "prod",
        "--target-namespace",
        "app2",
    )
    assert proc.returncode == 0, proc.stderr
    assert "environment.conveyor.dev/prod updated" in proc.stdout
    env = custom(admission, "ci").get_namespaced_custom_object(
        GROUP, VERSION, ns, "environments", "prod"
    )
    assert env["spec"]["namespace"] == "app2"
    assert not env["spec"].get("variables")
    assert env["spec"]["protection"]["requiredApprovals"] == 0
    table = admission.kubectl("ci", "get", "environments", "-n", ns).stdout
    assert "app2" in table
