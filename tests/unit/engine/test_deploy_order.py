"""One deploy per environment at a time, newest first: the pure arbitration and its effect on
the plan."""

import datetime

from conveyor.api import PipelineRun, parse_pipeline_spec, to_dict
from conveyor.engine import plan
from conveyor.engine.deploy_order import (
    DEPLOYED,
    DEPLOYING,
    WAITING,
    Arbitration,
    Claim,
    Hold,
    arbitrate,
    claim_entries,
    claim_state,
    locks_of,
)
from conveyor.engine.gates import gated_jobs, with_gates
from conveyor.engine.model import SUCCEEDED, ObservedJob
from conveyor.engine.names import job_name


def arbitrate_p(*args, **kwargs):
    """Arbitration for a run of Pipeline p (all claims here are of p unless said)."""
    return arbitrate(*args, pipeline="p", **kwargs)


ENV_TEST = ("environment", "test")
TEST = (ENV_TEST,)
NOW = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
EARLIER = NOW - datetime.timedelta(minutes=5)
LATER = NOW + datetime.timedelta(minutes=5)

PIPELINE = parse_pipeline_spec(
    {
        "stages": ["build", "deploy"],
        "jobs": [
            {"name": "build", "stage": "build", "script": ["make"]},
            {
                "name": "to-test",
                "stage": "deploy",
                "script": ["x"],
                "environment": {"name": "test"},
            },
            {"name": "lint", "stage": "deploy", "script": ["lint"]},
        ],
    }
)


def run(name: str = "r") -> PipelineRun:
    return PipelineRun.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "u"},
            "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}},
        }
    )


BUILT = [ObservedJob(job_name("r", "build", 1), "build", 1, SUCCEEDED, exit_code=0)]


