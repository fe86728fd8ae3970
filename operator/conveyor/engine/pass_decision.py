"""What one reconcile pass of a run does, decided once (pure).

The controller gathers the facts (the run as recorded and evaluated, its pipeline, the Jobs and
deploys it observed, its gates, every run's claims on the locks its jobs take, what its deploys
and artifacts recorded, the targets that do not answer) and `decide` returns the pass: the
run's status, the Jobs to create, delete and stop, the events, and whether a deploy is held.
Nothing here reads the cluster; the controller executes the result (`reconcile/runs.py`).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.api.codec import from_dict, to_dict
from conveyor.api.conditions import Condition
from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.artifacts import keeps_artifacts
from conveyor.engine.deploy_order import Arbitration, Claim, Lock, arbitrate, locks_of
from conveyor.engine.gates import REASON_WAITING_FOR_APPROVAL, with_approved
from conveyor.engine.model import FAILED, SUCCEEDED, Event, ObservedJob, Plan
from conveyor.engine.planner import plan
from conveyor.engine.targets import with_target_condition

NO_ARBITRATION = Arbitration({}, None)
FINISHED_JOB_PHASES = ("Succeeded", "Failed")
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
    deployments: Sequence[Mapping[str, Any]] = ()  # status.deployments as stored
    deploy_records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # job -> now
    stored_jobs: Sequence[Mapping[str, Any]] = ()  # status.jobs as stored (records kept there)
    artifact_records: Mapping[AttemptKey, Mapping[str, Any]] = field(default_factory=dict)
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
    status = with_deployments(decided.status, facts.deployments, facts.deploy_records)
    status = with_artifact_records(
        status, facts.pipeline, facts.stored_jobs, facts.artifact_records
    )
    status, noticed = with_targets(status, facts.unreachable, facts.now)
    decided = replace(decided, status=status, events=[*decided.events, *noticed])
    return PassDecision(decided, held=bool(arbitration.held))


def pipeline_locks(pipeline: PipelineSpec) -> frozenset[Lock]:
    """Every lock the pipeline's jobs may take (their environments and resource groups)."""
    return frozenset(
        lock
        for job in pipeline.jobs
        for lock in locks_of(
            {
                "environment": job.environment.name if job.environment is not None else None,
                "resourceGroup": job.resource_group,
            }
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
    entries = {e["name"]: e for e in decided.status.get("jobs") or ()}
    wanting: dict[str, tuple[tuple[Lock, ...], bool]] = {}
    for create in decided.create:
        locks = locks_of(entries.get(create.pipeline_job) or {})
        if locks and create.pipeline_job not in started:
            wanting[create.pipeline_job] = (locks, True)
    for entry in entries.values():
        if entry.get("reason") == REASON_WAITING_FOR_APPROVAL and locks_of(entry):
            wanting[entry["name"]] = (locks_of(entry), False)
    if not wanting:
        return NO_ARBITRATION
    wanted = {lock: claims.get(lock, ()) for locks, _ in wanting.values() for lock in locks}
    created = run.metadata.creation_timestamp or now
    return arbitrate(run.name, created, wanting, wanted, run.pipeline_name)


def with_deployments(
    status: dict[str, Any],
    stored: Sequence[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """What went where: the run's deploy records as stored, updated by this process's deploys."""
    records = {d["job"]: d for d in stored}
    records.update(results)
    if not records:
        return status
    return {**status, "deployments": [records[k] for k in sorted(records)]}


def with_artifact_records(
    status: dict[str, Any],
    pipeline: PipelineSpec,
    stored: Sequence[Mapping[str, Any]],
    read: Mapping[AttemptKey, Mapping[str, Any]],
) -> dict[str, Any]:
    """status.jobs[].artifacts and .tests of finished attempts that keep artifacts: as the
    stored status records them, else as read from the store in this pass."""
    recorded = {
        (e.get("name"), e.get("attempt")): {k: e[k] for k in ("artifacts", "tests") if k in e}
        for e in stored
        if "artifacts" in e
    }
    jobs = []
    changed = False
    for entry in status.get("jobs") or ():
        if needs_artifact_record(pipeline, entry):
            key = (entry["name"], entry["attempt"])
            fields = recorded.get(key) or read.get(key)
            if fields:
                entry = {**entry, **fields}
                changed = True
        jobs.append(entry)
    return {**status, "jobs": jobs} if changed else status


def needs_artifact_record(pipeline: PipelineSpec, entry: Mapping[str, Any]) -> bool:
    """Whether a status.jobs entry is a finished attempt that keeps artifacts and has no
    record yet."""
    job = pipeline.job(entry.get("name", ""))
    return (
        job is not None
        and keeps_artifacts(job)
        and entry.get("phase") in FINISHED_JOB_PHASES
        and bool(entry.get("attempt"))
        and bool(entry.get("jobName"))
        and "artifacts" not in entry
    )


def attempt_entry(seen: ObservedJob) -> dict[str, Any] | None:
    """A finished attempt as its status.jobs entry says what the store's records need of it
    (None while it runs)."""
    phase = {SUCCEEDED: "Succeeded", FAILED: "Failed"}.get(seen.state)
    if phase is None or not seen.job_name:
        return None
    entry: dict[str, Any] = {
        "name": seen.pipeline_job,
        "attempt": seen.attempt,
        "jobName": seen.job_name,
        "phase": phase,
    }
    if seen.completion_time is not None:
        entry["completionTime"] = seen.completion_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return entry


def with_targets(
    status: dict[str, Any], unreachable: Sequence[str], now: datetime.datetime
) -> tuple[dict[str, Any], list[Event]]:
    """The status with its TargetsReachable condition, and the Event of a change."""
    conditions = tuple(from_dict(Condition, c) for c in status.get("conditions") or ())
    updated, events = with_target_condition(conditions, unreachable, now)
    if updated == conditions:
        return status, events
    return {**status, "conditions": [to_dict(c) for c in updated]}, events
