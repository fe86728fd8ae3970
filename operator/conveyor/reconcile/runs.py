"""Reconciling PipelineRuns. The RunController takes in what the watches say (queueing the
runs it concerns), remembers the status writes the watch has not brought back yet, and runs
each pass: gather the run's facts (`reconcile/facts.py`), decide the pass once
(`engine/pass_decision.py`, pure), then do it: Approvals (`reconcile/approvals.py`), Jobs
(`reconcile/launch.py`), native deploys (`reconcile/deploys.py`), the status, events.
Level-triggered: every pass starts from the run's spec and the Jobs that exist, so a pass can be
repeated, interrupted or run after a restart without creating or losing anything."""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor import __version__
from conveyor.api import ModelError, PipelineRun
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import FINISHED_PHASES, PipelineRunStatus
from conveyor.engine import ObservedJob, Plan
from conveyor.engine.deploy_order import WAITING, Lock
from conveyor.engine.pass_decision import decide
from conveyor.engine.planner import reopened, retry_due
from conveyor.engine.record import RECORD_FIELDS, as_recorded, built_images
from conveyor.kube.client import Kube
from conveyor.kube.jobspec import JobOptions
from conveyor.metrics import OperatorMetrics
from conveyor.reconcile.approvals import ApprovalGates
from conveyor.reconcile.artifacts import ArtifactService
from conveyor.reconcile.deploys import DeployExecutor
from conveyor.reconcile.eventpost import EventPoster
from conveyor.reconcile.facts import FactGatherer, Unplannable
from conveyor.reconcile.failures import FailedPasses
from conveyor.reconcile.launch import ARTIFACT_RETRY_SECONDS, JobLauncher
from conveyor.reconcile.locks import DeployLocks
from conveyor.reconcile.observed import ObservedJobs
from conveyor.reconcile.pipelines import RunPipelines
from conveyor.reconcile.retry import Quiet
from conveyor.reconcile.siblings import PipelineRuns
from conveyor.reconcile.sources import Sources
from conveyor.reconcile.statuswrites import StatusWrites
from conveyor.reconcile.sweeps import Sweeps
from conveyor.reconcile.timers import RunTimers
from conveyor.reconcile.views import (
    Key,
    Views,
    any_active,
    auto_cancels,
    first,
    pipeline_ref,
    run_phase,
    serving_environment,
    utcnow,
)
from conveyor.reconcile.workqueue import WorkQueue

log = logging.getLogger("conveyor.runs")

DEFERRED_STATUS_SECONDS = 1.0  # at the latest; normally the new Job's watch event comes first
# A job held by its environment or resource group is queued again when the job ahead ends; this
# recheck only backs that up (an event missed during a watch reconnect).
HELD_RECHECK_SECONDS = 30.0


def _job(pipeline: PipelineSpec, name: str) -> PipelineJob:
    """A job that the run's plan or status names: always one of its pipeline's."""
    job = pipeline.job(name)
    if job is None:
        raise KeyError(f"job {name!r} is not in the run's pipeline")
    return job


