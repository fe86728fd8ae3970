"""How a job is stopped without losing what it printed (pure).

Deleting a Job deletes its pods, and a pod's log goes with the pod. Instead, each pod of the Job
that still runs is given `spec.activeDeadlineSeconds: 1` (a pod field that may be set once and
then only lowered): the kubelet stops its containers with SIGTERM and the pod's grace period,
in which the script runs after_script with CI_JOB_STATUS=canceled (kube/script.py), and the pod
ends Failed, reason DeadlineExceeded, the way a cancelled GitLab job ends with its log kept.
With `backoffLimit: 0` the Job then fails and makes no other pod; Job and pod stay until the
run is deleted (history).
A Job with no pod yet has printed nothing: it is deleted, so it never starts one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STOP_DEADLINE_SECONDS = 1
_ENDED = frozenset({"Succeeded", "Failed"})


def pods_to_stop(pods: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The names of the Job's pods to stop (possibly none: they have ended or are being
    stopped), or None when the Job has no pod at all and is to be deleted instead."""
    if not pods:
        return None
    names = []
    for pod in pods:
        metadata, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if (pod.get("status") or {}).get("phase") in _ENDED or metadata.get("deletionTimestamp"):
            continue
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and deadline <= STOP_DEADLINE_SECONDS:
            continue  # stopped already; the kubelet is on it
        names.append(metadata["name"])
    return sorted(names)


def stop_patch() -> dict[str, Any]:
    return {"spec": {"activeDeadlineSeconds": STOP_DEADLINE_SECONDS}}
