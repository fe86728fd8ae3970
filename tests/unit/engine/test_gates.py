import datetime

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.pipelinerun import PipelineRunStatus, dump_run_status
from conveyor.engine import plan
from conveyor.engine.gates import (
    REASON_APPROVAL_REJECTED,
    gated_jobs,
    refused,
    with_approved,
    with_gates,
)

NOW = datetime.datetime(2026, 11, 26, 8, 0, tzinfo=datetime.UTC)

PIPELINE = parse_pipeline_spec(
    {
        "stages": ["build", "deploy"],
        "jobs": [
            {"name": "build", "stage": "build", "script": ["make"]},
            {"name": "to-test", "stage": "deploy", "deploy": {}, "environment": {"name": "test"}},
            {"name": "to-prod", "stage": "deploy", "deploy": {}, "environment": {"name": "prod"}},
            {
                "name": "manual-staging",
                "stage": "deploy",
                "when": "manual",
                "script": ["x"],
                "environment": {"name": "staging"},
            },
        ],
    }
)


def run(play=()) -> PipelineRun:
    return PipelineRun.from_dict(
        {
            "metadata": {"name": "r", "namespace": "ns", "uid": "u"},
            "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}, "play": list(play)},
        }
    )


def test_jobs_of_protected_environments_are_gated():
    assert gated_jobs(PIPELINE, {"prod": 2, "test": 0}) == {"to-prod"}
    # A manual deployment to a protected environment: its Approval is its play.
    assert gated_jobs(PIPELINE, {"prod": 1, "staging": 1}) == {"to-prod", "manual-staging"}


def test_an_unapproved_gate_makes_the_run_wait_for_approval():
    gated = gated_jobs(PIPELINE, {"prod": 1, "staging": 1})
    pipeline = with_gates(PIPELINE, gated)
    status = plan(pipeline, run(), [], NOW).status
    assert status.phase == "Running"  # the planner's view: build first
    # Once build and to-test are done, only the gates hold the run.
    from conveyor.engine.model import SUCCEEDED, ObservedJob
    from conveyor.engine.names import job_name

    done = [
        ObservedJob(job_name("r", name, 1), name, 1, SUCCEEDED, exit_code=0)
        for name in ("build", "to-test")
    ]
    decided = plan(pipeline, run(), done, NOW, gated=gated)
    waiting = decided.status
    assert waiting.phase == "WaitingForApproval"
    cond = next(c for c in waiting.conditions if c.type == "Succeeded")
    assert cond.reason == "WaitingForApproval"
    assert "manual-staging, to-prod" in cond.message and "conveyor approve r" in cond.message
    # The event says the same, and never invites a play that would not release the job.
    assert [(e.reason, "play" in e.message) for e in decided.events][-1:] == [
        ("WaitingForApproval", False)
    ]

    approved = plan(
        pipeline, with_approved(run(), {"to-prod", "manual-staging"}, gated), done, NOW, gated=gated
    )
    assert {c.pipeline_job for c in approved.create} == {"to-prod", "manual-staging"}


def test_play_never_releases_a_gated_job():
    gated = gated_jobs(PIPELINE, {"prod": 1, "staging": 1})
    pipeline = with_gates(PIPELINE, gated)
    from conveyor.engine.model import SUCCEEDED, ObservedJob
    from conveyor.engine.names import job_name

    done = [
        ObservedJob(job_name("r", name, 1), name, 1, SUCCEEDED, exit_code=0)
        for name in ("build", "to-test")
    ]
    played = with_approved(run(play=["to-prod", "manual-staging"]), set(), gated)
    assert played.spec is not None and played.spec.play == ()
    decided = plan(pipeline, played, done, NOW, gated=gated)
    assert decided.create == []
    assert decided.status.phase == "WaitingForApproval"
    # Approving one releases exactly that one.
    one = with_approved(run(play=["to-prod", "manual-staging"]), {"to-prod"}, gated)
    assert {c.pipeline_job for c in plan(pipeline, one, done, NOW, gated=gated).create} == {
        "to-prod"
    }


