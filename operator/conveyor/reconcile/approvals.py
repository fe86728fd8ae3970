"""A run's approval gates as the operator keeps them: which of its jobs need an Approval, what
each Approval decides in this pass (`read`, pure over the watch's view), and the writes that
follow (`sync`: ask for the Approvals of gates reached, record decisions, close stale ones;
`close`, `sweep_once`). What votes decide is the `approvals` package's; this module only reads
and writes, through the few Kube calls of `ApprovalsKube`."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.api import API_VERSION, PipelineRun, parse_time, to_dict
from conveyor.api.approval import APPROVED, EXPIRED, FINAL_DECISIONS, REJECTED, Approval
from conveyor.api.approval import CANCELLED as APPROVAL_CANCELLED
from conveyor.api.conditions import find_condition
from conveyor.api.meta import ANNOTATION_INITIATOR
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import CONDITION_SUCCEEDED, MANUAL, JobStatus
from conveyor.approvals import (
    Decision,
    approval_manifest,
    approval_status,
    decide,
    pusher_of,
)
from conveyor.approvals.matching import Expected, Matched, gate_digest, match_approvals
from conveyor.approvals.retention import sweep
from conveyor.deploy.errors import DeployError, RenderError
from conveyor.engine.gates import (
    REASON_APPROVAL_EXPIRED,
    REASON_APPROVAL_REJECTED,
    REASON_DEPLOY_FAILED,
    gated_jobs,
)
from conveyor.engine.model import Event
from conveyor.kube.events import event_body
from conveyor.kube.patch import merge_patch
from conveyor.metrics import OperatorMetrics
from conveyor.reconcile.views import approval_decision
from conveyor.reconcile.workqueue import WorkQueue
from conveyor.store.plan import dependencies

log = logging.getLogger("conveyor.runs")

Key = tuple[str, str]  # (namespace, run name)
Body = dict[str, Any]
Io = Callable[..., Awaitable[Any]]  # runs a blocking Kube call off the event loop
# What a native deploy will apply, for its Approval to show (raises when it cannot be known).
Images = Callable[[str, PipelineRun, PipelineSpec, PipelineJob], Awaitable[tuple[str, ...]]]
Environments = Callable[[str, str], Mapping[str, Any] | None]  # (namespace, name) -> body


class ApprovalsKube(Protocol):
    """The Kube calls approvals need (kube.client.Kube has them; tests pass a fake)."""

    def create_approval(self, namespace: str, body: Body) -> Body | None: ...
    def patch_approval_status(self, namespace: str, name: str, patch: Body) -> Body: ...
    def delete_approval(self, namespace: str, name: str) -> None: ...
    def create_event(self, namespace: str, body: Body) -> None: ...


@dataclass(frozen=True)
class Gates:
    """What a run's gates decide in one pass."""

    gated: frozenset[str] = frozenset()  # jobs that need an Approval
    expected: Mapping[str, Expected] = field(default_factory=dict)  # what it must say, per job
    matched: Matched = field(default_factory=Matched)
    decisions: Mapping[str, tuple[Approval, Decision]] = field(default_factory=dict)  # current
    approved_images: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per approved
    refusals: Mapping[str, str] = field(default_factory=dict)  # job -> reason it fails with
    messages: Mapping[str, str] = field(default_factory=dict)  # job -> why, where known

    @property
    def approved(self) -> frozenset[str]:
        return frozenset(self.approved_images)


def gates_of(
    gated: frozenset[str],
    expected: Mapping[str, Expected],
    matched: Matched,
    now: datetime.datetime,
    unapprovable: Mapping[str, str],
) -> Gates:
    """The decisions of the run's current Approvals: approved gates release their job (held to
    the images approved), rejected and expired ones fail it, and a gate whose Approval cannot be
    asked (`unapprovable`: job -> why) fails closed."""
    decisions = {
        job: (approval, decide(approval, now)) for job, approval in matched.current.items()
    }
    approved_images: dict[str, tuple[str, ...]] = {}
    refusals: dict[str, str] = {}
    messages: dict[str, str] = {}
    for job, (approval, decision) in decisions.items():
        if decision.state == APPROVED:
            approved_images[job] = approval.spec.images if approval.spec is not None else ()
        elif decision.state == REJECTED:
            refusals[job] = REASON_APPROVAL_REJECTED
        elif decision.state == EXPIRED:
            refusals[job] = REASON_APPROVAL_EXPIRED
    for job, why in unapprovable.items():
        if job in gated and job not in decisions:
            # Fail closed: a deploy whose images cannot be shown cannot be approved.
            refusals[job], messages[job] = REASON_DEPLOY_FAILED, why
    return Gates(gated, expected, matched, decisions, approved_images, refusals, messages)


def _cancelled(approval: Approval, now: datetime.datetime, reason: str) -> Decision:
    return dataclasses.replace(decide(approval, now), state=APPROVAL_CANCELLED, reason=reason)


