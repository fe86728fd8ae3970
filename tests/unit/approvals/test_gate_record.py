"""The gate's own facts, pure: a run frozen at its start, which Approval releases which job, and
how long Approvals are kept."""

from __future__ import annotations

import datetime

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.approval import Approval
from conveyor.api.pipelinerun import parse_run_status
from conveyor.approvals import decide, why_not_allowed
from conveyor.approvals.matching import Expected, gate_digest, match_approvals
from conveyor.approvals.retention import sweep
from conveyor.engine.record import as_recorded, recorded_pipeline, with_record

NOW = datetime.datetime(2026, 11, 30, 8, 0, tzinfo=datetime.UTC)
SHA = "a" * 40
PIPELINE = parse_pipeline_spec(
    {"jobs": [{"name": "deploy", "script": ["./deploy"], "environment": {"name": "prod"}}]}
)
ENV_SPEC = {"namespace": "app", "kubeconfigSecret": {"name": "t.prod.kubeconfig"}}


def run(variables: dict[str, str] | None = None, status: dict | None = None) -> PipelineRun:
    return PipelineRun.from_dict(
        {
            "metadata": {"name": "r", "namespace": "ns", "uid": "uid-1"},
            "spec": {
                "pipelineRef": {"name": "p"},
                "revision": {"ref": "main", "sha": SHA},
                "variables": variables or {},
            },
            "status": status or {},
        }
    )


def test_a_started_run_keeps_the_pipeline_and_variables_it_started_with():
    started = with_record(run({"TARGET": "staging"}), PIPELINE)
    assert recorded_pipeline(started) == PIPELINE
    assert started.status.variables == {"TARGET": "staging"}
    # Recorded once: a later pass does not record again over it.
    edited = parse_pipeline_spec({"jobs": [{"name": "deploy", "script": ["./evil"]}]})
    assert recorded_pipeline(with_record(started, edited)) == PIPELINE
    # The spec's variables changed afterwards (refused at admission; and ignored here).
    from conveyor.api.codec import to_dict

    status = to_dict(started.status)
    later = as_recorded(run({"TARGET": "prod"}, status))
    assert later.spec is not None and later.spec.variables == {"TARGET": "staging"}
    assert recorded_pipeline(later) == PIPELINE
    # Not started yet: nothing recorded, the spec is what counts.
    assert as_recorded(run({"A": "1"})).spec.variables == {"A": "1"}  # type: ignore[union-attr]


def test_the_digest_changes_with_everything_the_job_would_do():
    base = gate_digest(PIPELINE, "deploy", {}, "prod", ENV_SPEC, SHA)
    assert base.startswith("sha256:") and len(base) == 71
    assert base == gate_digest(PIPELINE, "deploy", {}, "prod", dict(ENV_SPEC), SHA)
    other_script = parse_pipeline_spec(
        {"jobs": [{"name": "deploy", "script": ["./other"], "environment": {"name": "prod"}}]}
    )
    for changed in (
        gate_digest(other_script, "deploy", {}, "prod", ENV_SPEC, SHA),
        gate_digest(PIPELINE, "deploy", {"X": "1"}, "prod", ENV_SPEC, SHA),
        gate_digest(PIPELINE, "deploy", {}, "staging", ENV_SPEC, SHA),
        gate_digest(PIPELINE, "deploy", {}, "prod", {**ENV_SPEC, "namespace": "b"}, SHA),
        gate_digest(PIPELINE, "deploy", {}, "prod", ENV_SPEC, "b" * 40),
        gate_digest(
            PIPELINE, "deploy", {}, "prod", ENV_SPEC, SHA, {"build#1": "sha256:" + "1" * 64}
        ),
    ):
        assert changed != base
    # A job that downloads no artifacts keeps the digest it had before artifacts existed.
    assert gate_digest(PIPELINE, "deploy", {}, "prod", ENV_SPEC, SHA, {}) == base


ARTIFACT_PIPELINE = parse_pipeline_spec(
    {
        "stages": ["build", "deploy"],
        "jobs": [
            {"name": "build", "stage": "build", "script": ["make"], "artifacts": {"paths": ["a"]}},
            {"name": "deploy", "stage": "deploy", "script": ["./deploy"],
             "environment": {"name": "prod"}},
        ],
    }
)  # fmt: skip


