"""Reconciling PipelineRuns: read the in-memory view of the cluster, ask the engine what to do,
do it. Level-triggered: every pass starts from the run's spec and the Jobs that exist, so a pass
can be repeated, interrupted or run after a restart without creating or losing anything."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from conveyor import __version__
from conveyor.api import ModelError, Pipeline, PipelineRun, parse_time
from conveyor.api.codec import from_dict, to_dict
from conveyor.api.conditions import Condition
from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import (
    FINISHED_PHASES,
    REASON_SOURCE_UNAVAILABLE,
)
from conveyor.engine import (
    ObservedJob,
    Plan,
    RunSummary,
    invalid_pipeline_status,
    may_start,
    missing_pipeline_status,
    plan,
    redundant,
    runs_allowed_to_start,
    runs_to_delete,
)
from conveyor.engine.deploy_order import (
    WAITING,
    Lock,
)
from conveyor.engine.environments import resolve_environment
from conveyor.engine.evaluation import with_evaluation
from conveyor.engine.gates import (
    refused,
    with_approved,
)
from conveyor.engine.model import ACTIVE, FAILED, Event
from conveyor.engine.names import job_name as attempt_job_name
from conveyor.engine.planner import failed_status, reopened, retry_due
from conveyor.engine.record import as_recorded, recorded_pipeline, with_record
from conveyor.engine.tags import REASON_UNMAPPED_TAG, TagError
from conveyor.engine.targets import with_target_condition
from conveyor.gitlab.context import rule_context
from conveyor.gitlab.rules import evaluate
from conveyor.kube.client import Kube
from conveyor.kube.events import event_body
from conveyor.kube.jobspec import (
    JobOptions,
    build_job,
    project_name,
    transfer_plan_secret,
    with_names_expanded,
)
from conveyor.kube.patch import merge_patch
from conveyor.metrics import OperatorMetrics
from conveyor.reconcile.approvals import ApprovalGates, Gates
from conveyor.reconcile.artifacts import ArtifactService, Prepared
from conveyor.reconcile.deploys import DeployExecutor
from conveyor.reconcile.locks import NO_ARBITRATION, DeployLocks
from conveyor.reconcile.observed import ObservedJobs
from conveyor.reconcile.retry import Backoff, Quiet
from conveyor.reconcile.sources import Sources, SourceUnavailable
from conveyor.reconcile.workqueue import WorkQueue
from conveyor.source import errors as source_errors
from conveyor.store.plan import keeps_artifacts

log = logging.getLogger("conveyor.runs")

Key = tuple[str, str]  # (namespace, name)
Lookup = Mapping[Any, Iterable[dict[str, Any]]]  # Kopf's indices: key -> stored values
DEFERRED_STATUS_SECONDS = 1.0  # at the latest; normally the new Job's watch event comes first
# A job held by its environment or resource group is queued again when the job ahead ends; this
# recheck only backs that up (an event missed during a watch reconnect).
HELD_RECHECK_SECONDS = 30.0
APPROVAL_SWEEP_SECONDS = 300.0
# What a run records of itself at its start (engine.record), with the rules' outcome.
RECORD_KEYS = ("pipelineSpec", "variables", "evaluation")


KEY_FILES_WAIT: Mapping[str, tuple[str, ...]] = {}  # a marker: not read yet, try again
ARTIFACT_RETRY_SECONDS = 5.0  # an attempt's manifest not readable yet: look again
# cache:key:files needs the files' blob ids: a repository that cannot be read for a reason that
# may pass (unreachable, a timeout, git failing) is tried again this often, for this long, before
# the job fails naming the cause; others (authentication, a commit gone) fail it at once.
KEY_FILES_RETRY_SECONDS = 10.0
KEY_FILES_PATIENCE_SECONDS = 300.0
KEY_FILES_TRANSIENT = frozenset({source_errors.UNREACHABLE, source_errors.TIMEOUT,
                                 source_errors.GIT_FAILED})  # fmt: skip


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _first(lookup: Lookup, key: Any) -> dict[str, Any] | None:
    try:
        return next(iter(lookup[key]), None)
    except KeyError:
        return None


@dataclass
class Views:
    """The operator's in-memory view of the cluster, kept by the watches (Kopf indices)."""

    runs: Lookup  # (ns, run name) -> [PipelineRun]
    runs_by_pipeline: Lookup  # (ns, pipeline name) -> [run summary]
    pipelines: Lookup  # (ns, pipeline name) -> [Pipeline]
    jobs: Lookup  # (ns, run name) -> [compact Job]
    environments: Lookup  # (ns, environment name) -> [Environment]
    approvals: Lookup  # (ns, run name) -> [Approval]
    deploy_claims: Mapping[Any, Iterable[list[dict[str, Any]]]]  # (ns, lock) -> [[claim entry]]