def test_a_run_held_by_a_gate_and_a_manual_job_says_which_is_which():
    pipeline = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "m", "when": "manual", "allowFailure": False, "script": ["x"]},
                {"name": "p", "deploy": {}, "environment": {"name": "prod"}},
            ]
        }
    )
    gated = frozenset({"p"})
    status = plan(with_gates(pipeline, gated), run(), [], NOW, gated=gated).status
    cond = next(c for c in status.conditions if c.type == "Succeeded")
    assert cond.reason == "ManualActionRequired"
    assert "job 'm' is waiting to be played: conveyor play r m" in cond.message
    assert "job 'p' waits for approval: conveyor approve r" in cond.message
    assert "conveyor play r p" not in cond.message


def test_a_rejected_gate_fails_the_run_and_says_why():
    gated = gated_jobs(PIPELINE, {"prod": 1, "staging": 1})
    pipeline = with_gates(PIPELINE, gated)
    from conveyor.engine.model import SUCCEEDED, ObservedJob
    from conveyor.engine.names import job_name

    done = [
        ObservedJob(job_name("r", name, 1), name, 1, SUCCEEDED, exit_code=0)
        for name in ("build", "to-test", "manual-staging")
    ]
    status = plan(
        pipeline,
        with_approved(run(), {"manual-staging"}, gated),
        done + refused("r", {"to-prod": REASON_APPROVAL_REJECTED}, {"to-prod": "rejected by a"}),
        NOW,
        gated=gated,
    ).status
    assert status.phase == "Failed"
    prod = next(j for j in status.jobs if j.name == "to-prod")
    assert (prod.phase, prod.reason) == ("Failed", "ApprovalRejected")
    assert prod.message == "rejected by a"


def test_a_plain_manual_job_still_reads_as_manual_action():
    pipeline = parse_pipeline_spec(
        {"jobs": [{"name": "m", "when": "manual", "allowFailure": False, "script": ["x"]}]}
    )
    status = plan(pipeline, run(), [], NOW).status
    assert status.phase == "Running"
    cond = next(c for c in status.conditions if c.type == "Succeeded")
    assert cond.reason == "ManualActionRequired"


def test_a_manual_job_of_a_finished_run_can_still_be_played():
    """GitLab: the pipeline passes with the optional manual job unplayed; playing it later runs
    the pipeline again, and it ends with that job's result."""
    from conveyor.api.codec import to_dict
    from conveyor.engine.model import FAILED, SUCCEEDED, ObservedJob
    from conveyor.engine.names import job_name
    from conveyor.engine.planner import reopened

    pipeline = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "test", "script": ["x"]},
                {"name": "deploy", "stage": "deploy", "when": "manual", "script": ["y"]},
            ]
        }
    )
    done = [ObservedJob(job_name("r", "test", 1), "test", 1, SUCCEEDED, exit_code=0)]
    first = plan(pipeline, run(), done, NOW)
    assert first.status.phase == "Succeeded"

    def with_status(status: PipelineRunStatus, play: list[str]) -> PipelineRun:
        body = to_dict(run(play=play))
        return PipelineRun.from_dict({**body, "status": dump_run_status(status)})

    ended = with_status(first.status, [])
    assert reopened(ended) == [] and plan(pipeline, ended, done, NOW).create == []
    played = with_status(first.status, ["deploy"])
    assert reopened(played) == ["deploy"]
    again = plan(pipeline, played, done, NOW)
    assert [c.pipeline_job for c in again.create] == ["deploy"]
    assert again.status.phase == "Running" and again.status.completion_time is None
    assert again.events[0].reason == "RunReopened"
    # It ends again, with the played job's result.
    running = with_status(again.status, ["deploy"])
    failed = [*done, ObservedJob(job_name("r", "deploy", 1), "deploy", 1, FAILED, exit_code=2)]
    end = plan(pipeline, running, failed, NOW)
    assert end.status.phase == "Succeeded"  # a manual job's failure is allowed by default
    cond = next(c for c in end.status.conditions if c.type == "Succeeded")
    assert cond.reason == "SucceededWithWarnings"
    assert next(j for j in end.status.jobs if j.name == "deploy").phase == "Failed"
