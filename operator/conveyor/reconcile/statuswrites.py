"""Writing a run's status, and remembering the writes the watch has not brought back yet.

A pass that runs before the watch catches up with our last write would plan from stale status
and write the same status again: the body a pass plans from is our newest write while the
watch's view is older than it. The status is serialised here only (`dump_run_status`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from conveyor.api.pipelinerun import PipelineRun, PipelineRunStatus, dump_run_status
from conveyor.kube.client import Kube
from conveyor.kube.patch import merge_patch
from conveyor.metrics import OperatorMetrics
from conveyor.reconcile.views import Key


class StatusWrites:
    def __init__(
        self, kube: Kube, io: Callable[..., Awaitable[Any]], metrics: OperatorMetrics
    ) -> None:
        self.kube, self.io, self.metrics = kube, io, metrics
        # key -> (resourceVersions older than our write, the run's body after it)
        self._written: dict[Key, tuple[frozenset[str], dict[str, Any]]] = {}

    def current(self, key: Key, body: dict[str, Any]) -> dict[str, Any]:
        """The run as a pass should see it: the watch's `body`, or our newer write."""
        written = self._written.get(key)
        if written is not None:
            older, newer = written
            if body["metadata"].get("resourceVersion") in older:
                return newer
            self._written.pop(key, None)
        return body

    def pending(self, key: Key) -> bool:
        """Whether the watch has yet to bring back a write of ours."""
        return key in self._written

    def phase(self, key: Key) -> str | None:
        """The phase of our write the watch has not brought back (None: none pending)."""
        written = self._written.get(key)
        return None if written is None else (written[1].get("status") or {}).get("phase")

    def forget(self, key: Key) -> None:
        self._written.pop(key, None)

    async def write(
        self,
        key: Key,
        body: dict[str, Any],
        run: PipelineRun,
        status: PipelineRunStatus,
        only: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """Writes `status` (or only its fields named in `only`) over what `body` has; returns
        the run's body after the write."""
        new = dump_run_status(status)
        old = body.get("status") or {}
        if only is not None:
            new = {**old, **{k: new[k] for k in only if k in new}}
        patch = merge_patch(old, new)
        if not patch:
            return body
        namespace, name = key
        # Written only over the run this pass read: a view that lags may still show a run
        # deleted and made again under its name, or one changed since (409, and the pass is
        # taken again on a fresher view).
        version = body["metadata"].get("resourceVersion")
        updated: dict[str, Any] = await self.io(
            self.kube.patch_run_status, namespace, name, patch, version
        )
        older, _ = self._written.get(key, (frozenset(), body))
        self._written[key] = (older | {body["metadata"].get("resourceVersion", "")}, updated)
        self.metrics.status_written(namespace, run.pipeline_name or "", old, new)
        return updated
