"""Decisions across the runs of one pipeline, from the watch's view and the phases this operator
wrote that the view does not show yet: which may start (concurrency), whether auto-cancel makes
a run redundant, and which runs go once one ends (history)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor.api import PipelineRun
from conveyor.api.pipeline import PipelineSpec
from conveyor.engine import RunSummary, may_start, redundant, runs_allowed_to_start, runs_to_delete
from conveyor.kube.client import Kube
from conveyor.reconcile.statuswrites import StatusWrites
from conveyor.reconcile.views import Key, Views, summaries
from conveyor.reconcile.workqueue import WorkQueue

log = logging.getLogger("conveyor.runs")


class PipelineRuns:
    def __init__(
        self,
        kube: Kube,
        io: Callable[..., Awaitable[Any]],
        queue: WorkQueue[Key],
        writes: StatusWrites,
    ) -> None:
        self.kube, self.io, self.queue, self.writes = kube, io, queue, writes
        self.views: Views | None = None
        self._pruned: set[Key] = set()  # runs we asked to delete (history)

    def bind(self, views: Views) -> None:
        self.views = views

    def forget(self, key: Key) -> None:
        self._pruned.discard(key)

    def of(self, namespace: str, pipeline_name: str) -> list[RunSummary]:
        """The pipeline's runs, with the phases this operator wrote even where the watch has
        not brought them back yet (a decision on stale phases could wait forever)."""
        assert self.views is not None
        out = []
        for summary in summaries(self.views.runs_by_pipeline.get((namespace, pipeline_name), ())):
            if self.writes.pending((namespace, summary.name)):
                phase = self.writes.phase((namespace, summary.name))
                summary = RunSummary(
                    summary.name, summary.creation_timestamp, phase, summary.labels
                )
            out.append(summary)
        return out

    def may_start(self, namespace: str, run: PipelineRun, pipeline: PipelineSpec) -> bool:
        if pipeline.concurrency is None or run.pipeline_name is None:
            return True
        return may_start(run.name, self.of(namespace, run.pipeline_name), pipeline.concurrency)

    def redundant(self, namespace: str, run: PipelineRun, pipeline: PipelineSpec) -> str | None:
        """Why a newer run of the same ref makes this one redundant (auto-cancel), or None."""
        if pipeline.auto_cancel != "conservative" or run.pipeline_name is None:
            return None
        runs = self.of(namespace, run.pipeline_name)
        this = next((s for s in runs if s.name == run.name), None)
        if this is None:
            return None
        interruptible = {j.name for j in pipeline.jobs if j.interruptible}
        return redundant(this, runs, run.status.jobs, interruptible)

    async def after_finish(self, namespace: str, run: PipelineRun, pipeline: PipelineSpec) -> None:
        """A run has ended: the next waiting runs may start, and old runs beyond history go."""
        if run.pipeline_name is None:
            return
        runs = self.of(namespace, run.pipeline_name)
        for waiting in runs_allowed_to_start(runs, pipeline.concurrency):
            self.queue.add((namespace, waiting))
        keep = pipeline.history_limit
        for old in runs_to_delete(runs, keep):
            if (namespace, old) in self._pruned:  # several runs ending at once agree on it
                continue
            self._pruned.add((namespace, old))
            log.info("deleting %s/%s: beyond the history limit of %d", namespace, old, keep)
            await self.io(self.kube.delete_run, namespace, old)