def test_a_free_environment_lets_the_deploy_start():
    decision = arbitrate_p("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: []})
    assert decision.held == {} and decision.superseded is None
    # Older runs that deployed, or failed and left no claim, do not stand in the way.
    older = [Claim("old", "to-test", EARLIER, DEPLOYED, "p")]
    assert arbitrate_p("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: older}).held == {}


def test_an_older_run_deploying_holds_a_ready_deploy():
    busy = [Claim("old", "to-test", EARLIER, DEPLOYING, "p")]
    decision = arbitrate_p("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: busy})
    assert decision.superseded is None
    hold = decision.held["to-test"]
    assert hold.reason == "WaitingForEnvironment" and "run old deploys there" in hold.message
    # A deploy still waiting for approval is not held: it does not start yet anyway.
    waiting = arbitrate_p("r", NOW, {"to-test": (TEST, False)}, {ENV_TEST: busy})
    assert waiting.held == {} and waiting.superseded is None


def test_a_newer_run_supersedes_an_older_waiting_deploy():
    for state in (WAITING, DEPLOYING, DEPLOYED):
        newer = [Claim("new", "to-test", LATER, state, "p")]
        for ready in (True, False):
            decision = arbitrate_p("r", NOW, {"to-test": (TEST, ready)}, {ENV_TEST: newer})
            assert decision.superseded is not None
            assert "newer run new" in decision.superseded and "'test'" in decision.superseded


def test_the_newest_claim_names_the_run_that_supersedes():
    claims = [
        Claim("b", "to-test", LATER, WAITING, "p"),
        Claim("c", "to-test", LATER + datetime.timedelta(seconds=1), WAITING, "p"),
    ]
    decision = arbitrate_p("a", NOW, {"to-test": (TEST, True)}, {ENV_TEST: claims})
    assert decision.superseded is not None and "newer run c waits" in decision.superseded


def test_runs_created_in_the_same_second_are_ordered_by_name():
    same = [Claim("r2", "to-test", NOW, WAITING, "p")]
    assert arbitrate_p("r1", NOW, {"to-test": (TEST, True)}, {ENV_TEST: same}).superseded
    older = [Claim("r1", "to-test", NOW, WAITING, "p")]
    assert arbitrate_p("r2", NOW, {"to-test": (TEST, True)}, {ENV_TEST: older}).superseded is None


def test_other_environments_and_the_run_itself_do_not_count():
    claims = {
        ENV_TEST: [Claim("r", "to-test", NOW, DEPLOYING, "p")],
        ("environment", "prod"): [Claim("new", "to-prod", LATER, DEPLOYING, "p")],
    }
    decision = arbitrate_p("r", NOW, {"to-test": (TEST, True)}, claims)
    assert decision.held == {} and decision.superseded is None


def test_claim_state_reads_the_job_status_entry():
    assert claim_state({"phase": "Running", "attempt": 1}) == DEPLOYING
    assert claim_state({"phase": "Pending", "attempt": 1}) == DEPLOYING  # created, not seen yet
    assert claim_state({"phase": "Succeeded", "attempt": 1}) == DEPLOYED
    assert claim_state({"phase": "Pending", "reason": "WaitingForEnvironment"}) == WAITING
    assert claim_state({"phase": "Manual", "reason": "WaitingForApproval"}) == WAITING
    assert claim_state({"phase": "Manual"}) is None  # a manual job nobody played
    assert claim_state({"phase": "Pending"}) is None  # earlier stages still run
    assert claim_state({"phase": "Failed", "attempt": 1}) is None
    assert claim_state({"phase": "Cancelled", "reason": "Superseded"}) is None


def test_claim_entries_keep_what_other_runs_need():
    body = {
        "metadata": {"name": "r", "creationTimestamp": "2026-11-26T10:00:00Z"},
        "status": {
            "phase": "Running",
            "jobs": [
                {"name": "build", "phase": "Succeeded", "attempt": 1},
                {"name": "to-test", "phase": "Running", "attempt": 1, "environment": "test"},
                {"name": "to-prod", "phase": "Pending", "environment": "prod"},
            ],
        },
    }
    entries = claim_entries(body)
    assert set(entries) == {ENV_TEST, ("environment", "prod")}
    assert entries[ENV_TEST] == [
        {
            "run": "r",
            "job": "to-test",
            "created": "2026-11-26T10:00:00Z",
            "state": DEPLOYING,
            "started": True,
            "pipeline": None,
        }
    ]
    prod = entries[("environment", "prod")][0]
    assert prod["state"] is None and prod["started"] is False
    # A finished run keeps only what it deployed.
    body["status"]["phase"] = "Failed"
    body["status"]["jobs"][1]["phase"] = "Succeeded"
    assert set(claim_entries(body)) == {ENV_TEST}


def test_a_held_deploy_waits_and_the_run_says_for_what():
    held = {
        "to-test": Hold(
            "WaitingForEnvironment",
            "environment 'test' is busy: run old deploys there (job 'to-test')",
        )
    }
    decided = plan(PIPELINE, run(), BUILT, NOW, held=held)
    # The held deploy is not created; the other job of its stage is.
    assert [c.pipeline_job for c in decided.create] == ["lint"]
    entry = next(j for j in decided.status.jobs if j.name == "to-test")
    assert entry.phase == "Pending" and entry.reason == "WaitingForEnvironment"
    assert entry.environment == "test" and entry.attempt is None
    # Once nothing else runs, the run's condition says what it waits for.
    lint = ObservedJob(job_name("r", "lint", 1), "lint", 1, SUCCEEDED, exit_code=0)
    decided = plan(PIPELINE, run(), [*BUILT, lint], NOW, held=held)
    cond = next(c for c in decided.status.conditions if c.type == "Succeeded")
    assert decided.status.phase == "Running"
    assert cond.reason == "WaitingForEnvironment"
    assert "job 'to-test' waits: environment 'test' is busy: run old" in cond.message
    # Released: it starts.
    decided = plan(PIPELINE, run(), [*BUILT, lint], NOW)
    assert [c.pipeline_job for c in decided.create] == ["to-test"]


def test_a_superseded_run_is_cancelled_and_says_by_whom():
    why = "superseded: newer run new waits to deploy to environment 'test' (job 'to-test')"
    decided = plan(PIPELINE, run(), BUILT, NOW, superseded=why)
    assert decided.create == []
    status = decided.status
    assert status.phase == "Cancelled"
    cond = next(c for c in status.conditions if c.type == "Succeeded")
    assert (cond.status, cond.reason, cond.message) == ("False", "Superseded", why)
    jobs = {j.name: j for j in status.jobs}
    assert jobs["build"].phase == "Succeeded"
    assert (jobs["to-test"].phase, jobs["to-test"].reason) == ("Cancelled", "Superseded")
    assert any(e.reason == "RunCancelled" and "Superseded" in e.message for e in decided.events)


def test_a_gated_deploy_says_it_waits_for_approval():
    pipeline = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "to-prod", "deploy": {}, "environment": {"name": "prod"}},
            ]
        }
    )
    gated = gated_jobs(pipeline, {"prod": 1})
    status = plan(with_gates(pipeline, gated), run(), [], NOW, gated=gated).status
    (entry,) = status.jobs
    assert (entry.phase, entry.reason) == ("Manual", "WaitingForApproval")
    assert claim_state(to_dict(entry)) == WAITING


