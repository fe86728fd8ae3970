"""The operator's periodic sweeps over every run it sees: Approvals outlive their runs and go
after the retention period; the artifact store keeps no deleted run's objects and no expired
attempt's."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from conveyor.kube.client import Kube
from conveyor.kube.jobspec import JobOptions
from conveyor.reconcile.approvals import ApprovalGates
from conveyor.reconcile.artifacts import ArtifactService
from conveyor.reconcile.views import Views, run_uid
from conveyor.store.client import StoreError

log = logging.getLogger("conveyor.runs")

APPROVAL_SWEEP_SECONDS = 300.0
# What an API server or a store that is away raises: said in one line, as failed passes are.
UNAVAILABLE = (ApiException, OSError, urllib3.exceptions.HTTPError, StoreError)


class Sweeps:
    def __init__(
        self,
        kube: Kube,
        io: Callable[..., Awaitable[Any]],
        options: JobOptions,
        clock: Callable[[], datetime.datetime],
        artifacts: ArtifactService,
        approvals: ApprovalGates,
    ) -> None:
        self.kube, self.io, self.options, self.clock = kube, io, options, clock
        self.artifacts, self.approvals = artifacts, approvals
        self.views: Views | None = None

    def bind(self, views: Views) -> None:
        self.views = views

    async def run(self) -> None:
        await asyncio.gather(self._approvals(), self._artifacts())

    async def _artifacts(self) -> None:
        """The store keeps no run's artifacts past the run (deleted by hand or by the history
        limit) and no attempt's past its expiry (expire_in)."""
        if self.options.artifact_store is None:
            return
        while True:
            await asyncio.sleep(self.options.artifact_sweep_interval.total_seconds())
            try:
                await self.artifacts_once()
            except UNAVAILABLE as e:  # the API server or the store away: one line, no traceback
                log.warning(
                    "sweeping the artifact store failed (%s); trying again later", type(e).__name__
                )
            except Exception:
                log.exception("sweeping the artifact store failed; trying again later")

    def _run_exists(self, namespace: str, name: str, uid: str) -> bool:
        """Whether run `name` with this UID exists, asked of the API server (blocking)."""
        try:
            body = self.kube.get_run(namespace, name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return run_uid(body) == uid

    async def artifacts_once(self) -> int:
        assert self.views is not None
        bodies = [
            (ns, name, body)
            for (ns, name), values in list(self.views.runs.items())
            for body in values
        ]
        runs = [(ns, name, run_uid(b)) for ns, name, b in bodies]
        statuses = [
            (ns, name, uid, b.get("status") or {})
            for (ns, name, uid), (_, _, b) in zip(runs, bodies, strict=True)
        ]
        gone = await self.io(self.artifacts.sweep, runs, statuses, self.clock(), self._run_exists)
        if gone:
            log.info("artifact store: deleted %d object(s) of deleted runs or expired", gone)
        return int(gone)

    async def _approvals(self) -> None:
        """Approvals outlive their runs (they are the record of who approved what): those of
        deleted runs are closed, and deleted once past the retention period."""
        while True:
            try:
                await self.approvals_once()
            except UNAVAILABLE as e:  # the API server away: one line, no traceback
                log.warning("sweeping approvals failed (%s); trying again later", type(e).__name__)
            except Exception:
                log.exception("sweeping approvals failed; trying again later")
            await asyncio.sleep(APPROVAL_SWEEP_SECONDS)

    async def approvals_once(self) -> None:
        assert self.views is not None
        runs = {
            (ns, name, run_uid(body))
            for (ns, name), bodies in list(self.views.runs.items())
            for body in bodies
        }
        bodies = [b for values in list(self.views.approvals.values()) for b in values]
        retention = self.options.approval_retention
        await self.approvals.sweep_once(runs, bodies, self.clock(), retention)
