"""Locks on environments and resource groups, as the operator keeps them: one deploy at a time
per environment (newest first: a newer run of the same Pipeline supersedes an older one), one
job at a time per resource group. The decision is `engine.deploy_order.arbitrate` (pure); this
module gathers every run's claims for it, from the runs' status (the watch's view), the Jobs
that exist, and the deploys this process started that the watch has not shown yet."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from conveyor.api import PipelineRun, parse_time
from conveyor.engine import ObservedJob, Plan
from conveyor.engine.deploy_order import (
    DEPLOYING,
    Arbitration,
    Claim,
    Lock,
    arbitrate,
    locks_of,
)
from conveyor.engine.gates import REASON_WAITING_FOR_APPROVAL
from conveyor.kube.jobspec import ANNOTATION_JOB

# How long a deploy this process started counts as started without the watch showing it.
CREATED_OVERLAY_TTL = datetime.timedelta(seconds=30)
NO_ARBITRATION = Arbitration({}, None)
Lookup = Mapping[Any, Iterable[Any]]  # Kopf's indices: key -> stored values


class DeployLocks:
    def __init__(self, clock: Callable[[], datetime.datetime]) -> None:
        self.clock = clock
        self._claim_entries: Lookup = {}  # (ns, lock) -> [[claim entry]] (engine.deploy_order)
        self._jobs: Lookup = {}  # (ns, run name) -> [compact Job]
        # Jobs with locks started that the watch has not shown started yet: (ns, lock) ->
        # {(run, job): (its claim, started at)}. Without it, two passes close together
        # could both see an environment free and deploy to it at once.
        self._deploying: dict[
            tuple[str, Lock], dict[tuple[str, str], tuple[Claim, datetime.datetime]]
        ] = {}

    def bind(self, claim_entries: Lookup, jobs: Lookup) -> None:
        self._claim_entries, self._jobs = claim_entries, jobs

    def arbitrate(
        self, namespace: str, run: PipelineRun, decided: Plan, observed: Iterable[ObservedJob]
    ) -> Arbitration:
        """May the run's deploys start (one per environment at a time, newest first; one job per
        resource group)?"""
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
        claims = {
            lock: self._claims(namespace, lock) for locks, _ in wanting.values() for lock in locks
        }
        created = run.metadata.creation_timestamp or self.clock()
        return arbitrate(run.name, created, wanting, claims, run.pipeline_name)

    def _claims(self, namespace: str, lock: Lock) -> list[Claim]:
        """Every run's claim on a lock: from the runs' status, the Jobs that exist, and the
        jobs this process started that the watch has not brought back yet."""
        # -> (claim, started); no claim while its state is unknown
        found: dict[tuple[str, str], tuple[Claim | None, bool]] = {}
        for entries in self._claim_entries.get((namespace, lock), ()):
            for entry in entries:
                run, job, state = entry["run"], entry["job"], entry.get("state")
                if state is None and self._job_exists(namespace, run, job):
                    state = DEPLOYING  # created, status not written yet (a restart between)
                created = parse_time(entry["created"])
                claim = (
                    Claim(run, job, created, state, entry.get("pipeline"))
                    if state is not None
                    else None
                )
                found[(run, job)] = (claim, bool(entry.get("started")))
        now = self.clock()
        mine = self._deploying.get((namespace, lock), {})
        for (run, job), (claim, at) in list(mine.items()):
            seen = found.get((run, job))
            if (seen is not None and seen[1]) or now - at > CREATED_OVERLAY_TTL:
                del mine[(run, job)]  # the watch has caught up (or never will: deleted)
            else:
                found[(run, job)] = (claim, True)
        return [claim for _, (claim, _) in sorted(found.items()) if claim is not None]

    def _job_exists(self, namespace: str, run: str, job: str) -> bool:
        return any(
            (j["metadata"].get("annotations") or {}).get(ANNOTATION_JOB) == job
            for j in self._jobs.get((namespace, run), ())
        )

    def claim(self, namespace: str, run: PipelineRun, decided: Plan) -> None:
        """The deploys this pass starts hold their locks from now, before the watch shows it."""
        now = self.clock()
        entries = {e["name"]: e for e in decided.status.get("jobs") or ()}
        created = run.metadata.creation_timestamp or now
        for create in decided.create:
            claim = Claim(run.name, create.pipeline_job, created, DEPLOYING, run.pipeline_name)
            for lock in locks_of(entries.get(create.pipeline_job) or {}):
                claims = self._deploying.setdefault((namespace, lock), {})
                claims.setdefault((run.name, create.pipeline_job), (claim, now))
