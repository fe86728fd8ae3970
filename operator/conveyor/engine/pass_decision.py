"""What one reconcile pass of a run does, decided once (pure).

The controller gathers the facts (the run as recorded and evaluated, its pipeline, the Jobs and
deploys it observed, its gates, every run's claims on the locks its jobs take, what its deploys
and artifacts recorded, the targets that do not answer) and `decide` returns the pass: the
run's status, the Jobs to create, delete and stop, the events, and whether a deploy is held.
Nothing here reads the cluster; the controller executes the result (`reconcile/runs.py`).
Facts and result are typed: the status is parsed once when the run is read and serialised
once when it is written (`api.pipelinerun.dump_run_status`).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, replace

from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import (
    DeploymentRecord,
    JobStatus,
    PipelineRun,
    PipelineRunStatus,
)
from conveyor.engine.artifacts import KeptRecord, keeps_artifacts
from conveyor.engine.deploy_order import Arbitration, Claim, Lock, arbitrate, job_locks, locks_for
from conveyor.engine.gates import REASON_WAITING_FOR_APPROVAL, with_approved
from conveyor.engine.model import FAILED, SUCCEEDED, Event, ObservedJob, Plan
from conveyor.engine.planner import plan
from conveyor.engine.targets import with_target_condition

NO_ARBITRATION = Arbitration({}, None)
FINISHED_JOB_PHASES = ("Succeeded", "Failed")
FINISHED_STATES = (SUCCEEDED, FAILED)
AttemptKey = tuple[str, int]  # (pipeline job, attempt)


@dataclass(frozen=True)
class PassFacts:
    """What a pass knows of one run, gathered by the controller."""

    pipeline: PipelineSpec  # its names expanded for the run
    run: PipelineRun  # as recorded and evaluated, building its resolved commit
    observed: Sequence[ObservedJob]  # its Jobs, deploys, refused gates, unplaced attempts
    now: datetime.datetime
    may_start: bool = True  # the pipeline's concurrency lets it start
    evaluation: Evaluation | None = None
    gated: frozenset[str] = frozenset()  # jobs an Approval must release
    approved: Set[str] = frozenset()  # gated jobs their Approval released
    redundant: str | None = None  # why auto-cancel makes it redundant, if it does
    claims: Mapping[Lock, Sequence[Claim]] = field(default_factory=dict)  # every run's, per lock
    # What this process's deploys did, by job (the run's status.deployments has the rest).
    deploy_records: Mapping[str, DeploymentRecord] = field(default_factory=dict)
    # What finished attempts kept, read from the store in this pass (the status has the rest).
    artifact_records: Mapping[AttemptKey, KeptRecord] = field(default_factory=dict)
    unreachable: Sequence[str] = ()  # deploys retrying a target that does not answer


@dataclass(frozen=True)
class PassDecision:
    plan: Plan  # the status to write, Jobs to create/delete/stop, events, wake-up time
    held: bool = False  # a deploy waits for a lock another run holds


def decide(facts: PassFacts) -> PassDecision:
    """The pass: plan the run; when its deploys contend for locks, plan again with what the
    arbitration holds or supersedes; then the status gets its deploy records, artifact
    records and TargetsReachable condition."""
    planning = functools.partial(
        plan,
        facts.pipeline,
        with_approved(facts.run, facts.approved, facts.gated),
        facts.observed,
        facts.now,
        may_start=facts.may_start,
        evaluation=facts.evaluation,
        gated=facts.gated,
    )
    decided = planning(superseded=facts.redundant) if facts.redundant else planning()
    arbitration = arbitrate_locks(facts.run, decided, facts.observed, facts.claims, facts.now)
    if arbitration != NO_ARBITRATION:
        decided = planning(
            held=arbitration.held, superseded=arbitration.superseded or facts.redundant
        )
    stored = facts.run.status
    status = with_deployments(decided.status, stored.deployments, facts.deploy_records)
    status = with_artifact_records(status, facts.pipeline, stored.jobs, facts.artifact_records)
    status, noticed = with_targets(status, facts.unreachable, facts.now)
    decided = replace(decided, status=status, events=[*decided.events, *noticed])
    return PassDecision(decided, held=bool(arbitration.held))


def pipeline_locks(pipeline: PipelineSpec) -> frozenset[Lock]:
    """Every lock the pipeline's jobs may take (their environments and resource groups)."""
    return frozenset(
        lock
        for job in pipeline.jobs
        for lock in locks_for(
            job.environment.name if job.environment is not None else None, job.resource_group
        )
    )