class ApprovalGates:
    """Reads and writes the Approvals of the runs one RunController reconciles."""

    def __init__(
        self,
        kube: ApprovalsKube,
        io: Io,
        environment: Environments,
        images: Images,
        queue: WorkQueue[Key],
        metrics: OperatorMetrics,
        instance: str,
        artifacts_recorded: bool = False,
    ) -> None:
        self.kube, self.io, self.environment, self.images = kube, io, environment, images
        # The operator has an artifact store: gated jobs' digests cover what they download.
        self.artifacts_recorded = artifacts_recorded
        self.queue, self.metrics, self.instance = queue, metrics, instance
        # Gated native deploys whose templates did not render when their Approval was due:
        # no approval can be asked, and the job fails saying why (in memory: a restart tries
        # to render again).
        self.unapprovable: dict[Key, dict[str, str]] = {}

    def forget(self, key: Key) -> None:
        self.unapprovable.pop(key, None)

    def read(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        bodies: Iterable[Mapping[str, Any]],
        now: datetime.datetime,
    ) -> Gates:
        """The run's gates, from its Approvals in the watch's view (`bodies`)."""
        gated = gated_jobs(pipeline, self._required(key[0], pipeline))
        expected = self._expected(key[0], run, pipeline, gated)
        sha = run.spec.revision.sha if run.spec is not None else None
        matched = match_approvals(bodies, run.metadata.uid or "", sha, expected)
        return gates_of(gated, expected, matched, now, self.unapprovable.get(key, {}))

    def _required(self, namespace: str, pipeline: PipelineSpec) -> dict[str, int]:
        """Environment name -> approvals its protection requires, for the pipeline's jobs."""
        required: dict[str, int] = {}
        for job in pipeline.jobs:
            if job.environment is None or job.environment.name in required:
                continue
            env = self.environment(namespace, job.environment.name)
            protection = ((env or {}).get("spec") or {}).get("protection") or {}
            required[job.environment.name] = int(protection.get("requiredApprovals") or 0)
        return required

    def _expected(
        self, namespace: str, run: PipelineRun, pipeline: PipelineSpec, gated: frozenset[str]
    ) -> dict[str, Expected]:
        """What each gated job's Approval must say to release it: its environment as expanded
        for this run, and the digest of what it would do now."""
        assert run.spec is not None
        expected: dict[str, Expected] = {}
        for name in sorted(gated):
            expected[name] = self.expected_of(namespace, run, pipeline, name, run.status.jobs)
        return expected

    def expected_of(
        self,
        namespace: str,
        run: PipelineRun,
        pipeline: PipelineSpec,
        name: str,
        jobs: Sequence[JobStatus],
    ) -> Expected:
        """What gated job `name`'s Approval must say, with the run's status.jobs `jobs`: the
        digest covers the artifacts it will download (`pending` while one is not recorded: no
        Approval is asked for, none matches)."""
        assert run.spec is not None
        environment = _environment_of(pipeline, name)
        env = self.environment(namespace, environment) or {}
        artifacts: dict[str, str] = {}
        pending = False
        if self.artifacts_recorded:
            job = pipeline.job(name)
            assert job is not None  # gated: one of the pipeline's jobs
            sources = dependencies(pipeline, job, jobs)
            pending = sources is None
            artifacts = {f"{s.job}#{s.attempt}": s.digest for s in sources or ()}
        digest = gate_digest(
            pipeline,
            name,
            run.spec.variables,
            environment,
            env.get("spec") or {},
            run.spec.revision.sha,
            artifacts,
        )
        if pending:
            return Expected(environment, "pending:" + digest, pending=True)  # matches nothing
        return Expected(environment, digest)

    async def sync(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        gates: Gates,
        jobs: Sequence[JobStatus],
        now: datetime.datetime,
    ) -> None:
        """Creates the Approval of each gate the run has reached (`jobs`: its status.jobs
        after this pass), records each Approval's decision in its status (an Event too, when it
        is decided), and closes the run's pending Approvals that were asked for what the job
        would no longer do."""
        assert run.spec is not None
        namespace = key[0]
        waiting = {j.name for j in jobs if j.phase == MANUAL} & gates.gated
        annotations = run.metadata.annotations
        for job_name in sorted(waiting - set(gates.decisions)):
            job = pipeline.job(job_name)
            assert job is not None and job.environment is not None
            env = self.environment(namespace, job.environment.name)
            if env is None:
                continue  # an unprotected manual deployment whose environment is not declared
            # What it would do with this pass's status (artifacts recorded in this pass
            # included): the Approval asked for is the one the next pass matches.
            expected = self.expected_of(namespace, run, pipeline, job_name, jobs)
            if expected.pending:
                continue  # an artifact it downloads is not recorded yet: asked for later
            try:
                images = await self._images(namespace, run, pipeline, job)
            except (RenderError, DeployError) as e:
                # Permanent: the commit's templates (or the job's sources) cannot show what
                # would deploy. Anything else (an API error) is retried with the pass.
                why = f"no approval can be asked: its templates do not render: {str(e)[:300]}"
                if self.unapprovable.setdefault(key, {}).get(job_name) != why:
                    self.unapprovable[key][job_name] = why
                    self.queue.add(key)
                continue
            manifest = approval_manifest(
                run.name,
                run.metadata.uid or "",
                job_name,
                env,
                {"ref": run.spec.revision.ref, "sha": run.spec.revision.sha},
                images,
                annotations.get(ANNOTATION_INITIATOR),
                now,
                digest=expected.digest,
                pusher=pusher_of(
                    annotations,
                    run.spec.pipeline_source,
                    run.status.evaluation.commit_author if run.status.evaluation else None,
                ),
                round=gates.matched.rounds.get(job_name, 0),
                environment=job.environment.name,
            )
            created = await self.io(self.kube.create_approval, namespace, manifest)
            if created is not None:
                self.queue.add_after(
                    key, (parse_time(manifest["spec"]["expiresAt"]) - now).total_seconds() + 1
                )
        for approval, decision in gates.decisions.values():
            await self.record_decision(namespace, approval, decision, now)
        for approval in gates.matched.stale:
            if approval.status.final:
                continue
            decision = _cancelled(
                approval,
                now,
                "what the job would do changed since this approval was asked for (the "
                "environment, the run's variables or its commit); a new approval is asked for",
            )
            await self.record_decision(namespace, approval, decision, now)

    async def _images(
        self, namespace: str, run: PipelineRun, pipeline: PipelineSpec, job: PipelineJob
    ) -> tuple[str, ...]:
        """What a native deploy will apply, for its Approval to show and hold it to (raises
        when the templates do not render: no approval can then be asked). A script deploy's
        images are not known before it runs: its Approval names the commit and digest."""
        if job.deploy is None or (job.environment and job.environment.action == "stop"):
            return ()  # a stop deploys nothing
        return await self.images(namespace, run, pipeline, job)

    async def record_decision(
        self, namespace: str, approval: Approval, decision: Decision, now: datetime.datetime
    ) -> None:
        """Writes what an Approval's votes decide into its status; a final decision is an Event."""
        new = approval_status(approval, decision, now)
        # The operator always records a decision: without one nothing is stored yet, and the
        # first write is the whole status, its empty lists too.
        old = to_dict(approval.status) if approval.status.decision is not None else {}
        patch = merge_patch(old, new)
        if not patch:
            return
        await self.io(self.kube.patch_approval_status, namespace, approval.name, patch)
        if decision.final and approval.status.decision != decision.state:
            environment = approval.spec.environment if approval.spec is not None else ""
            self.metrics.approval_decided(namespace, environment, decision.state)
            event = Event(
                "Normal" if decision.state == APPROVED else "Warning",
                f"Approval{decision.state}",
                f"{decision.reason}"[:1024],
            )
            about = {
                "apiVersion": API_VERSION,
                "kind": "Approval",
                "metadata": {
                    "name": approval.name,
                    "namespace": namespace,
                    "uid": approval.metadata.uid,
                },
            }
            await self.io(
                self.kube.create_event, namespace, event_body(about, event, now, self.instance)
            )

    async def close(
        self,
        key: Key,
        run: PipelineRun,
        bodies: Iterable[Mapping[str, Any]],
        now: datetime.datetime,
    ) -> None:
        """A run that ended (cancelled, superseded, failed) while a gate waited: its Approval
        is closed, Cancelled, so nobody is asked to vote on a deploy that will not happen."""
        for body in bodies:
            if approval_decision(body) in FINAL_DECISIONS:
                continue
            approval = Approval.from_dict(body)
            condition = find_condition(run.status.conditions, CONDITION_SUCCEEDED)
            why = f"{condition.reason}: {condition.message}" if condition else run.status.phase
            decision = _cancelled(approval, now, f"the run ended before a decision ({why})")
            await self.record_decision(key[0], approval, decision, now)

    async def sweep_once(
        self,
        runs: set[tuple[str, str, str]],
        bodies: Iterable[Mapping[str, Any]],
        now: datetime.datetime,
        retention: datetime.timedelta,
    ) -> None:
        """Approvals outlive their runs (they are the record of who approved what): those of
        deleted runs (`runs`: the (namespace, name, uid) that exist) are closed, and deleted
        once past the retention period."""
        found = sweep(bodies, runs, now, retention)
        for body in found.close:
            approval = Approval.from_dict(body)
            decision = _cancelled(approval, now, "its run was deleted before a decision")
            await self.record_decision(approval.metadata.namespace or "", approval, decision, now)
        for namespace, name in found.delete:
            log.info(
                "deleting approval %s/%s: its run is gone and it is past retention", namespace, name
            )
            await self.io(self.kube.delete_approval, namespace, name)


def _environment_of(pipeline: PipelineSpec, name: str) -> str:
    job = pipeline.job(name)
    assert job is not None and job.environment is not None  # gated: it has an environment
    return job.environment.name