def built_images(pipeline: PipelineSpec, status: Mapping[str, Any]) -> dict[str, str]:
    """Image -> digest for the build jobs of the run that pushed one (status.jobs[])."""
    digests = {j.get("name"): j.get("imageDigest") for j in status.get("jobs") or ()}
    return {
        job.build.image: digests[job.name]
        for job in pipeline.jobs
        if job.build is not None and digests.get(job.name)
    }


def _job(pipeline: PipelineSpec, name: str) -> PipelineJob:
    """A job that the run's plan or status names: always one of its pipeline's."""
    job = pipeline.job(name)
    if job is None:
        raise KeyError(f"job {name!r} is not in the run's pipeline")
    return job


def _is_attempt_of(pipeline: PipelineSpec, run: PipelineRun, seen: ObservedJob) -> bool:
    """Whether a Job the run owns is one the operator made for it: a job of the pipeline that
    runs as a Job (a native deploy never does), under the name of its attempt (or the name it
    had before names held the run's UID)."""
    job = pipeline.job(seen.pipeline_job)
    if job is None or job.deploy is not None:
        return False
    names = {
        attempt_job_name(run.name, job.name, seen.attempt, run.metadata.uid or ""),
        attempt_job_name(run.name, job.name, seen.attempt),
    }
    return seen.job_name in names


