"""Every Kopf handler of the operator. Each one only parses what Kopf hands it and calls the
reconcile layer: no decisions are made here. Event handlers are async: Kopf runs sync handlers in
threads, and these touch the event loop's work queue."""

from __future__ import annotations

import asyncio
import datetime
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web

from conveyor.api.meta import GROUP, VERSION
from conveyor.engine.deploy_order import claim_entries
from conveyor.kube.client import (
    APPROVALS,
    ARTIFACTDOWNLOADS,
    ENVIRONMENTS,
    PIPELINERUNS,
    PIPELINES,
    Kube,
)
from conveyor.kube.jobspec import LABEL_MANAGED_BY, LABEL_RUN, MANAGED_BY, JobOptions
from conveyor.kube.observe import compact_job, observe_job
from conveyor.kube.patch import merge_patch
from conveyor.metrics import metrics_app
from conveyor.reconcile.downloads import Downloads
from conveyor.reconcile.pipelines import pipeline_status
from conveyor.reconcile.runs import RunController
from conveyor.reconcile.sources import Sources
from conveyor.reconcile.triggers import TriggerManager
from conveyor.reconcile.views import (
    Views,
    approval_run,
    pipeline_ref,
    run_locks,
    run_summary,
    utcnow,
)
from conveyor.triggers import webhook_app

log = logging.getLogger("conveyor.handlers")
OURS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
# How often ArtifactDownloads past their TTL are deleted (and any left unanswered answered).
DOWNLOAD_SWEEP_SECONDS = 30.0


@dataclass
class Runtime:
    """What `conveyor operator` hands the handlers: Kopf's operator-level `memo`
    (`kopf.run(memo=...)`). Resource handlers get a shallow copy of it, taken after the startup
    handlers ran, so the objects startup makes (controller, triggers, the task and server
    lists) are the same ones in every copy."""

    connection: kopf.ConnectionInfo | None = None
    kube: Kube | None = None
    options: JobOptions = field(default_factory=JobOptions)
    git_cache: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "conveyor-git")
    allow_local_repositories: bool = False
    webhook_address: tuple[str, int] | None = None  # (host, port) of the push webhook endpoint
    triggers: TriggerManager | None = None
    metrics_address: tuple[str, int] | None = None  # (host, port) of /metrics
    servers: list[web.AppRunner] = field(default_factory=list)
    workers: int = 16
    controller: RunController | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # ArtifactDownloads: deleted this long after their creation (--artifact-download-ttl).
    download_ttl: datetime.timedelta = datetime.timedelta(minutes=15)
    downloads: Downloads | None = None


@kopf.on.login()
def login(memo: Runtime, **_: Any) -> kopf.ConnectionInfo:
    if memo.connection is None:
        raise kopf.PermanentError("the operator was started without cluster credentials")
    return memo.connection


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Runtime, **_: Any) -> None:
    settings.peering.standalone = True  # one replica (Recreate); no peering objects to write
    settings.posting.enabled = False  # Conveyor posts its own events; Kopf's would be writes
    settings.scanning.disabled = True  # least privilege: no watch on CRDs or namespaces
    # Server-side selector: only Conveyor's Jobs reach the operator. Pods are not watched:
    # a failed Job's pods are read when it fails (they alone say how the script ended).
    settings.watching.label_selectors["batch", "jobs"] = OURS
    assert memo.kube is not None
    sources = Sources(memo.kube, memo.git_cache, local=memo.allow_local_repositories)
    controller = RunController(memo.kube, memo.options, sources)
    memo.controller = controller
    memo.downloads = Downloads(
        memo.kube, controller.artifacts, controller.io, utcnow, memo.download_ttl
    )
    memo.triggers = TriggerManager(
        memo.kube,
        sources,
        controller.pipeline_body,
        controller.io,
        utcnow,
        memo.options.credentials_namespace,
    )
    if memo.webhook_address is not None:
        app = webhook_app(memo.triggers.webhook_lookup, memo.triggers.create_run)
        await _serve(memo, app, memo.webhook_address)
        host, port = memo.webhook_address
        log.info("push webhooks served at http://%s:%d/hooks/<namespace>/<pipeline>", host, port)
    if memo.metrics_address is not None:
        await _serve(memo, metrics_app(controller.metrics), memo.metrics_address)
        host, port = memo.metrics_address
        log.info("Prometheus metrics served at http://%s:%d/metrics", host, port)


async def _serve(memo: Runtime, app: web.Application, address: tuple[str, int]) -> None:
    # On the event loop's thread: the metrics read Kopf's indices, which only it changes.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    memo.servers.append(runner)
    await web.TCPSite(runner, *address).start()


@kopf.on.cleanup()
async def stop_workers(memo: Runtime, **_: Any) -> None:
    for task in memo.tasks:
        task.cancel()
    if memo.triggers is not None:
        memo.triggers.stop()
    for runner in memo.servers:
        await runner.cleanup()


def _controller(memo: Runtime, **indices: Any) -> RunController:
    """The controller, bound to Kopf's indices on first use (handlers run only once every index
    has its initial listing, so no pass ever plans from a partial view)."""
    controller = memo.controller
    assert controller is not None
    if controller.views is None:
        controller.bind(
            Views(
                runs=indices["run_bodies"],
                runs_by_pipeline=indices["runs_by_pipeline"],
                pipelines=indices["pipeline_bodies"],
                jobs=indices["jobs_by_run"],
                environments=indices["environment_bodies"],
                approvals=indices["approvals_by_run"],
                deploy_claims=indices["deploy_claims"],
            )
        )
        memo.tasks.append(asyncio.create_task(controller.work(memo.workers)))
        memo.tasks.append(asyncio.create_task(_sweep_downloads(memo, indices["download_bodies"])))
    return controller