def arbitrate_locks(
    run: PipelineRun,
    decided: Plan,
    observed: Sequence[ObservedJob],
    claims: Mapping[Lock, Sequence[Claim]],
    now: datetime.datetime,
) -> Arbitration:
    """May the run's deploys start (one per environment at a time, newest first; one job per
    resource group)? `claims`: every run's claims on the locks its jobs take."""
    started = {o.pipeline_job for o in observed}
    wanting: dict[str, tuple[tuple[Lock, ...], bool]] = {}
    for create in decided.create:
        locks = job_locks(decided.status.job(create.pipeline_job))
        if locks and create.pipeline_job not in started:
            wanting[create.pipeline_job] = (locks, True)
    for entry in decided.status.jobs:
        if entry.reason == REASON_WAITING_FOR_APPROVAL and job_locks(entry):
            wanting[entry.name] = (job_locks(entry), False)
    if not wanting:
        return NO_ARBITRATION
    wanted = {lock: claims.get(lock, ()) for locks, _ in wanting.values() for lock in locks}
    created = run.metadata.creation_timestamp or now
    return arbitrate(run.name, created, wanting, wanted, run.pipeline_name)


def with_deployments(
    status: PipelineRunStatus,
    stored: Sequence[DeploymentRecord],
    results: Mapping[str, DeploymentRecord],
) -> PipelineRunStatus:
    """What went where: the run's deploy records as stored, updated by this process's deploys."""
    records = {d.job: d for d in stored}
    records.update(results)
    if not records:
        return status
    return replace(status, deployments=tuple(records[k] for k in sorted(records)))


def with_artifact_records(
    status: PipelineRunStatus,
    pipeline: PipelineSpec,
    stored: Sequence[JobStatus],
    read: Mapping[AttemptKey, KeptRecord],
) -> PipelineRunStatus:
    """status.jobs[].artifacts and .tests of finished attempts that keep artifacts: as the
    stored status records them, else as read from the store in this pass."""
    recorded = {
        (e.name, e.attempt): KeptRecord(e.artifacts, e.tests)
        for e in stored
        if e.artifacts is not None
    }
    jobs = []
    changed = False
    for entry in status.jobs:
        if needs_artifact_record(pipeline, entry) and entry.attempt is not None:
            kept = recorded.get((entry.name, entry.attempt)) or read.get(
                (entry.name, entry.attempt)
            )
            if kept is not None:
                entry = replace(entry, artifacts=kept.artifacts, tests=kept.tests)
                changed = True
        jobs.append(entry)
    return replace(status, jobs=tuple(jobs)) if changed else status


def needs_artifact_record(pipeline: PipelineSpec, entry: JobStatus) -> bool:
    """Whether a status.jobs entry is a finished attempt that keeps artifacts and has no
    record yet."""
    return (
        keeps_record(pipeline, entry.name)
        and entry.phase in FINISHED_JOB_PHASES
        and bool(entry.attempt)
        and bool(entry.job_name)
        and entry.artifacts is None
    )


def keeps_record(pipeline: PipelineSpec, name: str) -> bool:
    """Whether pipeline job `name` keeps artifacts (its attempts get a record when they end)."""
    job = pipeline.job(name)
    return job is not None and keeps_artifacts(job)


def recordable(pipeline: PipelineSpec, seen: ObservedJob) -> bool:
    """Whether an observed attempt has ended and keeps artifacts: the store has its record."""
    return (
        seen.state in FINISHED_STATES
        and bool(seen.job_name)
        and keeps_record(pipeline, seen.pipeline_job)
    )


def with_targets(
    status: PipelineRunStatus, unreachable: Sequence[str], now: datetime.datetime
) -> tuple[PipelineRunStatus, list[Event]]:
    """The status with its TargetsReachable condition, and the Event of a change."""
    updated, events = with_target_condition(status.conditions, unreachable, now)
    if updated == status.conditions:
        return status, events
    return replace(status, conditions=updated), events
