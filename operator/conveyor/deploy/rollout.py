"""Whether a workload's rollout is done, failed, or still going, from the object alone. Pure.

The rules are kubectl's `rollout status` (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go),
plus the Deployment's Available condition, and `expected_generation` (the generation our apply
produced) so that a status from before our change never counts as done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

State = Literal["ready", "progressing", "failed"]
WORKLOAD_KINDS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet")})


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str  # CamelCase, for a condition reason
    message: str


def needs_rollout(api_version: str, kind: str) -> bool:
    return (api_version.partition("/")[0] if "/" in api_version else "", kind) in WORKLOAD_KINDS


def rollout_state(obj: Mapping[str, Any], expected_generation: int | None = None) -> Verdict:
    kind = obj.get("kind")
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    generation = max(meta.get("generation") or 0, expected_generation or 0)
    if (status.get("observedGeneration") or 0) < generation:
        return Verdict(
            "progressing",
            "Pending",
            f"waiting for the controller to observe generation {generation}",
        )
    if kind == "Deployment":
        return _deployment(obj.get("spec") or {}, status)
    if kind == "StatefulSet":
        return _statefulset(obj.get("spec") or {}, status)
    if kind == "DaemonSet":
        return _daemonset(obj.get("spec") or {}, status)
    return Verdict("ready", "Applied", "nothing to wait for")


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def _deployment(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Verdict:
    progressing = _condition(status, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Verdict(
            "failed",
            "ProgressDeadlineExceeded",
            progressing.get("message") or "the rollout exceeded its progress deadline",
        )
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < want:
        return Verdict("progressing", "Updating", f"{updated} of {want} new replicas updated")
    if total > updated:
        return Verdict(
            "progressing", "Terminating", f"{total - updated} old replicas pending termination"
        )
    if available < updated:
        return Verdict(
            "progressing", "Starting", f"{available} of {updated} updated replicas available"
        )
    if want > 0 and _condition(status, "Available").get("status") != "True":
        return Verdict("progressing", "Unavailable", "the Deployment is not Available yet")
    return Verdict("ready", "Available", f"{available} of {want} replicas available")


def _statefulset(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Verdict:
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        # OnDelete: pods change only when someone deletes them; there is no rollout to wait for.
        return Verdict("ready", "OnDelete", "updateStrategy OnDelete: not waiting")
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas") or 0
    if ready < want:
        return Verdict("progressing", "Starting", f"{ready} of {want} replicas ready")
    partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
    updated = status.get("updatedReplicas") or 0
    if partition:
        if updated < want - partition:
            return Verdict(
                "progressing",
                "Updating",
                f"{updated} of {want - partition} partitioned replicas updated",
            )
        return Verdict(
            "ready", "PartitionRolledOut", f"{updated} replicas updated (partition {partition})"
        )
    if status.get("updateRevision") != status.get("currentRevision") or updated < want:
        return Verdict("progressing", "Updating", f"{updated} of {want} replicas updated")
    return Verdict("ready", "Ready", f"{ready} of {want} replicas ready")


def _daemonset(spec: Mapping[str, Any], status: Mapping[str, Any]) -> Verdict:
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return Verdict("ready", "OnDelete", "updateStrategy OnDelete: not waiting")
    desired = status.get("desiredNumberScheduled") or 0
    updated = status.get("updatedNumberScheduled") or 0
    if updated < desired:
        return Verdict("progressing", "Updating", f"{updated} of {desired} pods updated")
    ready = status.get("numberReady") or 0
    available = status.get("numberAvailable") or 0
    if min(ready, available) < desired:
        return Verdict(
            "progressing", "Starting", f"{min(ready, available)} of {desired} pods ready"
        )
    return Verdict("ready", "Ready", f"{ready} of {desired} pods ready")
