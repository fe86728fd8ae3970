import datetime

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.engine import plan
from conveyor.engine.gates import (
    REASON_APPROVAL_REJECTED,
    gated_jobs,
    refused,
    waiting_status,
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
    assert status["phase"] == "Running"  # the planner's view: build first
    # Once build and to-test are done, only the gates hold the run.
    from conveyor.engine.model import SUCCEEDED, ObservedJob
    from conveyor.engine.names import job_name

    done = [
        ObservedJob(job_name("r", name, 1), name, 1, SUCCEEDED, exit_code=0)
        for name in ("build", "to-test")
    ]
    status = plan(pipeline, run(), done, NOW).status
    waiting = waiting_status(status, pipeline, gated, "r")
    assert waiting["phase"] == "WaitingForApproval"
    cond = next(c for c in waiting["conditions"] if c["type"] == "Succeeded")
    assert cond["reason"] == "WaitingForApproval"
    assert "manual-staging, to-prod" in cond["message"] and "conveyor approve r" in cond["message"]

    approved = plan(pipeline, with_approved(run(), {"to-prod", "manual-staging"}), done, NOW)
    assert {c.pipeline_job for c in approved.create} == {"to-prod", "manual-staging"}


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
        with_approved(run(), {"manual-staging"}),
        done + refused("r", {"to-prod": REASON_APPROVAL_REJECTED}),
        NOW,
    ).status
    assert status["phase"] == "Failed"
    prod = next(j for j in status["jobs"] if j["name"] == "to-prod")
    assert (prod["phase"], prod["reason"]) == ("Failed", "ApprovalRejected")


def test_a_plain_manual_job_still_reads_as_manual_action():
    pipeline = parse_pipeline_spec(
        {"jobs": [{"name": "m", "when": "manual", "allowFailure": False, "script": ["x"]}]}
    )
    status = plan(pipeline, run(), [], NOW).status
    assert waiting_status(status, pipeline, frozenset(), "r") == status
