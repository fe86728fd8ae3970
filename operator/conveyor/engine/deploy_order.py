"""One deploy at a time per environment, newest first; one job at a time per resource group
(pure).

GitLab's `resource_group` with `process_mode: newest_first`, together with its "prevent outdated
deployment jobs" setting: jobs with an environment are deploys; across the runs of a namespace,
at most one deploys to an environment at a time, and an older run never deploys after a newer one.
A run whose deploy is still waiting (ready but held, or waiting for approval) when a newer run of
the same Pipeline waits for, is running or has finished a deploy to the same environment is
superseded (runs of other pipelines deploy other things there: they only take turns): it ends
Cancelled with reason Superseded, so an older commit never replaces a newer one and nobody is
asked to approve an outdated deploy.

A job with a `resourceGroup` (GitLab's keyword) holds that group while it runs: the group's
other jobs, in any run, wait (GitLab's default order, unordered; nobody is superseded).

Each run's claims come from its own status (`status.jobs[].environment`, `.resourceGroup`), so
every operator pass, and a restarted operator, sees the same picture.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api import pipelinerun as prs
from conveyor.engine.gates import REASON_WAITING_FOR_APPROVAL

WAITING = "Waiting"  # ready but held, or waiting for approval
DEPLOYING = "Deploying"
DEPLOYED = "Deployed"


@dataclass(frozen=True)
class Claim:
    """One run's deploy job on an environment, and where it stands."""

    run: str
    job: str
    created: datetime.datetime
    state: str  # WAITING, DEPLOYING or DEPLOYED
    pipeline: str | None = None  # the run's Pipeline; None for an inline pipelineSpec

    def newer_than(self, run: str, created: datetime.datetime) -> bool:
        # Creation time orders runs; the name breaks ties (runs created in the same second).
        return (self.created, self.run) > (created, run)


def claim_state(entry: Mapping[str, Any]) -> str | None:
    """The claim a `status.jobs` entry makes on its environment, or None (not yet ready,
    finished without deploying, skipped, cancelled, failed)."""
    phase, reason = entry.get("phase"), entry.get("reason")
    if phase == prs.RUNNING or (phase == prs.PENDING and entry.get("attempt")):
        return DEPLOYING  # a Job exists (or is being created) for it
    if phase == prs.SUCCEEDED:
        return DEPLOYED
    if phase == prs.PENDING and reason in (
        prs.REASON_WAITING_FOR_ENVIRONMENT,
        prs.REASON_WAITING_FOR_RESOURCE,
    ):
        return WAITING
    if phase == prs.MANUAL and reason == REASON_WAITING_FOR_APPROVAL:
        return WAITING
    return None


# What a job holds while it runs: its environment, and its resource group (GitLab keyword).
ENVIRONMENT = "environment"
RESOURCE_GROUP = "resource group"
Lock = tuple[str, str]  # (ENVIRONMENT or RESOURCE_GROUP, name)


def locks_for(environment: str | None, resource_group: str | None) -> tuple[Lock, ...]:
    """The locks a job with this environment and resource group takes."""
    out: list[Lock] = []
    if environment:
        out.append((ENVIRONMENT, environment))
    if resource_group:
        out.append((RESOURCE_GROUP, resource_group))
    return tuple(out)


def locks_of(entry: Mapping[str, Any]) -> tuple[Lock, ...]:
    """The locks of a stored `status.jobs` entry (the watch's indices keep runs as JSON)."""
    return locks_for(entry.get("environment"), entry.get("resourceGroup"))


def job_locks(entry: prs.JobStatus | None) -> tuple[Lock, ...]:
    """The locks of a `status.jobs` entry (none for no entry)."""
    return () if entry is None else locks_for(entry.environment, entry.resource_group)


@dataclass(frozen=True)
class Hold:
    """Why a ready job does not start yet: its reason (WaitingForEnvironment or
    WaitingForResource) and a sentence naming what it waits for."""

    reason: str
    message: str


@dataclass(frozen=True)
class Arbitration:
    """What the run's deploy jobs may do now."""

    held: Mapping[str, Hold]  # job -> why it waits (another run holds its lock)
    superseded: str | None  # why the run is overtaken, or None


def arbitrate(
    run: str,
    created: datetime.datetime,
    wanting: Mapping[str, tuple[tuple[Lock, ...], bool]],
    claims: Mapping[Lock, Iterable[Claim]],
    pipeline: str | None = None,
) -> Arbitration:
    """Decide for run `run` (created at `created`): `wanting` maps each of its jobs with locks
    that would start now or waits for approval to (its locks, ready: it would start now);
    `claims` maps locks to every run's claims on them (this run's own are ignored).

    An environment is newest first: a newer run of the same Pipeline (`pipeline`) supersedes
    this run; runs of other pipelines, and of inline specs, deploy other things there and only
    take turns. A resource group is GitLab's default, unordered: one job at a time, nobody
    superseded."""
    held: dict[str, Hold] = {}
    for job in sorted(wanting):
        locks, ready = wanting[job]
        for kind, name in locks:
            others = [c for c in claims.get((kind, name), ()) if c.run != run]
            newer = [
                c
                for c in others
                if pipeline is not None and c.pipeline == pipeline and c.newer_than(run, created)
            ]
            if kind == ENVIRONMENT and newer:
                latest = max(newer, key=lambda c: (c.created, c.run))
                doing = {WAITING: "waits to deploy", DEPLOYING: "deploys", DEPLOYED: "deployed"}
                return Arbitration(
                    {},
                    f"superseded: newer run {latest.run} {doing[latest.state]} to environment "
                    f"'{name}' (job '{latest.job}'); an older revision does not deploy after it",
                )
            busy = next((c for c in others if c.state == DEPLOYING), None)
            if ready and busy is not None and job not in held:
                if kind == ENVIRONMENT:
                    held[job] = Hold(
                        prs.REASON_WAITING_FOR_ENVIRONMENT,
                        f"environment '{name}' is busy: run {busy.run} deploys there "
                        f"(job '{busy.job}')",
                    )
                else:
                    held[job] = Hold(
                        prs.REASON_WAITING_FOR_RESOURCE,
                        f"resource group '{name}' is busy: run {busy.run} runs job "
                        f"'{busy.job}' in it",
                    )
    return Arbitration(held, None)


def claim_entries(body: Mapping[str, Any]) -> dict[Lock, list[dict[str, Any]]]:
    """A PipelineRun's claims by lock, as the operator keeps them in memory:
    `{"run", "job", "created", "state", "started", "pipeline"}` per job with an environment or a
    resource group. A finished run keeps only its deployed jobs (they make older waiting deploys
    outdated)."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    finished = status.get("phase") in prs.FINISHED_PHASES
    out: dict[Lock, list[dict[str, Any]]] = {}
    for entry in status.get("jobs") or ():
        locks = locks_of(entry)
        if not locks:
            continue
        state = claim_state(entry)
        if finished and state != DEPLOYED:
            continue
        claim = {
            "run": metadata.get("name"),
            "job": entry.get("name"),
            "created": metadata.get("creationTimestamp"),
            "state": state,
            "started": bool(entry.get("attempt")),
            "pipeline": ((body.get("spec") or {}).get("pipelineRef") or {}).get("name"),
        }
        for lock in locks:
            out.setdefault(lock, []).append(claim)
    return out
