"""Read what the planner needs from batch/v1 Jobs (and their pods) as the API returns them."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.api.codec import parse_time
from conveyor.engine import model
from conveyor.engine.attempts import REASON_ARTIFACTS_FAILED
from conveyor.engine.model import ObservedJob
from conveyor.kube.jobspec import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_JOB,
    CHECKOUT_CONTAINER,
    SCRIPT_CONTAINER,
    TRANSFER_CONTAINER,
)
from conveyor.kube.script import (
    ARTIFACTS_MESSAGE_PREFIX,
    TIMEOUT_EXIT_CODE,
    TIMEOUT_MESSAGE_PREFIX,
)

MESSAGE_MAX = 256
# A job failed by its artifacts: the upload after the script (the size limit, the store), or
# the download of its dependencies' artifacts before it.
REASON_ARTIFACTS_DOWNLOAD_FAILED = "ArtifactsDownloadFailed"


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or ():
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def _time(value: Any) -> Any:
    return parse_time(value) if isinstance(value, str) and value else None


def _terminated(pod: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get(key) or ():
        if status.get("name") == name:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                return terminated
    return None


def observe_job(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()
) -> ObservedJob | None:
    """The planner's view of one Job; None for Jobs Conveyor did not create."""
    metadata = job.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    pipeline_job = annotations.get(ANNOTATION_JOB)
    try:
        attempt = int(annotations.get(ANNOTATION_ATTEMPT, ""))
    except ValueError:
        return None
    if not pipeline_job or attempt < 1:
        return None
    status = job.get("status") or {}
    complete = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    for pod in pods:
        script = _terminated(pod, "containerStatuses", SCRIPT_CONTAINER)
        checkout = _terminated(pod, "initContainerStatuses", CHECKOUT_CONTAINER)
        transfer = _terminated(pod, "initContainerStatuses", TRANSFER_CONTAINER)
        if script is not None:
            exit_code = script.get("exitCode")
            message = script.get("message")
            if (
                exit_code == TIMEOUT_EXIT_CODE
                and isinstance(message, str)
                and message.startswith(TIMEOUT_MESSAGE_PREFIX)
            ):
                # The script stopped itself at the job's timeout (kube/script.py): a timeout
                # like the Job's own deadline, with the message GitLab's runner prints.
                exit_code, reason = None, model.DEADLINE_EXCEEDED
                message = message.removeprefix(TIMEOUT_MESSAGE_PREFIX)
            elif isinstance(message, str) and message.startswith(ARTIFACTS_MESSAGE_PREFIX):
                # The transfer binary failed the job after its script (an upload, the size
                # limit): say so rather than "ScriptFailure".
                reason = REASON_ARTIFACTS_FAILED
        elif checkout is not None and checkout.get("exitCode"):
            reason, message = "CheckoutFailed", checkout.get("message")
        elif transfer is not None and transfer.get("exitCode"):
            reason, message = REASON_ARTIFACTS_DOWNLOAD_FAILED, transfer.get("message")
    if complete is not None:
        state = model.SUCCEEDED
        completion = _time(status.get("completionTime")) or _time(
            complete.get("lastTransitionTime")
        )
    elif failed is not None:
        state = model.FAILED
        job_reason = failed.get("reason")
        if reason == model.DEADLINE_EXCEEDED:
            pass
        elif job_reason == model.DEADLINE_EXCEEDED or (reason is None and exit_code is not None):
            reason = job_reason
        elif reason is None:
            # No script exit code and no checkout failure: the pod failed some other way.
            reason = "PodFailed" if job_reason in (None, "BackoffLimitExceeded") else job_reason
        completion = _time(failed.get("lastTransitionTime"))
    else:
        state, completion = model.ACTIVE, None
    return ObservedJob(
        job_name=metadata.get("name", ""),
        pipeline_job=pipeline_job,
        attempt=attempt,
        state=state,
        # A Complete Job's script exited 0, whether or not its pod has been seen yet.
        exit_code=exit_code if isinstance(exit_code, int) else (0 if complete else None),
        reason=reason,
        # The Job's creation, not status.startTime: that arrives in a later watch event, and
        # the record would change (one more status write) for the same instant.
        start_time=_time(metadata.get("creationTimestamp")) or _time(status.get("startTime")),
        completion_time=completion,
        message=message.strip()[-MESSAGE_MAX:] if isinstance(message, str) else None,
    )


