"""Model parsing: camelCase input, defaults, constraints, round trips, status size."""

from __future__ import annotations

import datetime
import json

import pytest

from conveyor.api import ModelError, PipelineRun, from_dict, parse_pipeline_spec, to_dict
from conveyor.api.durations import format_duration, parse_duration
from conveyor.api.pipelinerun import JobStatus, PipelineRunStatus

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def test_defaults_and_camel_case():
    spec = parse_pipeline_spec(
        {
            "jobs": [
                {
                    "name": "unit tests",
                    "script": ["make test"],
                    "beforeScript": ["make deps"],
                    "allowFailure": True,
                    "secretVariables": [{"name": "TOKEN", "secretName": "s", "key": "token"}],
                    "retry": {"max": 2},
                    "podAnnotations": {"sidecar.istio.io/inject": "false"},
                }
            ]
        }
    )
    assert spec.stages == ("build", "test", "deploy")
    assert spec.history_limit == 10
    job = spec.jobs[0]
    assert job.stage == "test"
    assert job.when == "on_success"
    assert job.needs is None
    assert job.before_script == ("make deps",)
    assert job.allow_failure is True
    assert job.secret_variables[0].secret_name == "s"
    assert job.secret_variables[0].file is False
    assert job.retry is not None and job.retry.when == ("always",)
    assert job.timeout_seconds() == 3600
    assert job.pod_annotations == {"sidecar.istio.io/inject": "false"}


def test_empty_needs_is_not_absent_needs():
    spec = parse_pipeline_spec({"jobs": [{"name": "a", "script": ["x"], "needs": []}]})
    assert spec.jobs[0].needs == ()
    assert to_dict(spec)["jobs"][0]["needs"] == []


@pytest.mark.parametrize(
    ("job", "path"),
    [
        ({"name": "a"}, "script"),
        ({"name": "a", "script": []}, "script"),
        ({"name": "a", "script": ["x"], "when": "sometimes"}, "when"),
        ({"name": "a", "script": ["x"], "timeout": "1d"}, "timeout"),
        ({"name": "a", "script": ["x"], "retry": {"max": 3}}, "retry.max"),
        (
            {
                "name": "a",
                "script": ["x"],
                "secretVariables": [{"name": "1BAD", "secretName": "s", "key": "k"}],
            },
            "secretVariables[0].name",
        ),
        ({"name": "x" * 256, "script": ["x"]}, "name"),
    ],
)
def test_invalid_jobs_name_the_field(job, path):
    with pytest.raises(ModelError) as err:
        parse_pipeline_spec({"jobs": [job]})
    assert path in str(err.value)


def test_duplicate_job_names_refused():
    with pytest.raises(ModelError, match="duplicate"):
        parse_pipeline_spec(
            {"jobs": [{"name": "a", "script": ["x"]}, {"name": "a", "script": ["y"]}]}
        )


def test_failure_allowed_follows_gitlab():
    spec = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "plain", "script": ["x"]},
                {"name": "manual", "script": ["x"], "when": "manual"},
                {"name": "blocking", "script": ["x"], "when": "manual", "allowFailure": False},
                {"name": "codes", "script": ["x"], "allowFailureExitCodes": [3]},
            ]
        }
    )
    plain, manual, blocking, codes = spec.jobs
    assert not plain.failure_allowed(1)
    assert manual.failure_allowed(1) and not manual.blocking_manual
    assert not blocking.failure_allowed(1) and blocking.blocking_manual
    assert codes.failure_allowed(3) and not codes.failure_allowed(4)


def test_pipelinerun_round_trip():
    body = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {
            "name": "r1",
            "namespace": "ci",
            "uid": "u-1",
            "generation": 2,
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}, "play": ["deploy"]},
        "status": {
            "phase": "Running",
            "startTime": "2025-01-01T00:00:05Z",
            "jobs": [{"name": "a", "stage": "test", "phase": "Running", "attempt": 1}],
        },
    }
    run = PipelineRun.from_dict(body)
    assert run.name == "r1" and run.pipeline_name == "app"
    assert run.metadata.creation_timestamp == T0
    assert run.spec is not None and run.spec.pipeline_source == "api"
    assert run.status.start_time == T0 + datetime.timedelta(seconds=5)
    assert to_dict(run.status)["startTime"] == "2025-01-01T00:00:05Z"
    assert from_dict(PipelineRunStatus, to_dict(run.status)) == run.status


