"""What votes decide (conveyor.approvals.decide), and the Approval the operator creates."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from conveyor.api.approval import Approval, parse_approval_status
from conveyor.approvals import (
    Decision,
    approval_manifest,
    approval_name,
    approval_status,
    decide,
    vote_history,
    why_not_allowed,
)

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
LATER = T0 + datetime.timedelta(hours=1)
EXPIRES = T0 + datetime.timedelta(hours=24)
SHA = "a" * 40
DIGEST = "sha256:" + "d" * 64


def approval(
    votes: dict[str, dict[str, Any]] | None = None,
    *,
    required: int = 2,
    approvers: tuple[str, ...] = ("approver1", "group:approvers"),
    initiator: str | None = "developer",
    allow_initiator: bool = False,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "r1-deploy-prod-12345678", "generation": 3},
        "spec": {
            "pipelineRun": "r1",
            "runUID": "uid-1",
            "job": "deploy prod",
            "digest": DIGEST,
            "environment": "prod",
            "revision": {"ref": "main", "sha": SHA},
            "requiredApprovals": required,
            "approvers": list(approvers),
            "allowInitiator": allow_initiator,
            "expiresAt": "2025-01-02T00:00:00Z",
            "votes": votes or {},
        },
    }
    if initiator is not None:
        body["spec"]["initiator"] = initiator
    if status is not None:
        body["status"] = status
    return body


def yes(*groups: str, comment: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"decision": "approve", "groups": list(groups)}
    if comment:
        out["comment"] = comment
    return out


def no(*groups: str) -> dict[str, Any]:
    return {"decision": "reject", "groups": list(groups)}


# -- who counts
def test_no_votes_is_pending():
    d = decide(approval(), LATER)
    assert (d.state, d.approvers_that_count, d.rejected_by) == ("Pending", (), ())
    assert d.reason == "waiting for 2 more approvals"
    assert d.approvals == "0/2"
    assert not d.final


def test_required_count_of_distinct_users_approves():
    one = decide(approval({"approver1": yes()}), LATER)
    assert (one.state, one.approvals, one.reason) == (
        "Pending",
        "1/2",
        "waiting for 1 more approval",
    )
    two = decide(approval({"approver1": yes(), "approver2": yes("approvers")}), LATER)
    assert two.state == "Approved"
    assert two.approvers_that_count == ("approver1", "approver2")
    assert two.reason == "approved by approver1, approver2"
    assert two.final


def test_a_user_in_several_approver_entries_counts_once():
    # approver1 is listed by name and is a member of group:approvers: one user, one approval.
    d = decide(approval({"approver1": yes("approvers", "ops")}), LATER)
    assert d.approvers_that_count == ("approver1",)
    assert d.state == "Pending"


def test_group_membership_comes_from_the_stamped_groups_only():
    # approver2 is not listed by name: without stamped groups its vote does not count.
    unstamped = decide(approval({"approver2": yes()}, required=1), LATER)
    assert unstamped.state == "Pending"
    assert unstamped.ignored[0].user == "approver2"
    assert unstamped.ignored[0].why == "approver2 is not an approver"
    stamped = decide(
        approval({"approver2": yes("system:authenticated", "approvers")}, required=1), LATER
    )
    assert stamped.state == "Approved"


def test_group_entries_do_not_match_usernames_and_vice_versa():
    # A user literally named "approvers" is not the group; a group named like a user is not it.
    d = decide(
        approval(
            {"approvers": yes(), "ops-lead": yes("approver1")},
            required=1,
            approvers=("group:approvers", "approver1"),
        ),
        LATER,
    )
    assert d.state == "Pending"
    assert {i.user for i in d.ignored} == {"approvers", "ops-lead"}


def test_outsiders_are_ignored_even_when_rejecting():
    d = decide(approval({"outsider": no(), "approver1": yes(), "x": yes("approvers")}), LATER)
    assert d.state == "Approved"
    assert d.rejected_by == ()
    assert [i.user for i in d.ignored] == ["outsider"]


# -- the initiator
def test_the_initiator_does_not_count_unless_allowed():
    votes = {"developer": yes("developers"), "approver1": yes()}
    strict = decide(approval(votes, approvers=("developer", "approver1")), LATER)
    assert strict.state == "Pending"
    assert strict.approvers_that_count == ("approver1",)
    assert strict.ignored[0].why == "the run's initiator may not approve it"
    lenient = decide(
        approval(votes, approvers=("developer", "approver1"), allow_initiator=True), LATER
    )
    assert lenient.state == "Approved"


def test_the_initiators_reject_is_ignored_too():
    d = decide(approval({"developer": no()}, approvers=("developer",), required=1), LATER)
    assert d.state == "Pending"


def test_no_initiator_recorded_means_nobody_is_excluded():
    d = decide(
        approval({"developer": yes()}, approvers=("developer",), required=1, initiator=None), LATER
    )
    assert d.state == "Approved"


# -- reject, expiry, finality
def test_any_allowed_reject_wins():
    votes = {"approver1": yes(), "approver2": yes("approvers"), "approver3": no("approvers")}
    d = decide(approval(votes), LATER)
    assert d.state == "Rejected"
    assert d.rejected_by == ("approver3",)
    assert d.approvers_that_count == ("approver1", "approver2")
    assert d.reason == "rejected by approver3"


def test_expiry():
    at_deadline = decide(approval({"approver1": yes()}), EXPIRES)
    assert at_deadline.state == "Expired"
    assert at_deadline.reason == "expired at 2025-01-02T00:00:00Z with 1/2 approvals"
    assert decide(approval(), EXPIRES - datetime.timedelta(seconds=1)).state == "Pending"


def test_approvals_seen_after_the_deadline_do_not_count():
    # The admission policy cannot see the clock: a vote first seen after expiresAt may be late.
    d = decide(approval({"approver1": yes(), "approver2": yes("approvers")}), EXPIRES)
    assert d.state == "Expired"


def test_a_reject_after_the_deadline_still_reads_rejected():
    assert decide(approval({"approver1": no()}), EXPIRES).state == "Rejected"


def test_zero_required_approvals_approves_at_once():
    d = decide(approval(required=0), LATER)
    assert d.state == "Approved"
    assert d.approvals == "0/0"


@pytest.mark.parametrize("final", ["Approved", "Rejected", "Expired"])
def test_a_recorded_decision_is_final(final):
    body = approval({"approver1": yes()}, status={"decision": final, "reason": "decided before"})
    d = decide(body, EXPIRES + datetime.timedelta(days=1))
    assert d.state == final
    assert d.reason == "decided before"


def test_decide_takes_the_model_too():
    model = Approval.from_dict(approval({"approver1": yes(), "approver2": yes("approvers")}))
    assert decide(model, LATER).state == "Approved"


def test_why_not_allowed():
    approvers = ("alice", "group:ops")
    assert why_not_allowed("alice", (), approvers, None, False) is None
    assert why_not_allowed("bob", ("ops",), approvers, None, False) is None
    assert why_not_allowed("bob", ("dev",), approvers, None, False) == "bob is not an approver"
    assert why_not_allowed("alice", (), approvers, "alice", False) == (
        "the run's initiator may not approve it"
    )
    assert why_not_allowed("alice", (), approvers, "alice", True) is None


# -- status
def test_approval_status_records_decision_counts_history_and_condition():
    body = approval({"approver1": yes(comment="lgtm"), "approver2": yes("approvers")})
    d = decide(body, LATER)
    status = approval_status(body, d, LATER)
    assert status["decision"] == "Approved"
    assert status["approvals"] == "2/2"
    assert status["approvedBy"] == ["approver1", "approver2"]
    assert status["rejectedBy"] == []
    assert status["decidedAt"] == "2025-01-01T01:00:00Z"
    assert status["votes"] == [
        {
            "user": "approver1",
            "decision": "approve",
            "time": "2025-01-01T01:00:00Z",
            "groups": [],
            "comment": "lgtm",
        },
        {
            "user": "approver2",
            "decision": "approve",
            "time": "2025-01-01T01:00:00Z",
            "groups": ["approvers"],
        },
    ]
    (condition,) = status["conditions"]
    assert condition["type"] == "Decided"
    assert (condition["status"], condition["reason"]) == ("True", "Approved")
    assert condition["observedGeneration"] == 3
    # It parses back under the model's (the CRD's) rules.
    assert parse_approval_status(status).decision == "Approved"


def test_pending_status_has_no_decided_at_and_keeps_it_once_set():
    body = approval({"approver1": yes()})
    pending = approval_status(body, decide(body, LATER), LATER)
    assert "decidedAt" not in pending
    assert pending["conditions"][0]["status"] == "False"
    body["status"] = {**pending, "decision": "Approved", "decidedAt": "2025-01-01T01:30:00Z"}
    later = LATER + datetime.timedelta(hours=1)
    again = approval_status(body, decide(body, later), later)
    assert again["decidedAt"] == "2025-01-01T01:30:00Z"


def test_vote_history_appends_changes_and_withdrawals_only():
    from conveyor.api.approval import Vote

    first = vote_history((), {"a": Vote("approve")}, T0)
    assert [(r.user, r.decision) for r in first] == [("a", "approve")]
    same = vote_history(first, {"a": Vote("approve")}, LATER)
    assert same == first
    changed = vote_history(first, {"a": Vote("reject", "no")}, LATER)
    assert [(r.decision, r.time) for r in changed] == [("approve", T0), ("reject", LATER)]
    withdrawn = vote_history(changed, {}, LATER)
    assert withdrawn[-1].decision == "withdrawn"
    assert vote_history(withdrawn, {}, LATER) == withdrawn


def test_vote_history_is_bounded():
    from conveyor.api.approval import MAX_VOTE_HISTORY, Vote

    history: tuple = ()
    for i in range(MAX_VOTE_HISTORY + 10):
        history = vote_history(history, {"a": Vote("approve", str(i))}, T0)
    assert len(history) == MAX_VOTE_HISTORY
    assert history[-1].comment == str(MAX_VOTE_HISTORY + 9)


def test_decision_approvals_text():
    assert Decision("Pending", ("a",), (), "x", required=3).approvals == "1/3"


# -- the manifest
ENV = {
    "apiVersion": "conveyor.dev/v1alpha1",
    "kind": "Environment",
    "metadata": {"name": "prod", "namespace": "team"},
    "spec": {
        "kubeconfigSecret": {"name": "prod-kubeconfig"},
        "namespace": "app",
        "protection": {
            "requiredApprovals": 2,
            "approvers": ["approver1", "group:approvers"],
            "approvalTimeout": "2h30m",
        },
    },
}


def test_approval_manifest_copies_the_policy_and_outlives_the_run():
    m = approval_manifest(
        "r1",
        "uid-1",
        "deploy prod",
        ENV,
        {"ref": "main", "sha": SHA, "beforeSha": SHA},
        ("registry/app@sha256:" + "0" * 64,),
        "developer",
        T0,
        digest=DIGEST,
        pusher=("pat", "webhook"),
    )
    assert m["apiVersion"] == "conveyor.dev/v1alpha1" and m["kind"] == "Approval"
    meta = m["metadata"]
    assert meta["name"] == approval_name("r1", "uid-1", "deploy prod", DIGEST)
    assert meta["namespace"] == "team"
    assert meta["labels"] == {"conveyor.dev/pipelinerun": "r1", "conveyor.dev/environment": "prod"}
    assert meta["annotations"] == {"conveyor.dev/job": "deploy prod"}
    # Not owned by the run: deleting the run must not delete who approved what.
    assert "ownerReferences" not in meta
    assert m["spec"] == {
        "pipelineRun": "r1",
        "runUID": "uid-1",
        "job": "deploy prod",
        "digest": DIGEST,
        "environment": "prod",
        "revision": {"ref": "main", "sha": SHA},
        "expiresAt": "2025-01-01T02:30:00Z",
        "requiredApprovals": 2,
        "approvers": ["approver1", "group:approvers"],
        "allowInitiator": False,
        "initiator": "developer",
        "pusher": "pat",
        "pusherSource": "webhook",
        "images": ["registry/app@sha256:" + "0" * 64],
    }
    # What the operator creates parses under the model, and starts Pending.
    assert decide(m, T0).state == "Pending"


def test_approval_manifest_defaults():
    env = {
        "metadata": {"name": "test"},
        "spec": {"kubeconfigSecret": {"name": "k"}, "namespace": "a"},
    }
    m = approval_manifest("r1", "u", "deploy", env, {"ref": "main"}, (), None, T0, digest=DIGEST)
    assert "namespace" not in m["metadata"]
    spec = m["spec"]
    assert spec["requiredApprovals"] == 0
    assert spec["approvers"] == []
    assert spec["expiresAt"] == "2025-01-02T00:00:00Z"  # 24h
    assert "initiator" not in spec and spec["images"] == []
    assert decide(m, T0).state == "Approved"  # an unprotected environment gates nothing


def test_approval_manifest_refuses_a_bad_revision():
    from conveyor.api import ModelError

    with pytest.raises(ModelError, match=r"revision\.sha"):
        approval_manifest(
            "r1", "u", "deploy", ENV, {"ref": "main", "sha": "short"}, (), None, T0, digest=DIGEST
        )


def test_approval_names_are_deterministic_bounded_and_distinct():
    name = approval_name("r1", "uid-1", "deploy prod")
    assert name == approval_name("r1", "uid-1", "deploy prod")
    assert name.startswith("r1-deploy-prod-") and len(name) == len("r1-deploy-prod-") + 8
    # Same slug, different jobs; same names, a recreated run: all distinct.
    assert approval_name("r1", "uid-1", "deploy-prod") != name
    assert approval_name("r1", "uid-2", "deploy prod") != name
    # What the job would do changed: another Approval.
    assert approval_name("r1", "uid-1", "deploy prod", DIGEST) != name
    long = approval_name("r" * 63, "uid", "j" * 255)
    assert len(long) <= 63
    assert long.split("-")[1].startswith("j")  # the job keeps room
    import re

    for n in (name, long, approval_name("Ünïcode", "u", "déploy / prod!")):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", n), n
    assert approval_name("---", "u", "***").startswith("run-job-")


def test_the_approvals_table_shows_what_is_approved():
    from conveyor.api.approval import Approval
    from conveyor.cli.approvals import approvals_table
    from conveyor.cli.objects import parse

    m = approval_manifest(
        "r1",
        "u",
        "deploy",
        ENV,
        {"ref": "main", "sha": SHA},
        ("reg/app:main_1",),
        None,
        T0,
        digest=DIGEST,
    )
    m["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    approval = parse(Approval, m)
    header, row = approvals_table([approval], T0 + datetime.timedelta(minutes=1)).splitlines()
    assert header.split()[3:8] == ["ENVIRONMENT", "COMMIT", "IMAGES", "DECISION", "APPROVALS"]
    assert row.split()[3:8] == ["prod", SHA[:8], "reg/app:main_1", "Pending", "-/2"]