# A Job can be marked Failed before the watch has brought its pod's final state (exit code,
# termination message). Deciding then would apply retry and allowFailure rules without the exit
# code, and a finished run never changes again: wait this long for the pod before deciding.
POD_DETAILS_GRACE_SECONDS = 10.0
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def needs_pod_details(observed: ObservedJob) -> bool:
    """A failed Job whose script's exit code only its pod can tell (not a timeout)."""
    return (
        observed.state == model.FAILED
        and observed.exit_code is None
        and observed.reason != model.DEADLINE_EXCEEDED
    )


def needs_reported_result(observed: ObservedJob) -> bool:
    """A build or scan Job that succeeded: its pod's termination message is its result."""
    return observed.state == model.SUCCEEDED and observed.message is None


def awaiting_reported_result(
    observed: ObservedJob, pods: Sequence[Mapping[str, Any]], now: datetime.datetime
) -> bool:
    """True while a succeeded build's or scan's result is unknown only because its pod is not
    seen yet:
    a run that has ended does not change again, so it waits for it a moment."""
    return needs_reported_result(observed) and _pod_due(observed, pods, now)


def awaiting_pod_details(
    observed: ObservedJob, pods: Sequence[Mapping[str, Any]], now: datetime.datetime
) -> bool:
    """True while a failed Job's exit code is unknown only because its pod is not seen yet."""
    if observed.state != model.FAILED or observed.exit_code is not None:
        return False
    if observed.reason == model.DEADLINE_EXCEEDED or observed.reason == "CheckoutFailed":
        return False
    return _pod_due(observed, pods, now)


def _pod_due(
    observed: ObservedJob, pods: Sequence[Mapping[str, Any]], now: datetime.datetime
) -> bool:
    """The Job's pod has not been seen ended yet, and the Job ended only moments ago."""
    if any(_terminated(p, "containerStatuses", SCRIPT_CONTAINER) for p in pods):
        return False
    if observed.completion_time is None:
        return True
    return (now - observed.completion_time).total_seconds() < POD_DETAILS_GRACE_SECONDS


def pod_ended(pod: Mapping[str, Any]) -> bool:
    """Whether a pod's script or checkout has ended (its details will not change)."""
    return bool(
        _terminated(pod, "containerStatuses", SCRIPT_CONTAINER)
        or _terminated(pod, "initContainerStatuses", CHECKOUT_CONTAINER)
        or _terminated(pod, "initContainerStatuses", TRANSFER_CONTAINER)
    )


def as_active(observed: ObservedJob) -> ObservedJob:
    return dataclasses.replace(
        observed, state=model.ACTIVE, exit_code=None, reason=None, completion_time=None
    )


def compact_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps in memory of a Job: only what observe_job reads."""
    metadata = job.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = job.get("status") or {}
    return {
        "metadata": {
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            # Whose Job it is: only the run's own Jobs (owned by its UID) are its jobs.
            "ownerReferences": [
                {"uid": r.get("uid"), "controller": r.get("controller")}
                for r in metadata.get("ownerReferences") or ()
                if r.get("controller")
            ],
            "creationTimestamp": metadata.get("creationTimestamp"),
            "annotations": {
                k: annotations[k] for k in (ANNOTATION_JOB, ANNOTATION_ATTEMPT) if k in annotations
            },
        },
        "status": {
            "conditions": [
                {k: c[k] for k in ("type", "status", "reason", "lastTransitionTime") if k in c}
                for c in status.get("conditions") or ()
            ],
            **{k: status[k] for k in ("startTime", "completionTime", "active") if k in status},
        },
    }


def _compact_statuses(statuses: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for s in statuses or ():
        terminated = (s.get("state") or {}).get("terminated")
        entry: dict[str, Any] = {"name": s.get("name")}
        if terminated:
            entry["state"] = {
                "terminated": {
                    k: terminated[k] for k in ("exitCode", "message", "reason") if k in terminated
                }
            }
        out.append(entry)
    return out


def compact_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps in memory of a job pod: its Job and its containers' ends."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    labels = metadata.get("labels") or {}
    return {
        "metadata": {
            "name": metadata.get("name"),
            "labels": {k: labels[k] for k in JOB_NAME_LABELS if k in labels},
        },
        "status": {
            "phase": status.get("phase"),
            "containerStatuses": _compact_statuses(status.get("containerStatuses")),
            "initContainerStatuses": _compact_statuses(status.get("initContainerStatuses")),
        },
    }
