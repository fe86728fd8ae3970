"""The operator's metrics: what a status write ends, and what a scrape shows."""

from __future__ import annotations

from conveyor.metrics import OperatorMetrics
from conveyor.metrics.ends import Ended, ended


def job(name: str, phase: str, attempt: int = 1, **extra: object) -> dict:
    return {"name": name, "stage": "s", "phase": phase, "attempt": attempt, **extra}


T0, T1 = "2026-11-26T10:00:00Z", "2026-11-26T10:01:30Z"


def test_a_job_that_ends_is_counted_with_its_duration_and_environment() -> None:
    old = {"phase": "Running", "jobs": [job("build", "Running", startTime=T0)]}
    new = {
        "phase": "Running",
        "jobs": [job("build", "Succeeded", startTime=T0, completionTime=T1, environment="prod")],
    }
    assert ended(old, new) == [Ended("Succeeded", 90.0, "build", "prod")]


def test_nothing_ends_twice() -> None:
    status = {
        "phase": "Failed",
        "startTime": T0,
        "completionTime": T1,
        "jobs": [job("build", "Failed", startTime=T0, completionTime=T1)],
    }
    assert ended(status, status) == []


def test_a_retry_is_a_new_attempt_that_ends_again() -> None:
    old = {"phase": "Running", "jobs": [job("build", "Failed", 1)]}
    new = {"phase": "Running", "jobs": [job("build", "Failed", 2)]}
    assert ended(old, new) == [Ended("Failed", None, "build")]


def test_an_attempt_retried_before_status_showed_it_failed_counts_as_failed() -> None:
    old = {"phase": "Running", "jobs": [job("unit", "Running", 1)]}
    assert ended(old, {"phase": "Running", "jobs": [job("unit", "Running", 2)]}) == [
        Ended("Failed", None, "unit")
    ]
    assert ended(old, {"phase": "Running", "jobs": [job("unit", "Succeeded", 3)]}) == [
        Ended("Failed", None, "unit"),
        Ended("Failed", None, "unit"),
        Ended("Succeeded", None, "unit"),
    ]


def test_a_run_ends_after_its_jobs_and_one_never_started_has_no_duration() -> None:
    new = {"phase": "Cancelled", "jobs": [job("deploy", "Cancelled")]}
    assert ended({"phase": "Pending"}, new) == [
        Ended("Cancelled", None, "deploy"),
        Ended("Cancelled", None),
    ]


def test_the_first_status_of_a_run_can_end_it() -> None:
    assert ended({}, {"phase": "Skipped"}) == [Ended("Skipped", None)]


def sample(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_status_writes_feed_counters_histograms_and_deployments() -> None:
    m = OperatorMetrics("9.9.9")
    old = {"phase": "Running", "startTime": T0, "jobs": [job("deploy", "Running")]}
    new = {
        "phase": "Succeeded",
        "startTime": T0,
        "completionTime": T1,
        "jobs": [job("deploy", "Succeeded", startTime=T0, completionTime=T1, environment="test")],
    }
    m.status_written("team", "app", old, new)
    m.status_written("team", "app", new, new)  # written again: nothing new ended
    run = {"namespace": "team", "pipeline": "app", "phase": "Succeeded"}
    assert sample(m, "conveyor_pipelineruns_finished_total", **run) == 1
    assert sample(m, "conveyor_pipelinerun_duration_seconds_sum", **run) == 90
    assert sample(m, "conveyor_pipelinerun_duration_seconds_bucket", le="60.0", **run) == 0
    assert sample(m, "conveyor_pipelinerun_duration_seconds_bucket", le="120.0", **run) == 1
    assert sample(m, "conveyor_jobs_finished_total", job="deploy", **run) == 1
    deploys = {"namespace": "team", "environment": "test", "phase": "Succeeded"}
    assert sample(m, "conveyor_deployments_total", **deploys) == 1
    assert sample(m, "conveyor_build_info", version="9.9.9") == 1
    assert sample(m, "conveyor_reconcile_errors_total", cause="api") == 0


def test_a_scrape_counts_runs_by_phase_and_pending_approvals_from_the_view() -> None:
    m = OperatorMetrics("0")
    runs = {
        ("a", "r1"): [{"status": {"phase": "Running"}}],
        ("a", "r2"): [{"status": {"phase": "Running"}}],
        ("a", "r3"): [{}],  # not reconciled yet
        ("b", "r1"): [{"status": {"phase": "Succeeded"}}],
    }
    approvals = {
        ("a", "r1"): [
            {"spec": {"environment": "prod"}},
            {"spec": {"environment": "prod"}, "status": {"decision": "Pending"}},
        ],
        ("a", "r2"): [{"spec": {"environment": "prod"}, "status": {"decision": "Approved"}}],
    }
    m.watch(runs, approvals, lambda: 7)
    assert sample(m, "conveyor_pipelineruns", namespace="a", phase="Running") == 2
    assert sample(m, "conveyor_pipelineruns", namespace="a", phase="Pending") == 1
    assert sample(m, "conveyor_pipelineruns", namespace="b", phase="Succeeded") == 1
    assert sample(m, "conveyor_approvals_pending", namespace="a", environment="prod") == 2
    assert sample(m, "conveyor_workqueue_depth") == 7
    text = m.exposition().decode()
    assert 'conveyor_approvals_pending{environment="prod",namespace="a"} 2.0' in text