GROUP = ("resource group", "migrations")


def test_a_resource_group_runs_one_job_at_a_time_and_supersedes_nobody():
    # A newer run in the group does not stand in the way (GitLab's default, unordered).
    newer = [Claim("new", "migrate", LATER, WAITING, "p")]
    decision = arbitrate_p("r", NOW, {"migrate": ((GROUP,), True)}, {GROUP: newer})
    assert decision == Arbitration({}, None)
    # Any other run inside the group holds it.
    for when in (EARLIER, LATER):
        busy = [Claim("other", "migrate", when, DEPLOYING)]
        decision = arbitrate_p("r", NOW, {"migrate": ((GROUP,), True)}, {GROUP: busy})
        hold = decision.held["migrate"]
        assert hold.reason == "WaitingForResource"
        assert "resource group 'migrations' is busy: run other runs job 'migrate'" in hold.message


def test_a_job_with_an_environment_and_a_resource_group_holds_both():
    locks = (ENV_TEST, GROUP)
    busy_group = {GROUP: [Claim("other", "migrate", EARLIER, DEPLOYING, "p")], ENV_TEST: []}
    decision = arbitrate_p("r", NOW, {"to-test": (locks, True)}, busy_group)
    assert decision.held["to-test"].reason == "WaitingForResource"
    newer_env = {GROUP: [], ENV_TEST: [Claim("new", "to-test", LATER, WAITING, "p")]}
    assert arbitrate_p("r", NOW, {"to-test": (locks, True)}, newer_env).superseded
    entry = {"name": "to-test", "phase": "Pending", "environment": "test", "resourceGroup": "m"}
    assert locks_of(entry) == (ENV_TEST, ("resource group", "m"))


def test_a_job_held_by_its_resource_group_says_so():
    pipeline = parse_pipeline_spec(
        {"jobs": [{"name": "migrate", "script": ["x"], "resourceGroup": "migrations"}]}
    )
    held = {"migrate": Hold("WaitingForResource", "resource group 'migrations' is busy")}
    decided = plan(pipeline, run(), [], NOW, held=held)
    assert decided.create == []
    (entry,) = decided.status.jobs
    assert (entry.reason, entry.resource_group) == ("WaitingForResource", "migrations")
    assert claim_state(to_dict(entry)) == WAITING
    cond = next(c for c in decided.status.conditions if c.type == "Succeeded")
    assert cond.reason == "WaitingForResource"
    assert cond.message == "job 'migrate' waits: resource group 'migrations' is busy"


def test_only_a_newer_run_of_the_same_pipeline_supersedes():
    # Another pipeline (or an inline spec) deploys something else there: they take turns.
    other = [Claim("infra", "to-test", LATER, WAITING, "infra")]
    assert arbitrate_p("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: other}).superseded is None
    busy = [Claim("infra", "to-test", LATER, DEPLOYING, "infra")]
    decision = arbitrate_p("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: busy})
    assert (
        decision.superseded is None
        and "run infra deploys there" in decision.held["to-test"].message
    )
    newer = [Claim("new", "to-test", LATER, WAITING, "p")]
    inline = arbitrate("r", NOW, {"to-test": (TEST, True)}, {ENV_TEST: newer}, pipeline=None)
    assert inline.superseded is None
