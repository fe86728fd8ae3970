"""`conveyor logs`: choosing the attempts, the pod and the containers whose logs are shown."""

from __future__ import annotations

import pytest

from conveyor.api.pipeline import parse_pipeline_spec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.cli.logs import (
    Attempt,
    LogsError,
    attempts,
    containers,
    deploy_summary,
    native_deploys,
    newest_pod,
    ready_to_follow,
    started,
)
from conveyor.cli.objects import Unreadable, parse
from conveyor.engine.names import job_name

SPEC = {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}}
RUN = parse(
    PipelineRun,
    {
        "metadata": {"name": "app-1"},
        "spec": SPEC,
        "status": {
            "jobs": [
                {
                    "name": "build",
                    "stage": "build",
                    "phase": "Succeeded",
                    "attempt": 1,
                    "jobName": "app-1-build-1-x",
                },
                {
                    "name": "unit",
                    "stage": "test",
                    "phase": "Failed",
                    "attempt": 3,
                    "jobName": "app-1-unit-3-y",
                },
                {"name": "release", "stage": "deploy", "phase": "Manual"},
            ]
        },
    },
)


def test_every_job_of_the_run_in_order_by_default() -> None:
    assert attempts(RUN, None, None) == [
        Attempt("build", 1, "Succeeded", "app-1-build-1-x"),
        Attempt("unit", 3, "Failed", "app-1-unit-3-y"),
        Attempt("release", 1, "Manual", None),
    ]


def test_an_earlier_attempt_is_found_by_its_deterministic_job_name() -> None:
    assert attempts(RUN, "unit", 1) == [Attempt("unit", 1, "Failed", job_name("app-1", "unit", 1))]
    assert attempts(RUN, "unit", 3) == [Attempt("unit", 3, "Failed", "app-1-unit-3-y")]


@pytest.mark.parametrize(
    ("job", "attempt", "words"),
    [
        ("lint", None, "no job 'lint' (its jobs: build, unit, release)"),
        ("unit", 4, "has had 3 attempt(s), not 4"),
        ("unit", 0, "has had 3 attempt(s), not 0"),
        (None, 2, "--attempt needs a JOB"),
    ],
)
def test_what_cannot_be_shown_is_named(job: str | None, attempt: int | None, words: str) -> None:
    with pytest.raises(LogsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        attempts(RUN, job, attempt)


POD = {
    "metadata": {"name": "p"},
    "spec": {
        "initContainers": [{"name": "checkout"}, {"name": "docker"}],
        "containers": [{"name": "script"}],
    },
}


def test_checkout_then_script_unless_a_container_is_named() -> None:
    assert containers(POD, None) == ["checkout", "script"]
    assert containers(POD, "docker") == ["docker"]
    with pytest.raises(LogsError, match="no container 'db' \\(it has: checkout, docker, script\\)"):
        containers(POD, "db")


def test_the_newest_pod_counts() -> None:
    old = {"metadata": {"name": "a", "creationTimestamp": "2026-11-26T10:00:00Z"}}
    new = {"metadata": {"name": "b", "creationTimestamp": "2026-11-26T10:05:00Z"}}
    assert newest_pod([new, old]) is new
    assert newest_pod([]) is None


def _run(status: dict | None = None, **spec: object) -> PipelineRun:
    body = {"metadata": {"name": "r"}, "spec": {**SPEC, **spec}, "status": status or {}}
    return parse(PipelineRun, body)


def test_a_native_deploy_shows_its_record() -> None:
    run = _run(
        {
            "deployments": [
                {
                    "job": "deploy-prod",
                    "environment": "prod",
                    "namespace": "go-app",
                    "sha": "a" * 40,
                    "version": "master_x",
                    "result": "Succeeded",
                    "images": ["reg/app:master_x"],
                    "objects": 5,
                    "pruned": 1,
                }
            ]
        }
    )
    summary = deploy_summary(run, "deploy-prod")
    assert summary is not None
    assert "native deploy to environment prod (namespace go-app): Succeeded" in summary
    assert "images: reg/app:master_x" in summary and "pruned: 1" in summary
    assert deploy_summary(run, "build") is None


def test_a_container_has_started_once_running_or_ended() -> None:
    def pod(phase: str, **states: dict) -> dict:
        return {
            "status": {
                "phase": phase,
                "initContainerStatuses": [{"name": "checkout", "state": states.get("checkout")}],
                "containerStatuses": [{"name": "script", "state": states.get("script")}],
            }
        }

    assert (
        started(pod("Pending", checkout={"running": {}}, script={"waiting": {}}), "script") is False
    )
    assert started(pod("Running", checkout={"terminated": {}}, script={"running": {}}), "script")
    assert (
        started(pod("Failed", checkout={"terminated": {}}, script={"waiting": {}}), "script")
        is None
    )


def test_follow_waits_until_the_job_has_a_job_or_never_will() -> None:
    def run(run_phase: str, **job: object) -> PipelineRun:
        return _run({"phase": run_phase, "jobs": [{"name": "unit", "stage": "test", **job}]})

    assert not ready_to_follow(_run(), "unit")  # no status yet
    assert not ready_to_follow(run("Running", phase="Pending"), "unit")
    assert not ready_to_follow(run("Running", phase="Manual"), "unit")
    assert ready_to_follow(run("Running", phase="Running", jobName="j"), "unit")
    assert ready_to_follow(run("Running", phase="Skipped"), "unit")
    assert ready_to_follow(run("Failed", phase="Pending"), "unit")


def test_native_deploys_come_from_the_inline_spec_or_the_pipeline() -> None:
    jobs = [
        {"name": "build", "script": ["make"]},
        {"name": "ship", "deploy": {"templates": "deploy/"}, "environment": {"name": "prod"}},
    ]
    inline = _run(pipelineRef=None, pipelineSpec={"jobs": jobs})
    assert native_deploys(inline, None) == {"ship"}
    assert native_deploys(_run(), parse_pipeline_spec({"jobs": jobs})) == {"ship"}
    assert native_deploys(_run(), None) == set()


def test_a_body_its_model_refuses_names_the_object_and_the_field() -> None:
    body = {
        "metadata": {"name": "r", "namespace": "team"},
        "spec": SPEC,
        "status": {"jobs": [{"name": "unit", "phase": "Running"}]},  # no stage
    }
    with pytest.raises(Unreadable) as e:
        parse(PipelineRun, body)
    assert str(e.value) == (
        "pipelinerun team/r cannot be read: status.jobs[0].stage: required field is missing"
    )
    assert e.value.code == 1
    with pytest.raises(Unreadable, match="pipelinerun r cannot be read: spec: required field"):
        parse(PipelineRun, {"metadata": {"name": "r"}})
