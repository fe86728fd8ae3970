"""What a pass knows of one run (`engine.pass_decision.PassFacts`), gathered from the watch's
view, the repository (the run's GitLab rules, once), the pods of ended Jobs, the run's
Approvals, the deploys this process runs, every run's claims on the locks its jobs take, and
the artifact store. Or, when the run cannot be planned at all, the status that says why."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.api import ModelError, PipelineRun
from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import REASON_SOURCE_UNAVAILABLE, PipelineRunStatus
from conveyor.engine import ObservedJob, invalid_pipeline_status, missing_pipeline_status
from conveyor.engine.artifacts import KeptRecord
from conveyor.engine.attempts import is_attempt_of
from conveyor.engine.evaluation import with_evaluation
from conveyor.engine.gates import refused
from conveyor.engine.pass_decision import AttemptKey, PassFacts, pipeline_locks, recordable
from conveyor.engine.planner import failed_status
from conveyor.engine.record import with_record, with_sha
from conveyor.engine.variables.job import with_names_expanded
from conveyor.kube.jobspec import JobOptions
from conveyor.reconcile.approvals import ApprovalGates, Gates
from conveyor.reconcile.artifacts import ArtifactService
from conveyor.reconcile.deploys import DeployExecutor
from conveyor.reconcile.launch import JobLauncher
from conveyor.reconcile.locks import DeployLocks
from conveyor.reconcile.observed import ObservedJobs
from conveyor.reconcile.pipelines import RunPipelines
from conveyor.reconcile.siblings import PipelineRuns
from conveyor.reconcile.sources import SourceUnavailable
from conveyor.reconcile.views import Key


@dataclass(frozen=True)
class Gathered:
    facts: PassFacts
    gates: Gates  # what the run's Approvals decide (approvals.sync writes what follows)
    awaiting: bool  # an ended Job's pods were not readable yet: look again soon
    unread: bool  # an attempt's artifact records were not readable yet: look again


@dataclass(frozen=True)
class Unplannable:
    status: PipelineRunStatus  # the run's status saying why it cannot run


class FactGatherer:
    def __init__(
        self,
        *,
        options: JobOptions,
        io: Callable[..., Awaitable[Any]],
        pipelines: RunPipelines,
        siblings: PipelineRuns,
        observed: ObservedJobs,
        approvals: ApprovalGates,
        deploys: DeployExecutor,
        launcher: JobLauncher,
        locks: DeployLocks,
        artifacts: ArtifactService,
        note_built: Callable[[Key, PipelineSpec, PipelineRunStatus], None],
    ) -> None:
        self.options, self.io = options, io
        self.pipelines, self.siblings, self.observed = pipelines, siblings, observed
        self.approvals, self.deploys, self.launcher = approvals, deploys, launcher
        self.locks, self.artifacts, self.note_built = locks, artifacts, note_built

    async def gather(
        self,
        key: Key,
        run: PipelineRun,
        jobs: Iterable[dict[str, Any]],
        approvals: Iterable[dict[str, Any]],
        now: datetime.datetime,
    ) -> Gathered | Unplannable:
        namespace = key[0]
        if namespace == self.options.credentials_namespace:
            # Its Secrets are every Environment's credentials: no job may run beside them.
            message = (
                f"runs are refused in namespace {namespace}: it holds the Environments' "
                "credentials (the operator's --credentials-namespace)"
            )
            return Unplannable(invalid_pipeline_status(run, now, message))
        try:
            pipeline, missing = self.pipelines.spec(run, namespace)
        except ModelError as e:
            return Unplannable(invalid_pipeline_status(run, now, str(e)))
        if pipeline is None:
            return Unplannable(missing_pipeline_status(run, now, missing))
        allowed = self.siblings.may_start(namespace, run, pipeline)
        evaluation = run.status.evaluation
        if evaluation is None and allowed:
            # GitLab's rules, once per run, when it may start (queued runs read no git).
            try:
                evaluation = await self.pipelines.evaluate(namespace, pipeline, run)
            except SourceUnavailable as e:
                return Unplannable(failed_status(run, now, REASON_SOURCE_UNAVAILABLE, str(e)))
            run = with_evaluation(run, evaluation)
        if allowed and not run.status.finished:
            # From here on the run runs from this record, not from the live Pipeline.
            run = with_record(run, pipeline)
        run = with_sha(run, evaluation)
        try:
            excluded = evaluation.excluded if evaluation is not None else frozenset()
            pipeline = with_names_expanded(pipeline, run, self.options, excluded)
        except ModelError as e:
            if allowed:  # a queued run is judged when it may start, with its git facts
                return Unplannable(invalid_pipeline_status(run, now, str(e)))
        self.note_built(key, pipeline, run.status)
        # Build and scan jobs report in their pod's termination message, success or not.
        reporting = frozenset(
            j.name for j in pipeline.jobs if j.build is not None or j.scan is not None
        )
        observed, awaiting = await self.observed.of(key, jobs, now, reporting, run.metadata.uid)
        observed = [o for o in observed if is_attempt_of(pipeline, run, o)]
        gates = self.approvals.read(key, run, pipeline, approvals, now)
        # Before the deploys are counted: a deploy the status says runs, that this process
        # does not run (it restarted), runs again (server-side apply makes that safe).
        self.deploys.resume(key, run, pipeline, gates.gated, gates.approved_images)
        observed += self.deploys.observed(key) + refused(run.name, gates.refusals, gates.messages)
        observed += self.launcher.unplaced(key)
        records, unread = await self._artifact_records(run, pipeline, observed)
        facts = PassFacts(
            pipeline=pipeline,
            run=run,
            observed=observed,
            now=now,
            may_start=allowed,
            evaluation=evaluation,
            gated=gates.gated,
            approved=gates.approved,
            redundant=self.siblings.redundant(namespace, run, pipeline),
            claims=self.locks.claims(namespace, pipeline_locks(pipeline)),
            deploy_records={r.job: r.record() for r in self.deploys.results(key)},
            artifact_records=records,
            unreachable=self.deploys.unreachable(key),
        )
        return Gathered(facts, gates, awaiting, unread)

    async def _artifact_records(
        self, run: PipelineRun, pipeline: PipelineSpec, observed: Sequence[ObservedJob]
    ) -> tuple[dict[AttemptKey, KeptRecord], bool]:
        """What the finished attempts that keep artifacts kept (read from the store once per
        attempt), and whether one could not be read now."""
        if self.options.artifact_store is None:
            return {}, False
        latest: dict[str, ObservedJob] = {}
        for seen in observed:
            if seen.attempt >= getattr(latest.get(seen.pipeline_job), "attempt", 0):
                latest[seen.pipeline_job] = seen
        recorded = {(e.name, e.attempt) for e in run.status.jobs if e.artifacts is not None}
        records: dict[AttemptKey, KeptRecord] = {}
        unread = False
        for seen in latest.values():
            if (seen.pipeline_job, seen.attempt) in recorded or not recordable(pipeline, seen):
                continue
            kept = await self.io(self.artifacts.records, run, pipeline, seen)
            if kept is None:
                unread = True
            else:
                records[(seen.pipeline_job, seen.attempt)] = kept
        return records, unread
