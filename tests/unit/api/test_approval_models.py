"""The Approval model and CRD, kept in step with the admission policy and the CLI's vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conveyor.api import ModelError, from_dict
from conveyor.api.approval import POLICY_FIELDS, Approval, ApprovalSpec, ApprovalStatus
from conveyor.api.crd import all_crds
from conveyor.api.fields import json_name
from conveyor.cli.approvals import is_pending, vote_patch
from conveyor.cli.main import build_parser
from conveyor.kube.identity import exempted

REPO = Path(__file__).resolve().parents[3]
ADMISSION = REPO / "deploy" / "30-admission.yaml"
OPERATOR = "system:serviceaccount:conveyor-system:conveyor-operator"

SPEC = {
    "pipelineRun": "r1",
    "runUID": "uid-1",
    "job": "deploy prod",
    "digest": "sha256:" + "d" * 64,
    "environment": "prod",
    "revision": {"ref": "main", "sha": "a" * 40},
    "expiresAt": "2025-01-02T00:00:00Z",
    "approvers": ["approver1", "group:approvers"],
}


def _schema():
    crd = all_crds()["conveyor.dev_approvals.yaml"]
    return crd, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_spec_parses_with_defaults_and_votes():
    spec = from_dict(
        ApprovalSpec,
        {
            **SPEC,
            "votes": {
                "approver1": {"decision": "approve", "comment": "ok", "groups": ["approvers"]}
            },
        },
    )
    assert spec.required_approvals == 1 and spec.allow_initiator is False
    assert spec.initiator is None and spec.images == ()
    assert spec.votes["approver1"].groups == ("approvers",)
    assert spec.expires_at.isoformat() == "2025-01-02T00:00:00+00:00"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"votes": {"a": {"decision": "maybe"}}}, "spec.votes.a.decision"),
        ({"votes": {"a": {"decision": "approve", "comment": "x" * 1025}}}, "spec.votes.a.comment"),
        ({"votes": {f"u{i}": {"decision": "approve"} for i in range(101)}}, "spec.votes"),
        ({"requiredApprovals": 11}, "spec.requiredApprovals"),
        ({"approvers": ["group x"]}, "spec.approvers[0]"),
        ({"revision": {"ref": ""}}, "spec.revision.ref"),
        ({"expiresAt": "tomorrow"}, "spec.expiresAt"),
    ],
)
def test_bad_specs_name_the_field(change, path):
    with pytest.raises(ModelError) as info:
        from_dict(ApprovalSpec, {**SPEC, **change}, "spec")
    assert info.value.path == path


def test_status_parses():
    status = from_dict(
        ApprovalStatus,
        {
            "decision": "Approved",
            "approvals": "2/2",
            "approvedBy": ["approver1", "approver2"],
            "decidedAt": "2025-01-01T01:00:00Z",
            "votes": [
                {"user": "approver1", "decision": "withdrawn", "time": "2025-01-01T00:00:00Z"}
            ],
        },
    )
    assert status.final
    assert not Approval.from_dict({"spec": SPEC}).status.final
    with pytest.raises(ModelError):
        from_dict(ApprovalStatus, {"decision": "Maybe"}, "status")


def test_crd_names_columns_enums_and_bounds():
    crd, schema = _schema()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["categories"]) == (
        "Approval",
        "approvals",
        ["conveyor"],
    )
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Run", ".spec.pipelineRun"),
        ("Job", ".spec.job"),
        ("Environment", ".spec.environment"),
        ("Decision", ".status.decision"),
        ("Approvals", ".status.approvals"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    spec = schema["properties"]["spec"]
    assert set(spec["required"]) == {
        "pipelineRun",
        "runUID",
        "job",
        "digest",
        "environment",
        "revision",
        "expiresAt",
    }
    votes = spec["properties"]["votes"]
    assert votes["maxProperties"] == 100
    vote = votes["additionalProperties"]
    assert vote["properties"]["decision"]["enum"] == ["approve", "reject"]
    assert vote["properties"]["comment"]["maxLength"] == 1024
    assert vote["properties"]["groups"]["maxItems"] == 64
    assert vote["required"] == ["decision"]
    assert spec["properties"]["expiresAt"]["format"] == "date-time"
    status = schema["properties"]["status"]["properties"]
    assert status["decision"]["enum"] == ["Pending", "Approved", "Rejected", "Expired", "Cancelled"]
    assert status["votes"]["maxItems"] == 100
    assert "cel.bind" not in json.dumps(schema)


def test_policy_fields_are_every_spec_field_but_votes():
    names = {json_name(f) for f in ApprovalSpec.__dataclass_fields__.values()}
    assert set(POLICY_FIELDS) == names - {"votes"}


def _admission() -> list[dict]:
    return [d for d in yaml.safe_load_all(ADMISSION.read_text()) if d]


def test_the_admission_policy_compares_exactly_the_policy_fields():
    (votes,) = [
        d
        for d in _admission()
        if d["metadata"]["name"] == "conveyor-approval-votes"
        and d["kind"] == "ValidatingAdmissionPolicy"
    ]
    variables = {v["name"]: v["expression"] for v in votes["spec"]["variables"]}
    compared = {
        f
        for f in POLICY_FIELDS
        if f"object.spec.?{f} == oldObject.spec.?{f}" in variables["policyChanged"]
    }
    assert compared == set(POLICY_FIELDS)


def test_every_policy_has_a_binding_and_exempts_only_the_operator():
    docs = _admission()
    policies = {
        (d["kind"], d["metadata"]["name"]) for d in docs if not d["kind"].endswith("Binding")
    }
    bindings = {
        (d["kind"].removesuffix("Binding"), d["spec"]["policyName"])
        for d in docs
        if d["kind"].endswith("Binding")
    }
    assert policies == bindings
    assert {p[1] for p in policies} == {
        "conveyor-pipelinerun-initiator",
        "conveyor-pipelinerun-canceller",
        "conveyor-pipelinerun-record",
        "conveyor-approval-vote-groups",
        "conveyor-approval-votes",
        "conveyor-approval-record",
        "conveyor-jobs",
        "conveyor-cronjobs",
        "conveyor-job-pods",
        "conveyor-artifactdownload-status",
    }
    for d in docs:
        assert d["apiVersion"] == "admissionregistration.k8s.io/v1"
        if d["kind"].endswith("Binding"):
            assert d["spec"].get("validationActions", ["Deny"]) == ["Deny"]
            continue
        assert d["spec"]["failurePolicy"] == "Fail"
        for cond in d["spec"].get("matchConditions", []):
            if cond["name"] == "not-the-operator":
                assert OPERATOR in cond["expression"]
    assert "cel.bind" not in ADMISSION.read_text()
    # What the operator checks its own identity against at start: exactly one identity.
    exempt = exempted(d for d in docs if not d["kind"].endswith("Binding"))
    assert set(exempt) == {
        "conveyor-pipelinerun-record",
        "conveyor-approval-vote-groups",
        "conveyor-approval-votes",
        "conveyor-approval-record",
        "conveyor-jobs",
        "conveyor-artifactdownload-status",
    }
    assert all(users == {OPERATOR} for users in exempt.values())


def test_the_operator_refuses_to_start_as_another_identity():
    from conveyor.kube.identity import IdentityMismatch, check_exempt

    check_exempt(OPERATOR, {"conveyor-approval-votes": {OPERATOR}})
    with pytest.raises(IdentityMismatch, match=r"runs as admin.*exempt another identity"):
        check_exempt("admin", {"conveyor-approval-votes": {OPERATOR}})
    with pytest.raises(IdentityMismatch, match="no Conveyor admission policy is installed"):
        check_exempt(OPERATOR, {})


def test_vote_patch_writes_only_the_voters_own_entry():
    assert vote_patch("approver1", "approve", "ship it") == {
        "spec": {"votes": {"approver1": {"decision": "approve", "comment": "ship it"}}}
    }
    # No comment removes an earlier one (null in a merge patch).
    assert vote_patch("a", "reject", None)["spec"]["votes"]["a"] == {
        "decision": "reject",
        "comment": None,
    }


def test_pending():
    assert is_pending(Approval.from_dict({"spec": SPEC}))
    assert is_pending(Approval.from_dict({"spec": SPEC, "status": {"decision": "Pending"}}))
    assert not is_pending(Approval.from_dict({"spec": SPEC, "status": {"decision": "Expired"}}))


def test_cli_parses_approve_and_reject():
    args = build_parser().parse_args(["approve", "r1", "-m", "ok", "--context", "ci-as-approver1"])
    assert (args.command, args.name, args.comment, args.context) == (
        "approve",
        "r1",
        "ok",
        "ci-as-approver1",
    )
    args = build_parser().parse_args(["reject", "r1-deploy-1234", "-n", "team"])
    assert (args.name, args.comment, args.namespace) == ("r1-deploy-1234", None, "team")
