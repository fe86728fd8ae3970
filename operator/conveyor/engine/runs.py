"""Policies over the runs of one pipeline: which may start (concurrency) and which to delete
(history). Pure: the caller lists the runs and applies the answer."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from conveyor.api import pipelinerun as prs
from conveyor.api.meta import LABEL_MANAGED_BY as MANAGED_BY

# Runs a GitOps tool manages are never deleted by history pruning: the tool would recreate them
# (or report drift), and deleting its objects is its decision.
GITOPS_MANAGERS = frozenset({"argocd", "Helm", "flux", "kustomize-controller"})
GITOPS_LABELS = ("argocd.argoproj.io/instance", "kustomize.toolkit.fluxcd.io/name")


@dataclass(frozen=True)
class RunSummary:
    name: str
    creation_timestamp: datetime.datetime
    phase: str | None = None  # None: no status yet (a new run)
    labels: Mapping[str, str] = field(default_factory=dict)
    ref: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in prs.FINISHED_PHASES

    @property
    def waiting(self) -> bool:
        return self.phase in (None, prs.PENDING)


def _age_key(run: RunSummary) -> tuple[datetime.datetime, str]:
    return (run.creation_timestamp, run.name)


def runs_allowed_to_start(runs: Sequence[RunSummary], limit: int | None) -> set[str]:
    """Names of waiting runs that may start now: oldest first, up to `limit` runs in flight."""
    waiting = sorted((r for r in runs if r.waiting), key=_age_key)
    if limit is None:
        return {r.name for r in waiting}
    in_flight = sum(1 for r in runs if not r.waiting and not r.finished)
    room = max(0, limit - in_flight)
    return {r.name for r in waiting[:room]}


def may_start(run_name: str, runs: Sequence[RunSummary], limit: int | None) -> bool:
    """Whether `run_name` may start; runs already started always may continue."""
    this = next((r for r in runs if r.name == run_name), None)
    if this is not None and not this.waiting:
        return True
    return run_name in runs_allowed_to_start(runs, limit)


def redundant(
    run: RunSummary,
    runs: Sequence[RunSummary],
    jobs: Sequence[prs.JobStatus],
    interruptible: Set[str],
) -> str | None:
    """GitLab's conservative auto-cancel: why `run` is redundant (a newer run of the same ref
    exists) and may be cancelled (none of its jobs that is not interruptible has started), or
    None. `jobs` are the run's status.jobs; `interruptible` the pipeline's interruptible jobs."""
    if run.finished or run.ref is None:
        return None
    newer = [
        r for r in runs if r.ref == run.ref and r.name != run.name and _age_key(r) > _age_key(run)
    ]
    if not newer:
        return None
    started = [
        j.name for j in jobs if j.attempt and j.phase != prs.SKIPPED and j.name not in interruptible
    ]
    if started:
        return None
    newest = max(newer, key=_age_key)
    return f"auto-cancelled: run {newest.name} of ref {run.ref} is newer"


def gitops_managed(labels: Mapping[str, str]) -> bool:
    if labels.get(MANAGED_BY) in GITOPS_MANAGERS:
        return True
    return any(label in labels for label in GITOPS_LABELS)


def runs_to_delete(runs: Sequence[RunSummary], keep: int) -> list[str]:
    """Finished runs beyond the newest `keep`, oldest first; GitOps-managed runs are left alone
    (they neither count towards `keep` nor get deleted)."""
    finished = sorted(
        (r for r in runs if r.finished and not gitops_managed(r.labels)),
        key=_age_key,
        reverse=True,
    )
    return [r.name for r in reversed(finished[max(0, keep) :])]
