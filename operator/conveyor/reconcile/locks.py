"""Locks on environments and resource groups, as the operator keeps them: one deploy at a time
per environment (newest first: a newer run of the same Pipeline supersedes an older one), one
job at a time per resource group. The decision is `engine.pass_decision.arbitrate_locks`
(pure); this module gathers every run's claims for it, from the runs' status (the watch's
view), the Jobs that exist, and the deploys this process started that the watch has not shown
yet."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from conveyor.api import PipelineRun, parse_time
from conveyor.engine import Plan
from conveyor.engine.deploy_order import DEPLOYING, Claim, Lock, job_locks
from conveyor.kube.jobspec import ANNOTATION_JOB

# How long a deploy this process started counts as started without the watch showing it.
CREATED_OVERLAY_TTL = datetime.timedelta(seconds=30)
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

    def claims(self, namespace: str, locks: Iterable[Lock]) -> dict[Lock, list[Claim]]:
        """Every run's claims on each of `locks` (engine.pass_decision arbitrates with them)."""
        return {lock: self._claims(namespace, lock) for lock in locks}

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
        created = run.metadata.creation_timestamp or now
        for create in decided.create:
            claim = Claim(run.name, create.pipeline_job, created, DEPLOYING, run.pipeline_name)
            for lock in job_locks(decided.status.job(create.pipeline_job)):
                claims = self._deploying.setdefault((namespace, lock), {})
                claims.setdefault((run.name, create.pipeline_job), (claim, now))
