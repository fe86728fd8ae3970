"""Which Job watch events are worth a reconcile pass: only those that change what the planner
reads of the Job (its pod being scheduled, ready or terminating changes nothing)."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.engine.model import ObservedJob
from conveyor.kube.jobspec import JobOptions
from conveyor.kube.observe import observe_job
from conveyor.reconcile.runs import RunController

KEY = ("ns", "r")


def job(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r-a-1",
            "creationTimestamp": "2026-11-26T10:00:00Z",
            "annotations": {"conveyor.dev/job": "a", "conveyor.dev/attempt": "1"},
        },
        "status": status,
    }


async def passes(controller: RunController, updates: list[ObservedJob | None]) -> int:
    queued = 0
    for seen in updates:
        controller.job_changed(KEY, "r-a-1", seen)
        while len(controller.queue):
            key = await controller.queue.get()
            controller.queue.done(key)
            queued += 1
    return queued


def test_only_job_updates_the_planner_sees_queue_a_pass():
    controller = RunController(kube=None, options=JobOptions(), sources=None)  # type: ignore[arg-type]
    created = observe_job(job())
    running = observe_job(job(startTime="2026-11-26T10:00:01Z", active=1))
    ready = observe_job(job(startTime="2026-11-26T10:00:01Z", active=1, ready=1))
    complete = observe_job(
        job(
            completionTime="2026-11-26T10:00:09Z",
            conditions=[{"type": "Complete", "status": "True"}],
        )
    )
    assert created == running == ready  # what the planner reads did not change
    updates = [created, running, ready, complete, complete, None]
    # Created, completed, deleted: three passes for six events.
    assert asyncio.run(passes(controller, updates)) == 3
    assert controller._job_views == {}  # nothing kept of a deleted Job
