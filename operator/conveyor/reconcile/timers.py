"""A run's wake-ups: Kubernetes ends a job at its timeout (activeDeadlineSeconds), but a run's
own timeout and a delayed job's start are for the operator to notice. One timer per run and
deadline, not one per pass."""

from __future__ import annotations

import datetime

from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import PipelineRunStatus
from conveyor.reconcile.views import Key
from conveyor.reconcile.workqueue import WorkQueue


class RunTimers:
    def __init__(self, queue: WorkQueue[Key]) -> None:
        self.queue = queue
        self._deadlines: dict[Key, datetime.datetime] = {}  # runs' timeouts
        self._wakeups: dict[Key, datetime.datetime] = {}  # delayed jobs' starts

    def forget(self, key: Key) -> None:
        self._deadlines.pop(key, None)
        self._wakeups.pop(key, None)

    def schedule(
        self,
        key: Key,
        pipeline: PipelineSpec,
        status: PipelineRunStatus,
        wake_at: datetime.datetime | None,
        now: datetime.datetime,
    ) -> None:
        """Queues the run again at its timeout and when its next delayed job is due."""
        limit = pipeline.timeout_seconds()
        start = status.start_time
        if limit is not None and start is not None and not status.finished:
            # From the start as stored (whole seconds), so each pass finds the same deadline.
            deadline = start.replace(microsecond=0) + datetime.timedelta(seconds=limit)
            if self._deadlines.get(key) != deadline:
                self._deadlines[key] = deadline
                self.queue.add_after(key, (deadline - now).total_seconds() + 0.5)
        if wake_at is not None and self._wakeups.get(key) != wake_at:
            self._wakeups[key] = wake_at
            self.queue.add_after(key, (wake_at - now).total_seconds() + 0.1)