def test_the_approval_covers_the_artifacts_the_gated_job_downloads():
    """The digest an Approval must carry names the recorded digest of each archive the gated job
    downloads: an approval holds for exactly those bytes, and none is asked for (nothing
    matches) while one is not recorded yet."""
    from conveyor.reconcile.approvals import ApprovalGates

    gates = ApprovalGates(None, None, lambda ns, name: {"spec": ENV_SPEC}, None, None, None, "i",
                          artifacts_recorded=True)  # type: ignore[arg-type]  # fmt: skip
    the_run = run()

    def expected(artifacts):
        jobs = [{"name": "build", "stage": "build", "phase": "Succeeded", "attempt": 1,
                 **artifacts},
                {"name": "deploy", "stage": "deploy", "phase": "Manual"}]  # fmt: skip
        parsed = parse_run_status({"jobs": jobs}).jobs
        return gates.expected_of("ns", the_run, ARTIFACT_PIPELINE, "deploy", parsed)

    one = {"artifacts": [{"name": "a", "kind": "archive", "digest": "sha256:" + "1" * 64}]}
    other = {"artifacts": [{"name": "a", "kind": "archive", "digest": "sha256:" + "2" * 64}]}
    assert expected(one).digest != expected(other).digest
    assert expected(one).digest == expected(dict(one)).digest and not expected(one).pending
    unread = expected({})
    assert unread.pending and not unread.digest.startswith("sha256:")
    without = gate_digest(ARTIFACT_PIPELINE, "deploy", {}, "prod", ENV_SPEC, SHA)
    assert expected({"artifacts": []}).digest == without  # it kept nothing


def approval(name: str, uid: str, digest: str, env: str = "prod", sha: str = SHA) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {
            "pipelineRun": "r",
            "runUID": uid,
            "job": "deploy",
            "digest": digest,
            "environment": env,
            "revision": {"ref": "main", "sha": sha},
            "expiresAt": "2026-12-01T00:00:00Z",
            "requiredApprovals": 1,
            "approvers": ["a"],
            "votes": {"a": {"decision": "approve"}},
        },
    }


def test_only_the_approval_of_this_run_for_these_facts_releases_the_job():
    digest = gate_digest(PIPELINE, "deploy", {}, "prod", ENV_SPEC, SHA)
    want = {"deploy": Expected("prod", digest)}
    current = approval("now", "uid-1", digest)
    stale = approval("before", "uid-1", "sha256:" + "0" * 64)
    other_run = approval("old-run", "uid-0", digest)  # the same name, an earlier run
    staging = approval("staging", "uid-1", digest, env="staging")
    other_commit = approval("commit", "uid-1", digest, sha="b" * 40)
    found = match_approvals([stale, other_run, current, staging, other_commit], "uid-1", SHA, want)
    assert found.current == {"deploy": Approval.from_dict(current)}
    assert [a.name for a in found.stale] == ["before", "staging", "commit"]
    assert match_approvals([current], "", SHA, want).current == {}
    # Closed undecided (the facts changed and changed back): counted, so the next one asked
    # for gets a name of its own.
    closed = {**current, "status": {"decision": "Cancelled"}}
    again = match_approvals([closed], "uid-1", SHA, want)
    assert again.current == {} and again.rounds == {"deploy": 1}


def test_the_pusher_is_held_to_the_initiators_rule():
    assert why_not_allowed("pat", [], ["pat"], "operator", False, pusher="pat") is not None
    assert why_not_allowed("pat", [], ["pat"], "operator", True, pusher="pat") is None
    body = approval("a", "uid-1", "sha256:" + "0" * 64)
    body["spec"]["approvers"] = ["pat", "ann"]
    body["spec"]["pusher"] = "pat"
    body["spec"]["votes"] = {"pat": {"decision": "approve"}}
    decision = decide(body, NOW)
    assert decision.state == "Pending"
    assert [v.user for v in decision.ignored] == ["pat"]


def test_approvals_outlive_their_run_until_the_retention_ends():
    kept = approval("kept", "uid-1", "x")
    orphan_recent = approval("recent", "uid-0", "x")
    orphan_recent["metadata"]["creationTimestamp"] = "2026-11-29T00:00:00Z"
    orphan_old = approval("old", "uid-0", "x")
    orphan_old["status"] = {"decision": "Approved"}
    found = sweep(
        [kept, orphan_recent, orphan_old],
        {("ns", "r", "uid-1")},
        NOW,
        datetime.timedelta(days=7),
    )
    # The run exists: untouched. Gone: a pending one is closed; an old one is deleted.
    assert [b["metadata"]["name"] for b in found.close] == ["recent"]
    assert found.delete == [("ns", "old")]


def test_the_pusher_comes_from_the_webhook_else_weaker_from_the_commit():
    from conveyor.approvals import pusher_of

    hook = {"conveyor.dev/trigger-pusher": "pat"}
    assert pusher_of(hook, "push", "Ann <ann@example.com>") == ("pat", "webhook")
    assert pusher_of({}, "push", "Ann <ann@example.com>") == ("ann@example.com", "commit")
    assert pusher_of({}, "push", "no email") is None
    # Not a push: whoever started the run is its initiator; there is no pusher.
    assert pusher_of(hook, "api", "Ann <ann@example.com>") is None
