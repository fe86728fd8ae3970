"""Answering ArtifactDownloads (store.download decides) and deleting them after their TTL.

The run is looked up in the request's own namespace only: first in the watch's view, then, if
the view does not have it (just created, or not yet listed), from the API server. The status
holds a presigned URL, a bearer credential: it is written to the status subresource and never
logged, nor put in an event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kubernetes.client.rest import ApiException

from conveyor.api import ModelError, PipelineRun
from conveyor.api import artifactdownload as ad
from conveyor.api.artifactdownload import ArtifactDownload
from conveyor.kube.client import Kube
from conveyor.reconcile.artifacts import ArtifactService
from conveyor.store import download
from conveyor.store.client import StoreClient, StoreError
from conveyor.store.config import NOT_CONFIGURED
from conveyor.store.plan import Presign

log = logging.getLogger("conveyor.downloads")

Lookup = Mapping[Any, Iterable[dict[str, Any]]]
IO = Callable[..., Awaitable[Any]]
# A request without an answer this long after its creation is answered by the sweep.
UNANSWERED_GRACE = datetime.timedelta(seconds=10)
NO_STORE = NOT_CONFIGURED.replace("this job uses artifacts or caches but ", "")


class Downloads:
    def __init__(
        self,
        kube: Kube,
        artifacts: ArtifactService,
        io: IO,
        clock: Callable[[], datetime.datetime],
        ttl: datetime.timedelta,
    ) -> None:
        self.kube = kube
        self.artifacts = artifacts
        self.io = io
        self.clock = clock
        self.ttl = ttl
        self._public: StoreClient | None = None  # presigns for --artifact-download-endpoint

    def _presigner(self) -> Presign:
        """Presigns for the store as users reach it (--artifact-download-endpoint, else the
        operator's own endpoint), with the store's credentials."""
        client = self.artifacts.client()
        config = client.config
        if not config.download_endpoint or config.download_endpoint == config.endpoint:
            return client.presign
        if self._public is None or self._public.credentials != client.credentials:
            public = dataclasses.replace(config, endpoint=config.download_endpoint)
            self._public = StoreClient(public, client.credentials)
        return self._public.presign

    def _run(self, runs: Lookup, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The run `name` of `namespace`, from the view, else the API server (blocking)."""
        for body in runs.get((namespace, name), ()):
            return body
        try:
            return self.kube.get_run(namespace, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _status(
        self, namespace: str, spec: ad.ArtifactDownloadSpec, runs: Lookup
    ) -> dict[str, Any]:
        body = self._run(runs, namespace, spec.run)
        run = PipelineRun.from_dict(body) if body is not None else None
        now = self.clock()
        decision = download.decide(namespace, spec, run, now)
        if isinstance(decision, download.Refusal):
            return download.refused(decision.reason, decision.message)
        if self.artifacts.config is None:
            return download.refused(ad.STORE_UNAVAILABLE, NO_STORE)
        try:
            presign = self._presigner()
        except (StoreError, ApiException, OSError) as e:
            reason = f"{e.status} {e.reason}" if isinstance(e, ApiException) else str(e)
            return download.refused(
                ad.STORE_UNAVAILABLE, f"the artifact store cannot be used: {reason}"
            )
        seconds = int(min(download.URL_SECONDS, max(1, self.ttl.total_seconds())))
        return download.answer(decision, presign, now, seconds)

    async def answer(
        self, namespace: str, name: str, body: Mapping[str, Any], runs: Lookup
    ) -> None:
        """Writes the answer of a request that has none yet. One that cannot be read (or whose
        run cannot) is logged and left: it never stops the sweep answering the others."""
        try:
            request = ArtifactDownload.from_dict(body)
            if request.status.phase or request.metadata.deletion_timestamp or not request.spec:
                return
            status = await self.io(self._status, namespace, request.spec, runs)
        except ModelError as e:
            log.warning("artifactdownload %s/%s not answered: %s", namespace, name, e)
            return
        try:
            await self.io(self.kube.patch_download_status, namespace, name, status)
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nobody to answer
                raise
        # The URL stays out of the log: what was answered, and why not.
        log.info(
            "artifactdownload %s/%s: %s%s",
            namespace,
            name,
            status["phase"],
            f" ({status['reason']})" if status.get("reason") else "",
        )

    async def sweep_once(self, bodies: list[Mapping[str, Any]], runs: Lookup) -> int:
        """Deletes the requests past their TTL, and answers those an event missed (the status
        write of a pass that failed): events are not retried, this is."""
        now = self.clock()
        gone = download.expired_requests(bodies, now, self.ttl)
        for namespace, name in gone:
            await self.io(self.kube.delete_download, namespace, name)
        if gone:
            log.info("deleted %d artifactdownload(s) past their TTL", len(gone))
        expired = set(gone)
        for body in download.unanswered(bodies, now, UNANSWERED_GRACE):
            meta = body["metadata"]
            if (meta["namespace"], meta["name"]) not in expired:
                await self.answer(meta["namespace"], meta["name"], body, runs)
        return len(gone)

    async def sweep(
        self, bodies: Callable[[], list[Mapping[str, Any]]], runs: Lookup, every: float
    ) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep_once(bodies(), runs)
            except Exception:
                log.exception("sweeping artifactdownloads failed; trying again later")