async def _sweep_downloads(memo: Runtime, bodies: kopf.Index[Any, Any]) -> None:
    downloads = memo.downloads
    assert downloads is not None and memo.controller is not None
    runs = memo.controller.views.runs if memo.controller.views else {}
    interval = min(DOWNLOAD_SWEEP_SECONDS, memo.download_ttl.total_seconds())
    await downloads.sweep(lambda: [b for v in list(bodies.values()) for b in v], runs, interval)


# -- indices: the in-memory view of the cluster
def _stored(body: kopf.Body) -> dict[str, Any]:
    """A body as kept in memory: managedFields are often its largest part, and unused."""
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return {**body, "metadata": metadata}


@kopf.index(GROUP, VERSION, PIPELINERUNS)
def run_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _stored(body)}


@kopf.index(GROUP, VERSION, PIPELINERUNS)
def runs_by_pipeline(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    pipeline = pipeline_ref(body)
    return {(namespace, pipeline): run_summary(body)} if pipeline else {}


@kopf.index(GROUP, VERSION, PIPELINERUNS)
def deploy_claims(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, lock): entries for lock, entries in claim_entries(body).items()}


@kopf.index(GROUP, VERSION, PIPELINES)
def pipeline_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _stored(body)}


@kopf.index("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
def jobs_by_run(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, labels[LABEL_RUN]): compact_job(body)}


@kopf.index(GROUP, VERSION, ENVIRONMENTS)
def environment_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _stored(body)}


# Approvals are found by the run their spec names (only the operator writes it), never by a
# label: labels are metadata, and a relabelled Approval must not gate another run.
@kopf.index(GROUP, VERSION, APPROVALS)
def approvals_by_run(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    run = approval_run(body)
    return {(namespace, run): _stored(body)} if run else {}


# ArtifactDownloads, for the sweep (TTL, and answering any request an event missed).
@kopf.index(GROUP, VERSION, ARTIFACTDOWNLOADS)
def download_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    # Only what the sweep reads: never the URL of an answer.
    meta = body["metadata"]
    stored = {"namespace": namespace, "name": name}
    stored["creationTimestamp"] = meta.get("creationTimestamp")
    stored["deletionTimestamp"] = meta.get("deletionTimestamp")
    phase = (body.get("status") or {}).get("phase")
    return {
        (namespace, name): {
            "metadata": stored,
            "spec": dict(body.get("spec") or {}),
            "status": {"phase": phase} if phase else {},
        }
    }


# -- events: each one queues the runs it concerns
@kopf.on.event(GROUP, VERSION, PIPELINERUNS)
async def run_event(namespace: str, name: str, body: kopf.Body, **kwargs: Any) -> None:
    controller = _controller(**kwargs)
    controller.run_changed((namespace, name))
    if not body.get("status"):
        controller.run_created(namespace, body)
    locks = run_locks(body)
    if locks:
        controller.deploys_changed(namespace, name, locks)


@kopf.on.event(GROUP, VERSION, PIPELINES)
async def pipeline_event(
    namespace: str, name: str, body: kopf.Body, type: str | None, **kwargs: Any
) -> None:
    controller = _controller(**kwargs)
    triggers = kwargs["memo"].triggers
    assert triggers is not None
    if type == "DELETED":
        triggers.pipeline_changed((namespace, name), None)
        return
    triggers.pipeline_changed((namespace, name), dict(body))
    controller.pipeline_changed(namespace, name)
    desired = pipeline_status(body, utcnow())
    # Only the keys this handler owns: status.triggers is the trigger manager's.
    current = {k: v for k, v in (body.get("status") or {}).items() if k in desired}
    patch = merge_patch(current, desired)
    if patch:
        await controller.io(controller.kube.patch_pipeline_status, namespace, name, patch)


@kopf.on.event(GROUP, VERSION, APPROVALS)
async def approval_event(namespace: str, body: kopf.Body, **kwargs: Any) -> None:
    run = approval_run(body)
    if run:
        _controller(**kwargs).run_changed((namespace, run))


@kopf.on.event(GROUP, VERSION, ARTIFACTDOWNLOADS)
async def download_event(
    namespace: str, name: str, body: kopf.Body, type: str | None, **kwargs: Any
) -> None:
    controller = _controller(**kwargs)
    downloads = kwargs["memo"].downloads
    if type == "DELETED" or downloads is None or controller.views is None:
        return
    await downloads.answer(namespace, name, body, controller.views.runs)


@kopf.on.event(GROUP, VERSION, ENVIRONMENTS)
async def environment_event(namespace: str, **kwargs: Any) -> None:
    # A protection change can gate or release waiting runs of this namespace.
    _controller(**kwargs).namespace_changed(namespace)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
async def job_event(
    namespace: str,
    name: str,
    labels: kopf.Labels,
    body: kopf.Body,
    type: str | None,
    **kwargs: Any,
) -> None:
    seen = None if type == "DELETED" else observe_job(compact_job(body))
    _controller(**kwargs).job_changed((namespace, labels[LABEL_RUN]), name, seen)
