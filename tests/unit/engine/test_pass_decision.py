"""One pass's decision over plain facts, without a controller or a cluster: locks held and
superseded, deploy and artifact records kept in the status, the targets' condition."""

from __future__ import annotations

import datetime
from dataclasses import replace

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.pipelinerun import (
    ArtifactRecord,
    DeploymentRecord,
    JobStatus,
    PipelineRunStatus,
    dump_run_status,
)
from conveyor.engine.artifacts import KeptRecord
from conveyor.engine.deploy_order import DEPLOYING, ENVIRONMENT, Claim
from conveyor.engine.model import FAILED, SUCCEEDED, ObservedJob
from conveyor.engine.pass_decision import PassFacts, decide, pipeline_locks, recordable

T0 = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)
PIPELINE = parse_pipeline_spec(
    {
        "stages": ["build", "deploy"],
        "jobs": [
            {"name": "build", "stage": "build", "script": ["make"], "artifacts": {"paths": ["a"]}},
            {
                "name": "deploy",
                "stage": "deploy",
                "script": ["./deploy"],
                "environment": {"name": "staging"},
            },
        ],
    }
)
DIGEST = "sha256:" + "1" * 64


def a_run(name: str = "r2", created: datetime.datetime = T0) -> PipelineRun:
    return PipelineRun.from_dict(
        {
            "metadata": {
                "name": name,
                "namespace": "team",
                "uid": f"uid-{name}",
                "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
            "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main", "sha": "a" * 40}},
        }
    )


def built(run: PipelineRun) -> ObservedJob:
    from conveyor.engine.names import job_name

    name = job_name(run.name, "build", 1, run.metadata.uid or "")
    return ObservedJob(name, "build", 1, SUCCEEDED, exit_code=0, completion_time=T0)


def facts(run: PipelineRun, **fields) -> PassFacts:
    return PassFacts(pipeline=PIPELINE, run=run, observed=[built(run)], now=T0, **fields)


def deploy_entry(decision) -> JobStatus:
    entry = decision.plan.status.job("deploy")
    assert entry is not None
    return entry


def test_a_free_environment_lets_the_deploy_start():
    decision = decide(facts(a_run()))
    assert [c.pipeline_job for c in decision.plan.create] == ["deploy"]
    assert not decision.held


def test_an_environment_held_by_another_run_holds_the_deploy():
    older = Claim("r1", "deploy", T0 - datetime.timedelta(minutes=5), DEPLOYING, "other")
    decision = decide(facts(a_run(), claims={(ENVIRONMENT, "staging"): [older]}))
    assert decision.plan.create == [] and decision.held
    assert deploy_entry(decision).reason == "WaitingForEnvironment"


def test_a_newer_run_of_the_same_pipeline_supersedes_this_one():
    newer = Claim("r3", "deploy", T0 + datetime.timedelta(minutes=5), DEPLOYING, "app")
    decision = decide(facts(a_run(), claims={(ENVIRONMENT, "staging"): [newer]}))
    assert decision.plan.create == []
    assert decision.plan.status.phase == "Cancelled"


def test_the_status_keeps_deploy_and_artifact_records_and_says_when_targets_fail():
    run = a_run()
    record = KeptRecord((ArtifactRecord("a.tar.gz", size=3, digest=DIGEST),))
    deployed = DeploymentRecord("deploy", "staging", "app", "a" * 40, "v1", "Succeeded")
    decision = decide(
        facts(
            run,
            deploy_records={"deploy": deployed},
            artifact_records={("build", 1): record},
            unreachable=["deploy: staging does not answer"],
        )
    )
    status = dump_run_status(decision.plan.status)  # as written
    (build,) = [j for j in status["jobs"] if j["name"] == "build"]
    assert build["artifacts"] == [
        {"name": "a.tar.gz", "kind": "archive", "size": 3, "digest": DIGEST}
    ]
    assert status["deployments"] == [
        {
            "job": "deploy",
            "environment": "staging",
            "namespace": "app",
            "sha": "a" * 40,
            "version": "v1",
            "result": "Succeeded",
            "images": [],
            "objects": 0,
            "pruned": 0,
        }
    ]
    (targets,) = [c for c in status["conditions"] if c["type"] == "TargetsReachable"]
    assert targets["status"] == "False"
    assert [e.reason for e in decision.plan.events if e.reason == "TargetUnavailable"]


def test_a_record_already_in_the_status_is_kept_as_it_is():
    run = a_run()
    stored = JobStatus("build", "build", "Succeeded", attempt=1, artifacts=())
    run = replace(run, status=PipelineRunStatus(jobs=(stored,)))
    other = {("build", 1): KeptRecord((ArtifactRecord("a.tar.gz", digest=DIGEST),))}
    decision = decide(facts(run, artifact_records=other))
    build = decision.plan.status.job("build")
    assert build is not None and build.artifacts == ()


def test_the_locks_a_pipeline_may_take_and_the_attempts_that_get_records():
    assert pipeline_locks(PIPELINE) == {(ENVIRONMENT, "staging")}
    assert recordable(PIPELINE, ObservedJob("r-build-1", "build", 1, FAILED, completion_time=T0))
    assert not recordable(PIPELINE, ObservedJob("r-build-2", "build", 2, "active"))
    assert not recordable(PIPELINE, ObservedJob("r-deploy-1", "deploy", 1, SUCCEEDED))