class RunController:
    """Owns the work queue of runs and the reconcile passes over them."""

    def __init__(
        self,
        kube: Kube,
        options: JobOptions,
        sources: Sources,
        *,
        clock: Callable[[], datetime.datetime] = utcnow,
        io_threads: int = 8,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.kube = kube
        self.metrics = metrics or OperatorMetrics(__version__)
        self.options = options
        self.sources = sources
        self.clock = clock
        self.queue: WorkQueue[Key] = WorkQueue()
        self.views: Views | None = None
        self.instance = socket.gethostname()
        self.timers = RunTimers(self.queue)
        self._settling: set[Key] = set()  # finished runs the watch has not shown finished yet
        # API calls block (the Kubernetes client is synchronous): a pool of their own, sized for
        # I/O, so a burst of handoffs is not serialised behind asyncio's default few threads.
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="kube")
        # Native deploys hold a thread for as long as a rollout takes (minutes): never the
        # threads that status writes need.
        self._deploy_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="deploy")
        quiet = Quiet()
        self.failures = FailedPasses(self.queue, self.metrics, quiet)
        # What each run's build jobs pushed (image -> digest), from its status: deploys pin it.
        self._built: dict[Key, dict[str, str]] = {}
        # Artifacts and caches: plans before Jobs, records after, the store's sweeps.
        self.artifacts = ArtifactService(
            kube, options.artifact_store, options, options.artifacts_expire_in
        )
        self.deploys = DeployExecutor(
            kube,
            sources,
            self._deploy_io,
            clock,
            self.queue.add,
            self._built_by,
            credentials_namespace=options.credentials_namespace,
            environment=self.environment,
        )
        self.approvals = ApprovalGates(
            kube,
            self.io,
            self.environment,
            self.deploys.images,
            self.queue,
            self.metrics,
            self.instance,
            artifacts_recorded=options.artifact_store is not None,
        )
        self.events = EventPoster(kube, self.instance, quiet)
        self.writes = StatusWrites(kube, self.io, self.metrics)
        self.siblings = PipelineRuns(kube, self.io, self.queue, self.writes)
        self.sweeps = Sweeps(kube, self.io, options, clock, self.artifacts, self.approvals)
        # How the planner last saw each Job (from its watch events): updates that do not change
        # it do not queue a pass.
        self._job_views: dict[Key, dict[str, ObservedJob]] = {}
        self.observed = ObservedJobs(kube, self.io)
        self.pipelines = RunPipelines(sources, options)
        self.locks = DeployLocks(clock)
        self.launcher = JobLauncher(
            kube,
            self.io,
            options,
            self.artifacts,
            self.observed,
            sources,
            self._built_by,
            clock,
            io_threads,
        )
        self.facts = FactGatherer(
            options=options,
            io=self.io,
            pipelines=self.pipelines,
            siblings=self.siblings,
            observed=self.observed,
            approvals=self.approvals,
            deploys=self.deploys,
            launcher=self.launcher,
            locks=self.locks,
            artifacts=self.artifacts,
            note_built=self._note_built,
        )

    async def io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    async def _deploy_io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._deploy_pool, call, *args)

    # -- feeding the queue (called from the Kopf handlers)
    def bind(self, views: Views) -> None:
        self.views = views
        self.siblings.bind(views)
        self.pipelines.bind(views)
        self.sweeps.bind(views)
        self.locks.bind(views.deploy_claims, views.jobs)
        self.metrics.watch(views.runs, views.approvals, lambda: len(self.queue))

    def environment(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        assert self.views is not None
        return serving_environment(self.views, namespace, name)

    def pipeline_body(self, key: Key) -> dict[str, Any] | None:
        return first(self.views.pipelines, key) if self.views is not None else None

    def namespace_changed(self, namespace: str) -> None:
        """Queues every unfinished run of a namespace (an Environment changed), those with an
        inline pipelineSpec too."""
        assert self.views is not None
        for (ns, name), bodies in self.views.runs.items():
            if ns != namespace:
                continue
            for body in bodies:
                if run_phase(body) not in FINISHED_PHASES:
                    self.queue.add((ns, name))

    def deploys_changed(self, namespace: str, name: str, locks: Iterable[Lock]) -> None:
        """A run's jobs with locks changed (started, ended, waiting, deleted): the runs waiting
        for the same locks decide again (the lock may be free, or they outdated)."""
        assert self.views is not None
        for lock in locks:
            for entries in self.views.deploy_claims.get((namespace, lock), ()):
                for entry in entries:
                    if entry["run"] != name and entry.get("state") == WAITING:
                        self.queue.add((namespace, entry["run"]))

    def run_changed(self, key: Key) -> None:
        self.queue.add(key)

    def run_created(self, namespace: str, body: Mapping[str, Any]) -> None:
        """A new run: with auto-cancel, the older runs of its pipeline decide whether it makes
        them redundant."""
        name = pipeline_ref(body)
        pipeline = self.pipeline_body((namespace, name)) if name else None
        if name and pipeline and auto_cancels(pipeline):
            self.pipeline_changed(namespace, name)

    def job_changed(self, key: Key, job_name: str, seen: ObservedJob | None) -> None:
        """A Job of run `key` changed; `seen` is how the planner sees it now (None: deleted).
        Most of a Job's updates (its pod scheduled, ready, terminating) change nothing the
        planner reads: only a new view of it is worth a pass."""
        jobs = self._job_views.setdefault(key, {})
        if seen is None:
            jobs.pop(job_name, None)
            if not jobs:
                del self._job_views[key]
        elif jobs.get(job_name) == seen:
            return
        else:
            jobs[job_name] = seen
        self.queue.add(key)

    def pipeline_changed(self, namespace: str, name: str) -> None:
        assert self.views is not None
        for summary in self.views.runs_by_pipeline.get((namespace, name), ()):
            if summary.get("phase") not in FINISHED_PHASES:
                self.queue.add((namespace, summary["name"]))

    # -- workers
    async def work(self, workers: int) -> None:
        await asyncio.gather(*(self._worker() for _ in range(workers)), self.sweeps.run())

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            began = time.perf_counter()
            try:
                await self.reconcile(key)
                self.failures.succeeded(key)
            except Exception as e:
                self.failures.failed(key, e)
            finally:
                self.metrics.pass_seconds.observe(time.perf_counter() - began)
                self.queue.done(key)

    # -- one pass
    def _run_body(self, key: Key) -> dict[str, Any] | None:
        assert self.views is not None
        body = first(self.views.runs, key)
        if body is None:
            self.writes.forget(key)
            self.timers.forget(key)
            self.siblings.forget(key)
            self.observed.forget(key)
            self._settling.discard(key)
            self.deploys.forget(key)
            self._built.pop(key, None)
            self.approvals.forget(key)
            self.launcher.forget(key)
            return None
        return self.writes.current(key, body)

    async def reconcile(self, key: Key) -> None:
        assert self.views is not None
        body = self._run_body(key)
        if body is None:
            return  # deleted; its Jobs go by garbage collection
        namespace = key[0]
        now = self.clock()
        run = as_recorded(PipelineRun.from_dict(body))
        stored = run.status  # as the API server has it (the facts add the run's record)
        if (
            run.status.finished
            and not reopened(run)
            and not retry_due(run)
            and not any_active(self.views.jobs.get(key, ()))
        ):
            await self.approvals.close(key, run, self.views.approvals.get(key, ()), now)
            if key in self._settling and not self.writes.pending(key):
                # The view now shows this run finished: decide again for its pipeline.
                self._settling.discard(key)
                await self._after_finish(namespace, run)
            return
        gathered = await self.facts.gather(
            key, run, self.views.jobs.get(key, ()), self.views.approvals.get(key, ()), now
        )
        if isinstance(gathered, Unplannable):
            await self.writes.write(key, body, run, gathered.status)
            return
        run, pipeline, gates = gathered.facts.run, gathered.facts.pipeline, gathered.gates
        decision = decide(gathered.facts)
        decided = decision.plan
        if decision.held:
            self.queue.add_after(key, HELD_RECHECK_SECONDS)
        if gathered.unread:
            self.queue.add_after(key, ARTIFACT_RETRY_SECONDS)
        self.locks.claim(namespace, run, decided)
        # A build that ends in this pass may start its deploy in this pass: pin its digest now.
        self._note_built(key, pipeline, decided.status)
        jobs = decided.status.jobs
        await self.approvals.sync(key, run, pipeline, gates, jobs, now)
        await self._apply(key, body, stored, run, pipeline, decided, gates.approved_images)
        if gathered.awaiting:
            self.queue.add_after(key, 1.0)
        self.timers.schedule(key, pipeline, decided.status, decided.wake_at, now)

    def _note_built(self, key: Key, pipeline: PipelineSpec, status: PipelineRunStatus) -> None:
        built = built_images(pipeline, status)
        if built:
            self._built.setdefault(key, {}).update(built)

    def _built_by(self, key: Key) -> Mapping[str, str]:
        return self._built.get(key, {})

    async def _apply(
        self,
        key: Key,
        body: dict[str, Any],
        stored: PipelineRunStatus,
        run: PipelineRun,
        pipeline: PipelineSpec,
        decided: Plan,
        approved_images: Mapping[str, tuple[str, ...]],
    ) -> None:
        namespace, _ = key
        if decided.create and not stored.recorded and decided.status.recorded:
            # The record of what the run runs is written before its first Jobs, so nothing runs
            # that the record (and so an approval's digest) does not say.
            body = await self.writes.write(key, body, run, decided.status, only=RECORD_FIELDS)
        # Jobs before status: a status that names a Job must never precede the Job itself.
        for create in decided.create:
            spec_job = _job(pipeline, create.pipeline_job)
            if spec_job.deploy is not None:
                # Native deploys run in the operator: no Job, no pod.
                images = approved_images.get(spec_job.name)  # None: not gated
                self.deploys.start(
                    key, run, pipeline, spec_job, create.attempt, create.job_name, images
                )
                continue
            later = await self.launcher.create(
                key, run, pipeline, spec_job, create, decided.status.jobs
            )
            if later is not None:
                # Not made in this pass (an artifact it downloads is not recorded yet, or its
                # cache:key:files not read yet): planned again then.
                self.queue.add_after(key, later)
        await self.launcher.delete(namespace, decided.delete)
        await self.launcher.stop(namespace, decided.stop)
        if any(_job(pipeline, c.pipeline_job).deploy is None for c in decided.create):
            # The status (and the events derived from it) is written by the pass the new Jobs'
            # watch events bring, moments later: it then says "running" at once, instead of a
            # write for "planned" and another for "running". Nothing is lost if we stop before:
            # the next pass recomputes both from the Jobs that exist.
            self.queue.add_after(key, DEFERRED_STATUS_SECONDS)
            return
        await self.writes.write(key, body, run, decided.status)
        now = self.clock()
        self.events.post(namespace, body, decided.events, now)
        if not stored.finished and decided.status.finished:
            self._settling.add(key)
            await self._after_finish(namespace, run)

    async def _after_finish(self, namespace: str, run: PipelineRun) -> None:
        """A run has ended: the pipeline's next runs may start, its oldest go. Called when it
        ends and once more when the watch shows it ended, so decisions taken on a view that
        lagged are taken again once the view has caught up."""
        try:
            pipeline, _ = self.pipelines.spec(run, namespace)
        except ModelError:
            return
        if pipeline is not None:
            await self.siblings.after_finish(namespace, run, pipeline)
