"""The operator's in-memory view of the cluster (Kopf's indices) and what is read from it."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api import parse_time
from conveyor.engine import RunSummary
from conveyor.engine.deploy_order import Lock, locks_of
from conveyor.engine.environments import resolve_environment

Key = tuple[str, str]  # (namespace, name)
Lookup = Mapping[Any, Iterable[dict[str, Any]]]  # Kopf's indices: key -> stored values


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def first(lookup: Lookup, key: Any) -> dict[str, Any] | None:
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


# The indices hold objects as the watch brings them (JSON): what is read of them without
# parsing a whole object is read here.


def run_phase(body: Mapping[str, Any]) -> str | None:
    """A PipelineRun's phase."""
    phase: str | None = (body.get("status") or {}).get("phase")
    return phase


def run_uid(body: Mapping[str, Any]) -> str:
    """An object's UID ("" if it has none yet)."""
    uid: str = (body.get("metadata") or {}).get("uid") or ""
    return uid


def pipeline_ref(body: Mapping[str, Any]) -> str | None:
    """The name of the Pipeline a PipelineRun runs (None: an inline pipelineSpec)."""
    name: str | None = ((body.get("spec") or {}).get("pipelineRef") or {}).get("name")
    return name


def run_locks(body: Mapping[str, Any]) -> set[Lock]:
    """The locks a PipelineRun's jobs take (their environments and resource groups)."""
    return {lock for j in (body.get("status") or {}).get("jobs") or () for lock in locks_of(j)}


def approval_run(body: Mapping[str, Any]) -> str | None:
    """The run an Approval gates (its spec, which only the operator writes; never a label)."""
    run: str | None = (body.get("spec") or {}).get("pipelineRun")
    return run


def approval_decision(body: Mapping[str, Any]) -> str | None:
    """What an Approval's status says was decided (None: nothing yet)."""
    decision: str | None = (body.get("status") or {}).get("decision")
    return decision


def auto_cancels(pipeline: Mapping[str, Any]) -> bool:
    """Whether a Pipeline's newer runs make its older ones redundant (autoCancel)."""
    return bool((pipeline.get("spec") or {}).get("autoCancel") == "conservative")


def any_active(jobs: Iterable[Mapping[str, Any]]) -> bool:
    """Whether one of a run's compact Jobs (kube.observe.compact_job) has a pod running."""
    return any((j.get("status") or {}).get("active") for j in jobs)


def run_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What concurrency and history decisions need of a run."""
    metadata = body["metadata"]
    return {
        "name": metadata["name"],
        "creationTimestamp": metadata.get("creationTimestamp"),
        "phase": run_phase(body),
        "labels": metadata.get("labels") or {},
        "ref": ((body.get("spec") or {}).get("revision") or {}).get("ref"),
    }


def summaries(values: Iterable[Mapping[str, Any]]) -> list[RunSummary]:
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


def serving_environment(views: Views, namespace: str, name: str) -> Mapping[str, Any] | None:
    """The Environment that serves environment `name` in `namespace` (by name, slug or
    pattern), from the watch's view."""
    bodies = [
        body
        for (ns, _), values in list(views.environments.items())
        if ns == namespace
        for body in values
    ]
    return resolve_environment(name, bodies)
