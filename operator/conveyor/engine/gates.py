"""Approval gates, on top of the planner's manual jobs (pure).

A job is gated when its environment is protected (requires approvals), whether it deploys
natively, runs a script, or is a `when: manual` job (GitLab's manual deployment: the Approval is
its play). A manual job whose environment is not protected stays a plain manual job, played with
`conveyor play`. A gated job is a blocking manual job whose "play" is an approved Approval; a
rejected or expired Approval ends it Failed with that reason. The run waiting on a gate is in
phase WaitingForApproval. `conveyor play` (spec.play) never releases a gated job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.model import FAILED, ObservedJob
from conveyor.engine.names import job_name

REASON_WAITING_FOR_APPROVAL = "WaitingForApproval"
REASON_APPROVAL_REJECTED = "ApprovalRejected"
REASON_APPROVAL_EXPIRED = "ApprovalExpired"
# A gated deploy whose Approval cannot be asked (its templates do not render).
REASON_DEPLOY_FAILED = "DeployFailed"


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


def with_approved(run: PipelineRun, approved: Set[str], gated: Set[str]) -> PipelineRun:
    """The run as the planner should see it: approved gates count as played, and a gated job
    named in `spec.play` does not (only its Approval releases it)."""
    if run.spec is None:
        return run
    play = tuple(dict.fromkeys((*(p for p in run.spec.play if p not in gated), *sorted(approved))))
    if play == run.spec.play:
        return run
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, play=play))


def refused(
    run_name: str, refusals: Mapping[str, str], messages: Mapping[str, str] | None = None
) -> list[ObservedJob]:
    """A rejected, expired or impossible gate as the planner sees it: the job's only attempt
    failed, with the reason (ApprovalRejected, ApprovalExpired, DeployFailed) and the message,
    so the run fails and says why."""
    messages = messages or {}
    return [
        ObservedJob(
            job_name(run_name, job, 1), job, 1, FAILED, reason=reason, message=messages.get(job)
        )
        for job, reason in sorted(refusals.items())
    ]
