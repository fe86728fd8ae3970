"""Killing the operator at any instant loses nothing and duplicates nothing."""

from __future__ import annotations

from collections import Counter

from tests.e2e.conveyor import (
    OPERATOR_USER,
    Conveyor,
    Operator,
    audit_entries,
    job,
    job_status,
    lasts,
    phase,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.support import wait_until

RUNS = 20
JOBS_PER_RUN = 3


def test_twenty_runs_finish_once_each_through_three_sigkills(
    conveyor: Conveyor, operator: Operator
) -> None:
    conveyor.create(
        pipeline(
            "chain",
            [
                job("a", "build", **lasts("2s")),
                job("b", "test", **lasts("2s")),
                job("c", "deploy", **lasts("2s")),
            ],
            historyLimit=RUNS,  # keep every run, and so its Jobs, for the checks below
        )
    )
    names = [f"chain-{i:02d}" for i in range(RUNS)]
    for name in names:
        conveyor.create(run(name, "chain"))
    # Kill mid-way, at three points of progress (Jobs created so far out of 60).
    for threshold in (8, 28, 48):
        wait_until(
            lambda t=threshold: len(conveyor.jobs()) >= t,
            timeout=120,
            what=f"{threshold} Jobs created",
        )
        operator.kill()
        operator.start()

    done = [conveyor.wait_finished(name, timeout=180) for name in names]
    assert [phase(r) for r in done] == ["Succeeded"] * RUNS
    for r in done:
        assert [j["attempt"] for j in r["status"]["jobs"]] == [1] * JOBS_PER_RUN

    jobs = conveyor.jobs()
    per_job = Counter(
        (j.metadata.labels["conveyor.dev/pipelinerun"], j.metadata.annotations["conveyor.dev/job"])
        for j in jobs
    )
    assert len(per_job) == RUNS * JOBS_PER_RUN and set(per_job.values()) == {1}
    assert {j.metadata.annotations["conveyor.dev/attempt"] for j in jobs} == {"1"}
    # The API server's own record: no Job was created twice. Each create that succeeded
    # answered 201, or, under load, 504 (stored, but the response timed out); retries after a
    # kill get 409 Conflict, which is how "already exists" shows up, never a second Job. A
    # request cut off by the kill before its body was read is recorded without a name; it can
    # have created nothing.
    creates = [
        (e["objectRef"].get("name"), (e.get("responseStatus") or {}).get("code"))
        for e in audit_entries(
            lambda e: (
                e["verb"] == "create"
                and e["user"].get("username") == OPERATOR_USER
                and (e.get("objectRef") or {}).get("resource") == "jobs"
                and (e.get("objectRef") or {}).get("namespace") == conveyor.ns
            )
        )
    ]
    unread = [code for name, code in creates if name is None]
    assert 201 not in unread, unread
    attempted = {name for name, _ in creates if name is not None}
    succeeded = Counter(name for name, code in creates if code == 201)
    assert attempted == {j.metadata.name for j in jobs}
    assert all(count == 1 for count in succeeded.values()), succeeded.most_common(3)


def test_an_environment_stays_locked_through_a_sigkill(
    conveyor: Conveyor, operator: Operator
) -> None:
    deploy = job("deploy", environment={"name": "staging"}, **lasts("12s"))
    conveyor.create(pipeline("locked", [deploy]))
    conveyor.create(run("l1", "locked"))
    conveyor.wait_run("l1", lambda r: job_phase(r, "deploy") == "Running", timeout=60)
    conveyor.create(run("l2", "locked"))
    conveyor.wait_run(
        "l2", lambda r: succeeded_condition(r).get("reason") == "WaitingForEnvironment"
    )
    # A restarted operator knows the lock from the runs' status alone.
    operator.kill()
    operator.start()
    first = conveyor.wait_finished("l1", timeout=90)
    second = conveyor.wait_finished("l2", timeout=90)
    assert phase(first) == phase(second) == "Succeeded"
    assert (
        job_status(second, "deploy")["startTime"] >= job_status(first, "deploy")["completionTime"]
    )


def job_phase(run_obj: dict, name: str) -> str | None:
    jobs = (run_obj.get("status") or {}).get("jobs") or []
    return next((j["phase"] for j in jobs if j["name"] == name), None)