@pytest.mark.parametrize(("name_length", "limit"), [(30, 32 * 1024), (255, 64 * 1024)])
def test_status_of_100_jobs_stays_small(name_length, limit):
    long = "x" * (name_length - 4)
    jobs = tuple(
        JobStatus(
            name=f"{long}-{i:03}",
            stage="deploy-to-production",
            phase="Failed",
            attempt=3,
            job_name=("r" * 40 + f"-{i}")[:63],
            start_time=T0,
            completion_time=T0,
            exit_code=137,
            reason="ScriptFailure",
            allowed_failure=True,
        )
        for i in range(100)
    )
    status = PipelineRunStatus(phase="Failed", jobs=jobs, start_time=T0, duration="1h2m3s")
    size = len(json.dumps(to_dict(status)))
    assert size < limit, size


def test_durations():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90m") == 5400
    assert parse_duration("45s") == 45
    for bad in ("", "1d", "m", "1h 2m"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(83) == "1m23s"
    assert format_duration(3605) == "1h0m5s"
    assert format_duration(-1) == "0s"


def test_a_status_as_the_operator_writes_it_is_read_and_written_back_unchanged():
    """The operator parses a run's status when it reads the run and serialises it only when it
    writes: every field it writes must come back as it was, or each pass would write again."""
    from conveyor.api.evaluation import Evaluation, JobEvaluation
    from conveyor.api.pipelinerun import dump_run_status, parse_run_status

    pipeline = parse_pipeline_spec(
        {
            "stages": ["build", "deploy"],
            "jobs": [
                {"name": "build", "stage": "build", "script": ["make"],
                 "artifacts": {"paths": ["bin/"], "reports": {"junit": ["r.xml"]}}},
                {"name": "prod", "stage": "deploy", "deploy": {},
                 "environment": {"name": "prod"}, "resourceGroup": "prod"},
            ],
        }
    )  # fmt: skip
    evaluation = Evaluation(
        variables={"A": "1"},
        jobs=(JobEvaluation("build", when="on_success", allow_failure=False),),
        sha="a" * 40,
    )
    stored = {
        "phase": "Running",
        "conditions": [
            {"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "1/2",
             "lastTransitionTime": "2026-11-30T12:00:00Z", "observedGeneration": 1},
            {"type": "TargetsReachable", "status": "False", "reason": "TargetUnavailable",
             "message": "down", "lastTransitionTime": "2026-11-30T12:00:01Z"},
        ],
        "pipelineName": "app",
        "shortSha": "aaaaaaaa",
        "currentStage": "deploy",
        "startTime": "2026-11-30T12:00:00Z",
        "jobs": [
            {"name": "build", "stage": "build", "phase": "Succeeded", "attempt": 2,
             "jobName": "r-build-2", "startTime": "2026-11-30T12:00:00Z",
             "completionTime": "2026-11-30T12:01:00Z", "exitCode": 0, "reason": "Succeeded",
             "imageDigest": "sha256:" + "b" * 64, "findings": {"HIGH": 1},
             "artifacts": [{"name": "artifacts.tar.gz", "kind": "archive", "size": 3,
                            "digest": "sha256:" + "c" * 64,
                            "expiresAt": "2026-12-30T12:01:00Z"}],
             "tests": {"total": 2, "passed": 1, "failed": 1, "errors": 0, "skipped": 0,
                       "failedTests": ["a.b"], "unreadable": []}},
            {"name": "prod", "stage": "deploy", "phase": "Manual", "reason": "WaitingForApproval",
             "environment": "prod", "resourceGroup": "prod", "artifacts": []},
        ],
        "observedGeneration": 1,
        "evaluation": evaluation.to_dict(),
        "deployments": [
            {"job": "prod", "environment": "prod", "namespace": "app", "sha": "a" * 40,
             "version": "v1", "result": "Succeeded", "images": ["reg/app@sha256:" + "b" * 64],
             "objects": 3, "pruned": 0, "message": "ok", "finishedAt": "2026-11-30T12:02:00Z"},
        ],
        "pipelineSpec": to_dict(pipeline),
        "variables": {"X": "1"},
    }  # fmt: skip
    assert dump_run_status(parse_run_status(stored)) == stored
    assert dump_run_status(parse_run_status(json.loads(json.dumps(stored)))) == stored
