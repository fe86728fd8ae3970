"""Approval gates, on top of the planner's manual jobs (pure).

A job is gated when its environment is protected (requires approvals), whether it deploys
natively, runs a script, or is a `when: manual` job (GitLab's manual deployment: the Approval is
its play). A manual job whose environment is not protected stays a plain manual job, played with
`conveyor play`. A gated job is a blocking manual job whose "play" is an approved Approval; a
rejected or expired Approval ends it Failed with that reason. The run waiting on a gate is in
phase WaitingForApproval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from typing import Any

from conveyor.api import pipelinerun as prs
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.model import FAILED, ObservedJob
from conveyor.engine.names import job_name

REASON_WAITING_FOR_APPROVAL = "WaitingForApproval"
REASON_APPROVAL_REJECTED = "ApprovalRejected"
REASON_APPROVAL_EXPIRED = "ApprovalExpired"


def environment_of(job: PipelineJob) -> str | None:
    return job.environment.name if job.environment is not None else None


def gated_jobs(pipeline: PipelineSpec, required_approvals: Mapping[str, int]) -> frozenset[str]:
    """Jobs that need an Approval: `required_approvals` maps environment names to the count
    their protection requires (0 or absent: unprotected)."""
    return frozenset(
        job.name
        for job in pipeline.jobs
        if (env := environment_of(job)) is not None and required_approvals.get(env, 0) > 0
    )


def with_gates(pipeline: PipelineSpec, gated: Set[str]) -> PipelineSpec:
    """The pipeline whose gated jobs wait, blocking, for their Approval (as manual jobs)."""
    if not gated:
        return pipeline
    jobs = tuple(
        dataclasses.replace(job, when="manual", start_in=None, allow_failure=False)
        if job.name in gated
        else job
        for job in pipeline.jobs
    )
    return dataclasses.replace(pipeline, jobs=jobs)


def with_approved(run: PipelineRun, approved: Set[str]) -> PipelineRun:
    """The run as the planner should see it: approved gates count as played."""
    if run.spec is None or not approved:
        return run
    play = tuple(dict.fromkeys((*run.spec.play, *sorted(approved))))
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, play=play))


def refused(run_name: str, refusals: Mapping[str, str]) -> list[ObservedJob]:
    """A rejected or expired gate as the planner sees it: the job's only attempt failed, with
    the reason (ApprovalRejected, ApprovalExpired), so the run fails and says why."""
    return [
        ObservedJob(job_name(run_name, job, 1), job, 1, FAILED, reason=reason)
        for job, reason in sorted(refusals.items())
    ]


def waiting_status(
    status: dict[str, Any], pipeline: PipelineSpec, gated: Set[str], run_name: str
) -> dict[str, Any]:
    """A run held only by unapproved gates is WaitingForApproval, with a message saying which
    jobs wait and how to vote. `pipeline` is the gated one (see `with_gates`)."""
    condition = next(
        (c for c in status.get("conditions") or () if c.get("type") == "Succeeded"), None
    )
    if condition is None or condition.get("reason") != prs.REASON_MANUAL_ACTION_REQUIRED:
        return status
    blocking = {job.name for job in pipeline.jobs if job.blocking_manual}
    holding = sorted(
        j["name"]
        for j in status.get("jobs") or ()
        if j.get("phase") == prs.MANUAL and j["name"] in blocking
    )
    if not holding or any(name not in gated for name in holding):
        return status  # a plain manual job holds the run too: `conveyor play` it first
    message = f"waiting for approval of {', '.join(holding)}: conveyor approve {run_name}"
    conditions = [
        {**c, "reason": REASON_WAITING_FOR_APPROVAL, "message": message[:2048]}
        if c.get("type") == "Succeeded"
        else c
        for c in status["conditions"]
    ]
    return {**status, "phase": prs.WAITING_FOR_APPROVAL, "conditions": conditions}