def run_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What concurrency and history decisions need of a run."""
    metadata = body["metadata"]
    return {
        "name": metadata["name"],
        "creationTimestamp": metadata.get("creationTimestamp"),
        "phase": (body.get("status") or {}).get("phase"),
        "labels": metadata.get("labels") or {},
        "ref": ((body.get("spec") or {}).get("revision") or {}).get("ref"),
    }


def _with_targets(
    status: dict[str, Any], unreachable: Sequence[str], now: datetime.datetime
) -> tuple[dict[str, Any], list[Event]]:
    """The status with its TargetsReachable condition, and the Event of a change."""
    conditions = tuple(from_dict(Condition, c) for c in status.get("conditions") or ())
    updated, events = with_target_condition(conditions, unreachable, now)
    if updated == conditions:
        return status, events
    return {**status, "conditions": [to_dict(c) for c in updated]}, events


def _with_sha(run: PipelineRun, evaluation: Evaluation | None) -> PipelineRun:
    """The run as it builds: a run given only a ref builds the commit resolved at its start."""
    if run.spec is None or run.spec.revision.sha or evaluation is None or not evaluation.sha:
        return run
    revision = dataclasses.replace(run.spec.revision, sha=evaluation.sha)
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, revision=revision))


def _summaries(values: Iterable[Mapping[str, Any]]) -> list[RunSummary]:
    return [
        RunSummary(
            name=v["name"],
            creation_timestamp=parse_time(v["creationTimestamp"]),
            phase=v.get("phase"),
            labels=v.get("labels") or {},
            ref=v.get("ref"),
        )
        for v in values
        if v.get("creationTimestamp")
    ]


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
        # Status we wrote that the watch has not brought back yet: (resourceVersions that are
        # older than our write, the body after it). Without it, a pass that runs before the
        # watch catches up would plan from stale status and write the same status again.
        self._written: dict[Key, tuple[frozenset[str], dict[str, Any]]] = {}
        self._deadlines: dict[Key, datetime.datetime] = {}
        self._wakeups: dict[Key, datetime.datetime] = {}  # delayed jobs' starts
        self._pruned: set[Key] = set()  # runs we asked to delete (history)
        self._background: set[asyncio.Task[None]] = set()  # event posts in flight
        self._settling: set[Key] = set()  # finished runs the watch has not shown finished yet
        self._parsed: dict[Key, tuple[tuple[str, str, str | None], PipelineSpec | None]] = {}
        # API calls block (the Kubernetes client is synchronous): a pool of their own, sized for
        # I/O, so a burst of handoffs is not serialised behind asyncio's default few threads.
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="kube")
        # Native deploys hold a thread for as long as a rollout takes (minutes): never the
        # threads that status writes need.
        self._deploy_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="deploy")
        self._backoff, self._quiet = Backoff(), Quiet()
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
        # Attempts whose runner tags the operator does not map (--tag-selector): no Job is
        # made, and the attempt fails naming the tag (in memory: a restart finds it again).
        self._unplaced: dict[Key, dict[str, ObservedJob]] = {}
        # Since when each attempt's cache:key:files blob ids could not be read (monotonic).
        self._key_files_failing: dict[tuple[Key, str, int], float] = {}
        # Events are a best-effort record: posted on threads of their own, behind nothing else.
        self._events_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="events")
        # Job creates and deletes are the pipeline's critical path: never queued behind status
        # and event writes of other runs.
        self._jobs_pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="jobs")
        # How the planner last saw each Job (from its watch events): updates that do not change
        # it do not queue a pass.
        self._job_views: dict[Key, dict[str, ObservedJob]] = {}
        self.observed = ObservedJobs(kube, self.io)
        self.locks = DeployLocks(clock)

    async def io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    async def _job_io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._jobs_pool, call, *args)

    async def _deploy_io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._deploy_pool, call, *args)

    # -- feeding the queue (called from the Kopf handlers)
    def bind(self, views: Views) -> None:
        self.views = views
        self.locks.bind(views.deploy_claims, views.jobs)
        self.metrics.watch(views.runs, views.approvals, lambda: len(self.queue))

    def environment(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Environment that serves environment `name` in `namespace` (by name, slug or
        pattern), from the watch's view."""
        assert self.views is not None
        bodies = [
            body
            for (ns, _), values in list(self.views.environments.items())
            if ns == namespace
            for body in values
        ]
        return resolve_environment(name, bodies)

    def pipeline_body(self, key: Key) -> dict[str, Any] | None:
        return _first(self.views.pipelines, key) if self.views is not None else None

    def namespace_changed(self, namespace: str) -> None:
        """Queues every unfinished run of a namespace (an Environment changed), those with an
        inline pipelineSpec too."""
        assert self.views is not None
        for (ns, name), bodies in self.views.runs.items():
            if ns != namespace:
                continue
            for body in bodies:
                if (body.get("status") or {}).get("phase") not in FINISHED_PHASES:
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
        ref = (body.get("spec") or {}).get("pipelineRef") or {}
        pipeline = self.pipeline_body((namespace, ref.get("name") or ""))
        if pipeline and (pipeline.get("spec") or {}).get("autoCancel") == "conservative":
            self.pipeline_changed(namespace, ref["name"])

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
        await asyncio.gather(
            *(self._worker() for _ in range(workers)),
            self._sweep_approvals(),
            self._sweep_artifacts(),
        )

    async def _sweep_artifacts(self) -> None:
        """The store keeps no run's artifacts past the run (deleted by hand or by the history
        limit) and no attempt's past its expiry (expire_in)."""
        if self.options.artifact_store is None:
            return
        while True:
            await asyncio.sleep(self.options.artifact_sweep_interval.total_seconds())
            try:
                await self.sweep_artifacts_once()
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
        return (body.get("metadata") or {}).get("uid") == uid

    async def sweep_artifacts_once(self) -> int:
        assert self.views is not None
        bodies = [
            (ns, name, body)
            for (ns, name), values in list(self.views.runs.items())
            for body in values
        ]
        runs = [(ns, name, (b.get("metadata") or {}).get("uid") or "") for ns, name, b in bodies]
        statuses = [
            (ns, name, uid, b.get("status") or {})
            for (ns, name, uid), (_, _, b) in zip(runs, bodies, strict=True)
        ]
        gone = await self.io(self.artifacts.sweep, runs, statuses, self.clock(), self._run_exists)
        if gone:
            log.info("artifact store: deleted %d object(s) of deleted runs or expired", gone)
        return gone

    async def _sweep_approvals(self) -> None:
        """Approvals outlive their runs (they are the record of who approved what): those of
        deleted runs are closed, and deleted once past the retention period."""
        while True:
            try:
                await self.sweep_approvals_once()
            except Exception:
                log.exception("sweeping approvals failed; trying again later")
            await asyncio.sleep(APPROVAL_SWEEP_SECONDS)

    async def sweep_approvals_once(self) -> None:
        assert self.views is not None
        runs = {
            (ns, name, (body.get("metadata") or {}).get("uid") or "")
            for (ns, name), bodies in list(self.views.runs.items())
            for body in bodies
        }
        bodies = [b for values in list(self.views.approvals.values()) for b in values]
        retention = self.options.approval_retention
        await self.approvals.sweep_once(runs, bodies, self.clock(), retention)

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            began = time.perf_counter()
            try:
                await self.reconcile(key)
                self._backoff.succeeded(key)
            except ApiException as e:
                self._failed(key, "api", f"API error {e.status} {e.reason}")
            except (OSError, urllib3.exceptions.HTTPError) as e:
                # The API server is unreachable (restarting, say): the same for every run.
                self._failed(key, "api", f"the API server did not answer: {type(e).__name__}")
            except Exception as e:
                self._failed(key, "internal", f"{type(e).__name__}: {e}"[:300], trace=True)
            finally:
                self.metrics.pass_seconds.observe(time.perf_counter() - began)
                self.queue.done(key)

    def _failed(self, key: Key, kind: str, cause: str, *, trace: bool = False) -> None:
        """Retries the run with backoff; says the cause once per interval, not per attempt."""
        delay = self._backoff.failed(key)
        self.metrics.pass_errors.labels(kind).inc()
        self.queue.add_after(key, delay)
        held = self._quiet.say(cause, time.monotonic())
        if held is None:
            return
        more = f" ({held} more failures with this cause since it was last said)" if held else ""
        log.warning(
            "reconciling %s/%s: %s; retrying in %.0f s%s",
            *key,
            cause,
            delay,
            more,
            exc_info=trace,
        )

    # -- one pass
    def _run_body(self, key: Key) -> dict[str, Any] | None:
        assert self.views is not None
        body = _first(self.views.runs, key)
        written = self._written.get(key)
        if body is None:
            self._written.pop(key, None)
            self._deadlines.pop(key, None)
            self._wakeups.pop(key, None)
            self._pruned.discard(key)
            self.observed.forget(key)
            self._settling.discard(key)
            self.deploys.forget(key)
            self._built.pop(key, None)
            self.approvals.forget(key)
            self._unplaced.pop(key, None)
            for failing in [f for f in self._key_files_failing if f[0] == key]:
                del self._key_files_failing[failing]
            return None
        if written is not None:
            older, newer = written
            if body["metadata"].get("resourceVersion") in older:
                return newer
            self._written.pop(key, None)
        return body

    def _pipeline(self, run: PipelineRun, namespace: str) -> tuple[PipelineSpec | None, str]:
        """The run's pipeline spec, or None and why not: the one recorded when it started, else
        the inline one or its Pipeline's."""
        assert self.views is not None and run.spec is not None
        recorded = recorded_pipeline(run)
        if recorded is not None:
            return recorded, ""
        if run.spec.pipeline_spec is not None:
            return run.spec.pipeline_spec, ""
        name = run.pipeline_name or ""
        body = _first(self.views.pipelines, (namespace, name))
        if body is None:
            return None, f"Pipeline {name!r} does not exist in namespace {namespace!r}"
        # Parsing is the costliest step of a pass: reuse it while the Pipeline is unchanged.
        version = (namespace, name, body["metadata"].get("resourceVersion"))
        cached = self._parsed.get((namespace, name))
        if cached is None or cached[0] != version:
            cached = (version, Pipeline.from_dict(body).spec)
            self._parsed[(namespace, name)] = cached
        if cached[1] is None:
            return None, f"Pipeline {name!r} has no spec"
        return cached[1], ""

    async def reconcile(self, key: Key) -> None:
        assert self.views is not None
        body = self._run_body(key)
        if body is None:
            return  # deleted; its Jobs go by garbage collection
        namespace = key[0]
        now = self.clock()
        run = as_recorded(PipelineRun.from_dict(body))
        if (
            run.status.finished
            and not reopened(run)
            and not retry_due(run)
            and not any(j.get("status", {}).get("active") for j in self.views.jobs.get(key, ()))
        ):
            await self.approvals.close(key, run, self.views.approvals.get(key, ()), now)
            if key in self._settling and key not in self._written:
                # The view now shows this run finished: decide again for its pipeline.
                self._settling.discard(key)
                await self._after_finish(namespace, run)
            return
        if namespace == self.options.credentials_namespace:
            # Its Secrets are every Environment's credentials: no job may run beside them.
            message = (
                f"runs are refused in namespace {namespace}: it holds the Environments' "
                "credentials (the operator's --credentials-namespace)"
            )
            await self._write_status(key, body, invalid_pipeline_status(run, now, message))
            return
        try:
            pipeline, missing = self._pipeline(run, namespace)
        except ModelError as e:
            await self._write_status(key, body, invalid_pipeline_status(run, now, str(e)))
            return
        if pipeline is None:
            await self._write_status(key, body, missing_pipeline_status(run, now, missing))
            return
        allowed = self._may_start(namespace, run, pipeline)
        evaluation = run.status.evaluation
        if evaluation is None and allowed:
            # GitLab's rules, once per run, when it may start (queued runs read no git).
            try:
                evaluation = await self._evaluate(namespace, pipeline, run)
            except SourceUnavailable as e:
                failed = failed_status(run, now, REASON_SOURCE_UNAVAILABLE, str(e))
                await self._write_status(key, body, failed)
                return
            run = with_evaluation(run, evaluation)
        if allowed and not run.status.finished:
            # From here on the run runs from this record, not from the live Pipeline.
            run = with_record(run, pipeline)
        run = _with_sha(run, evaluation)
        try:
            excluded = evaluation.excluded if evaluation is not None else frozenset()
            pipeline = with_names_expanded(pipeline, run, self.options, excluded)
        except ModelError as e:
            if allowed:  # a queued run is judged when it may start, with its git facts
                await self._write_status(key, body, invalid_pipeline_status(run, now, str(e)))
                return
        self._note_built(key, pipeline, body.get("status") or {})
        # Build and scan jobs report in their pod's termination message, success or not.
        reporting = frozenset(
            j.name for j in pipeline.jobs if j.build is not None or j.scan is not None
        )
        jobs = self.views.jobs.get(key, ())
        observed, awaiting = await self.observed.of(key, jobs, now, reporting, run.metadata.uid)
        observed = [o for o in observed if _is_attempt_of(pipeline, run, o)]
        gates = self.approvals.read(key, run, pipeline, self.views.approvals.get(key, ()), now)
        self._resume_deploys(key, run, pipeline, gates)
        observed += self.deploys.observed(key) + refused(run.name, gates.refusals, gates.messages)
        observed += list(self._unplaced.get(key, {}).values())
        planning = functools.partial(
            plan,
            pipeline,
            with_approved(run, gates.approved, gates.gated),
            observed,
            now,
            may_start=allowed,
            evaluation=evaluation,
            gated=gates.gated,
        )
        cancelled_by = self._redundant(key, body, run, pipeline)
        decided = planning(superseded=cancelled_by) if cancelled_by else planning()
        arbitration = self.locks.arbitrate(key[0], run, decided, observed)
        if arbitration != NO_ARBITRATION:
            # Plan again: held deploys wait, an overtaken run stops.
            decided = planning(
                held=arbitration.held, superseded=arbitration.superseded or cancelled_by
            )
            if arbitration.held:
                self.queue.add_after(key, HELD_RECHECK_SECONDS)
        self.locks.claim(key[0], run, decided)
        status = self._with_deployments(key, body, decided.status)
        status = await self._with_artifacts(key, body, run, pipeline, status)
        status, noticed = _with_targets(status, self.deploys.unreachable(key), now)
        decided = dataclasses.replace(decided, status=status, events=[*decided.events, *noticed])
        # A build that ends in this pass may start its deploy in this pass: pin its digest now.
        self._note_built(key, pipeline, status)
        jobs = status.get("jobs") or ()
        await self.approvals.sync(key, body, run, pipeline, gates, jobs, now)
        await self._apply(key, body, run, pipeline, decided, gates.approved_images)
        if awaiting:
            self.queue.add_after(key, 1.0)
        self._schedule_run_timeout(key, pipeline, decided.status, now)
        if decided.wake_at is not None and self._wakeups.get(key) != decided.wake_at:
            self._wakeups[key] = decided.wake_at  # one timer per start, not one per pass
            self.queue.add_after(key, (decided.wake_at - now).total_seconds() + 0.1)

    async def _with_artifacts(
        self,
        key: Key,
        body: Mapping[str, Any],
        run: PipelineRun,
        pipeline: PipelineSpec,
        status: dict[str, Any],
    ) -> dict[str, Any]:
        """status.jobs[].artifacts and .tests of finished attempts that keep artifacts, read
        from the store once (what the run's status already records is kept as it is)."""
        if self.options.artifact_store is None:
            return status
        recorded = {
            (e.get("name"), e.get("attempt")): {k: e[k] for k in ("artifacts", "tests") if k in e}
            for e in (body.get("status") or {}).get("jobs") or ()
            if "artifacts" in e
        }
        jobs = []
        changed = False
        for entry in status.get("jobs") or ():
            spec_job = pipeline.job(entry.get("name", ""))
            if (
                spec_job is None
                or not keeps_artifacts(spec_job)
                or entry.get("phase") not in ("Succeeded", "Failed")
                or not entry.get("attempt")
                or not entry.get("jobName")
                or "artifacts" in entry
            ):
                jobs.append(entry)
                continue
            fields = recorded.get((entry["name"], entry["attempt"]))
            if fields is None:
                fields = await self.io(self.artifacts.records, run, pipeline, entry)
                if fields is None:
                    self.queue.add_after(key, ARTIFACT_RETRY_SECONDS)
            if fields:
                entry = {**entry, **fields}
                changed = True
            jobs.append(entry)
        return {**status, "jobs": jobs} if changed else status

    def _redundant(
        self, key: Key, body: Mapping[str, Any], run: PipelineRun, pipeline: PipelineSpec
    ) -> str | None:
        if pipeline.auto_cancel != "conservative" or run.pipeline_name is None:
            return None
        summaries = self._pipeline_runs(key[0], run.pipeline_name)
        this = next((s for s in summaries if s.name == run.name), None)
        if this is None:
            return None
        interruptible = {j.name for j in pipeline.jobs if j.interruptible}
        jobs = (body.get("status") or {}).get("jobs") or []
        return redundant(this, summaries, jobs, interruptible)

    def _note_built(self, key: Key, pipeline: PipelineSpec, status: Mapping[str, Any]) -> None:
        built = built_images(pipeline, status)
        if built:
            self._built.setdefault(key, {}).update(built)

    def _built_by(self, key: Key) -> Mapping[str, str]:
        return self._built.get(key, {})

    def _resume_deploys(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        gates: Gates,
    ) -> None:
        """A deploy the status says was running, that this process is not running: the
        operator restarted mid-deploy. Deploying again is safe (server-side apply)."""
        if run.status.finished:
            return
        for entry in run.status.jobs:
            if entry.phase != "Running" or not entry.job_name or not entry.attempt:
                continue
            job = _job(pipeline, entry.name)
            if job.name in gates.gated and job.name not in gates.approved_images:
                continue  # a gated deploy starts on its Approval only, never by resuming
            if job.deploy is not None and not self.deploys.running(key, entry.job_name):
                images = gates.approved_images.get(job.name)
                self.deploys.start(key, run, pipeline, job, entry.attempt, entry.job_name, images)

    def _with_deployments(
        self, key: Key, body: dict[str, Any], status: dict[str, Any]
    ) -> dict[str, Any]:
        """What went where: the run's deploy records, kept across passes and restarts."""
        stored = (body.get("status") or {}).get("deployments") or ()
        records = {d["job"]: d for d in stored}
        for result in self.deploys.results(key):
            records[result.job] = result.record()
        if not records:
            return status
        return {**status, "deployments": [records[k] for k in sorted(records)]}

    async def _evaluate(
        self, namespace: str, pipeline: PipelineSpec, run: PipelineRun
    ) -> Evaluation:
        sha, facts = await self.sources.facts(namespace, pipeline, run)
        extra = {"CI_PROJECT_NAME": project_name(pipeline, run)}
        if self.options.registry:
            extra["CI_REGISTRY"] = self.options.registry
        if self.options.registry_image:
            extra["CI_REGISTRY_IMAGE"] = self.options.registry_image
        evaluation = evaluate(pipeline, rule_context(run, facts, extra))
        return dataclasses.replace(evaluation, sha=sha)

    def _pipeline_runs(self, namespace: str, pipeline_name: str) -> list[RunSummary]:
        """The pipeline's runs, with the phases this operator wrote even where the watch has
        not brought them back yet (a decision on stale phases could wait forever)."""
        assert self.views is not None
        summaries = []
        for summary in _summaries(self.views.runs_by_pipeline.get((namespace, pipeline_name), ())):
            written = self._written.get((namespace, summary.name))
            if written is not None:
                phase = (written[1].get("status") or {}).get("phase")
                summary = RunSummary(
                    summary.name, summary.creation_timestamp, phase, summary.labels
                )
            summaries.append(summary)
        return summaries

    def _may_start(self, namespace: str, run: PipelineRun, pipeline: PipelineSpec) -> bool:
        if pipeline.concurrency is None or run.pipeline_name is None:
            return True
        runs = self._pipeline_runs(namespace, run.pipeline_name)
        return may_start(run.name, runs, pipeline.concurrency)

    async def _apply(
        self,
        key: Key,
        body: dict[str, Any],
        run: PipelineRun,
        pipeline: PipelineSpec,
        decided: Plan,
        approved_images: Mapping[str, tuple[str, ...]],
    ) -> None:
        namespace, _ = key
        old_status = body.get("status") or {}
        if decided.create and "pipelineSpec" not in old_status and "pipelineSpec" in decided.status:
            # The record of what the run runs is written before its first Jobs, so nothing runs
            # that the record (and so an approval's digest) does not say.
            record = {k: decided.status[k] for k in RECORD_KEYS if k in decided.status}
            await self._write_status(key, body, {**old_status, **record})
            body = self._written[key][1] if key in self._written else body
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
            key_files, refusal = await self._key_file_blobs(
                key, run, pipeline, spec_job, create.attempt
            )
            if refusal is not None:
                prepared = Prepared(refusal=refusal)
            elif key_files is KEY_FILES_WAIT:
                self.queue.add_after(key, KEY_FILES_RETRY_SECONDS)
                continue
            else:
                prepared = await self.io(
                    self.artifacts.prepare,
                    run,
                    pipeline,
                    spec_job,
                    create.attempt,
                    decided.status,
                    key_files,
                )
            if prepared.waiting:
                # An artifact it downloads is not recorded yet: planned again next pass.
                self.queue.add_after(key, ARTIFACT_RETRY_SECONDS)
                continue
            transfer = None
            if prepared.plan is not None:
                secret = transfer_plan_secret(run, spec_job, create.attempt, prepared.plan)
                transfer = await self.io(self.kube.create_secret, namespace, secret)
            try:
                job = build_job(
                    run=run,
                    pipeline=pipeline,
                    # Never the Environment's credentials: those serve native deploys only, in
                    # the operator, so no pod the team can reach ever holds them.
                    job=spec_job,
                    attempt=create.attempt,
                    options=self.options,
                    built=self._built_by(key),
                    transfer=transfer,
                    refusal=prepared.refusal,
                )
            except TagError as e:
                self._unplaced.setdefault(key, {})[create.job_name] = ObservedJob(
                    create.job_name,
                    create.pipeline_job,
                    create.attempt,
                    FAILED,
                    reason=REASON_UNMAPPED_TAG,
                    message=str(e),
                )
                continue
            await self._job_io(self.kube.create_job, namespace, job)
            seen = ObservedJob(create.job_name, create.pipeline_job, create.attempt, ACTIVE)
            self.observed.created(key, seen, self.clock())
        for job_name in decided.delete:
            await self._job_io(self.kube.delete_job, namespace, job_name)
        for job_name in decided.stop:
            await self._job_io(self.kube.stop_job, namespace, job_name)
        if any(_job(pipeline, c.pipeline_job).deploy is None for c in decided.create):
            # The status (and the events derived from it) is written by the pass the new Jobs'
            # watch events bring, moments later: it then says "running" at once, instead of a
            # write for "planned" and another for "running". Nothing is lost if we stop before:
            # the next pass recomputes both from the Jobs that exist.
            self.queue.add_after(key, DEFERRED_STATUS_SECONDS)
            return
        was_finished = (body.get("status") or {}).get("phase") in FINISHED_PHASES
        await self._write_status(key, body, decided.status)
        now = self.clock()
        if decided.events:
            # Events are a best-effort record, written after the status they describe; the pass
            # (and its worker) does not wait for them.
            bodies = [event_body(body, event, now, self.instance) for event in decided.events]
            task = asyncio.create_task(self._post_events(namespace, bodies))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if not was_finished and decided.status.get("phase") in FINISHED_PHASES:
            self._settling.add(key)
            await self._after_finish(namespace, run)

    async def _key_file_blobs(
        self, key: Key, run: PipelineRun, pipeline: PipelineSpec, job: PipelineJob, attempt: int
    ) -> tuple[Mapping[str, tuple[str, ...]] | None, str | None]:
        """For a scripted job with `keyFiles` caches, each of their entries -> the blob ids at
        the run's commit of the files it names: (blobs, None); (KEY_FILES_WAIT, None) while the
        repository cannot be read for a reason that may pass; (None, why) when the job fails.
        (None, None) for a job without `keyFiles`."""
        patterns = [f for c in job.cache if c.key_files is not None for f in c.key_files.files]
        if not patterns or job.build is not None or job.scan is not None:
            return None, None
        assert run.spec is not None
        failing = (key, job.name, attempt)
        try:
            blobs = await self.sources.key_file_blobs(
                key[0], pipeline, run.spec.revision.sha, patterns
            )
        except SourceUnavailable as e:
            now = time.monotonic()
            since = self._key_files_failing.setdefault(failing, now)
            if e.reason in KEY_FILES_TRANSIENT and now - since < KEY_FILES_PATIENCE_SECONDS:
                log.warning(
                    "%s/%s: job %s waits for its cache:key:files blob ids: %s", *key, job.name, e
                )
                return KEY_FILES_WAIT, None
            self._key_files_failing.pop(failing, None)
            return None, f"cache keyFiles: the files' git blob ids could not be read: {e}"
        self._key_files_failing.pop(failing, None)
        return blobs, None

    async def _post_events(self, namespace: str, bodies: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        for event in bodies:
            try:
                await loop.run_in_executor(
                    self._events_pool, self.kube.create_event, namespace, event
                )
            except (ApiException, OSError, urllib3.exceptions.HTTPError) as e:
                # Best effort, in a task nobody awaits: an error escaping it would be a
                # traceback per event while the API server is away. Said once per interval.
                cause = (
                    f"{e.status} {e.reason}"
                    if isinstance(e, ApiException)
                    else f"the API server did not answer: {type(e).__name__}"
                )
                held = self._quiet.say(f"event: {cause}", time.monotonic())
                if held is not None:
                    more = f" ({held} more not recorded since it was last said)" if held else ""
                    log.warning(
                        "event on %s/%s not recorded: %s%s",
                        namespace,
                        event["involvedObject"]["name"],
                        cause,
                        more,
                    )

    async def _write_status(self, key: Key, body: dict[str, Any], status: dict[str, Any]) -> None:
        patch = merge_patch(body.get("status") or {}, status)
        if not patch:
            return
        namespace, name = key
        # Written only over the run this pass read: a view that lags may still show a run
        # deleted and made again under its name, or one changed since (409, and the pass is
        # taken again on a fresher view).
        version = body["metadata"].get("resourceVersion")
        updated = await self.io(self.kube.patch_run_status, namespace, name, patch, version)
        older, _ = self._written.get(key, (frozenset(), body))
        self._written[key] = (older | {body["metadata"].get("resourceVersion", "")}, updated)
        pipeline = ((body.get("spec") or {}).get("pipelineRef") or {}).get("name") or ""
        self.metrics.status_written(namespace, pipeline, body.get("status") or {}, status)

    async def _after_finish(self, namespace: str, run: PipelineRun) -> None:
        """A run has ended: the next waiting runs may start, and old runs beyond history go.
        Called when it ends and once more when the watch shows it ended, so decisions taken on
        a view that lagged are taken again once the view has caught up."""
        if run.pipeline_name is None:
            return
        try:
            pipeline, _ = self._pipeline(run, namespace)
        except ModelError:
            return
        if pipeline is None:
            return
        summaries = self._pipeline_runs(namespace, run.pipeline_name)
        for waiting in runs_allowed_to_start(summaries, pipeline.concurrency):
            self.queue.add((namespace, waiting))
        keep = pipeline.history_limit
        for old in runs_to_delete(summaries, keep):
            if (namespace, old) in self._pruned:  # several runs ending at once agree on it
                continue
            self._pruned.add((namespace, old))
            log.info("deleting %s/%s: beyond the history limit of %d", namespace, old, keep)
            await self.io(self.kube.delete_run, namespace, old)

    def _schedule_run_timeout(
        self, key: Key, pipeline: PipelineSpec, status: Mapping[str, Any], now: datetime.datetime
    ) -> None:
        """Job timeouts are Kubernetes' (activeDeadlineSeconds); a run's is ours to notice."""
        limit = pipeline.timeout_seconds()
        start = status.get("startTime")
        if limit is None or not start or status.get("phase") in FINISHED_PHASES:
            return
        deadline = parse_time(start) + datetime.timedelta(seconds=limit)
        if self._deadlines.get(key) != deadline:  # one timer per run, not one per pass
            self._deadlines[key] = deadline
            self.queue.add_after(key, (deadline - now).total_seconds() + 0.5)
