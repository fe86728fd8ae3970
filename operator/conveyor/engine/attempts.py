"""The latest attempt of each pipeline job, merged from observed Jobs and the previous status.

Observed Jobs are the truth while they exist; the previous status remembers attempts whose Jobs are
gone (deleted, garbage-collected) or were planned but are not visible yet.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.api import pipelinerun as prs
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import JobStatus, PipelineRun, PipelineRunStatus
from conveyor.engine import model as observed_states
from conveyor.engine.model import ObservedJob
from conveyor.engine.names import job_name as attempt_job_name

# Reasons written on failed jobs.
REASON_SCRIPT_FAILURE = "ScriptFailure"
# The script succeeded but its artifacts did not upload (over the size limit, the store): the
# transfer binary's termination message says which (kube/observe.py reads it).
REASON_ARTIFACTS_FAILED = "ArtifactsFailed"
REASON_TIMEOUT = "Timeout"
REASON_JOB_DELETED = "JobDeleted"
REASON_UNKNOWN_FAILURE = "UnknownFailure"

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
FINDINGS = re.compile(r"^(none|[A-Z]+=[0-9]+( [A-Z]+=[0-9]+)*)$")


def parse_findings(message: str | None) -> dict[str, int] | None:
    """A scan's summary, `CRITICAL=2 HIGH=5` or `none`, as counts; None if it is not one."""
    if not message or not FINDINGS.match(message):
        return None
    if message == "none":
        return {}
    return {k: int(v) for k, v in (part.split("=") for part in message.split())}


_TIMEOUT_KINDS = frozenset({"job_execution_timeout", "stuck_or_timeout_failure"})


@dataclass(frozen=True)
class Attempt:
    number: int
    job_name: str
    phase: str  # Pending (planned, not seen yet) | Running | Succeeded | Failed | Cancelled
    exit_code: int | None = None
    reason: str | None = None
    start_time: datetime.datetime | None = None
    completion_time: datetime.datetime | None = None
    observed_active: bool = False
    message: str | None = None  # why it failed, short (a deploy's error, a termination message)
    image_digest: str | None = None  # what a build pushed (its termination message)
    findings: Mapping[str, int] | None = None  # what a scan found (its termination message)


def failure_kinds(reason: str | None, exit_code: int | None) -> frozenset[str]:
    """GitLab `retry:when` kinds a failure matches."""
    if reason == REASON_TIMEOUT:
        return _TIMEOUT_KINDS
    if reason == REASON_JOB_DELETED:
        return frozenset({"api_failure"})
    if reason == REASON_SCRIPT_FAILURE and exit_code is not None:
        return frozenset({"script_failure"})
    return frozenset({"unknown_failure", "runner_system_failure"})


def should_retry(job: PipelineJob, attempt: Attempt) -> bool:
    retry = job.retry
    if retry is None or attempt.phase != prs.FAILED or attempt.number >= retry.max + 1:
        return False
    if "always" not in retry.when and not failure_kinds(attempt.reason, attempt.exit_code) & set(
        retry.when
    ):
        return False
    return retry.exit_codes is None or attempt.exit_code in retry.exit_codes


def _from_observed(job: ObservedJob) -> Attempt:
    if job.state == observed_states.ACTIVE:
        return Attempt(
            job.attempt, job.job_name, prs.RUNNING, start_time=job.start_time, observed_active=True
        )
    if job.state == observed_states.SUCCEEDED:
        return Attempt(
            job.attempt,
            job.job_name,
            prs.SUCCEEDED,
            exit_code=job.exit_code,
            start_time=job.start_time,
            completion_time=job.completion_time,
            image_digest=job.message if job.message and DIGEST.match(job.message) else None,
            findings=parse_findings(job.message),
        )
    if job.reason == observed_states.DEADLINE_EXCEEDED:
        reason = REASON_TIMEOUT
    elif job.reason == REASON_ARTIFACTS_FAILED:
        reason = job.reason
    elif job.exit_code is not None and job.exit_code != 0:
        reason = REASON_SCRIPT_FAILURE
    else:
        reason = job.reason or REASON_UNKNOWN_FAILURE
    return Attempt(
        job.attempt,
        job.job_name,
        prs.FAILED,
        exit_code=job.exit_code,
        reason=reason[:64],
        start_time=job.start_time,
        completion_time=job.completion_time,
        message=job.message,
        findings=parse_findings(job.message),
    )


def _from_record(record: JobStatus, now: datetime.datetime) -> Attempt:
    assert record.attempt is not None and record.job_name is not None
    if record.phase == prs.RUNNING:
        # We saw this Job running and it is gone: someone deleted it. Treat it as an API failure
        # (retryable), never re-run it silently.
        return Attempt(
            record.attempt,
            record.job_name,
            prs.FAILED,
            reason=REASON_JOB_DELETED,
            start_time=record.start_time,
            completion_time=now,
        )
    phase = record.phase if record.phase != prs.MANUAL else prs.PENDING
    return Attempt(
        record.attempt,
        record.job_name,
        phase,
        exit_code=record.exit_code,
        reason=record.reason,
        start_time=record.start_time,
        completion_time=record.completion_time,
        message=record.message,
        image_digest=record.image_digest,
        findings=record.findings,
    )


def latest_attempts(
    spec: PipelineSpec,
    previous: PipelineRunStatus,
    observed: Sequence[ObservedJob],
    now: datetime.datetime,
) -> dict[str, Attempt]:
    """Pipeline job name -> its latest attempt, for jobs that have had one."""
    newest: dict[str, ObservedJob] = {}
    for seen_job in observed:
        current = newest.get(seen_job.pipeline_job)
        if current is None or seen_job.attempt > current.attempt:
            newest[seen_job.pipeline_job] = seen_job
    out: dict[str, Attempt] = {}
    for job in spec.jobs:
        seen = newest.get(job.name)
        record = previous.job(job.name)
        if record is not None and (record.attempt is None or record.job_name is None):
            record = None
        if seen is not None and (record is None or seen.attempt >= (record.attempt or 0)):
            out[job.name] = _from_observed(seen)
        elif record is not None:
            out[job.name] = _from_record(record, now)
    return out


def is_attempt_of(pipeline: PipelineSpec, run: PipelineRun, seen: ObservedJob) -> bool:
    """Whether a Job the run owns is one the operator made for it: a job of the pipeline that
    runs as a Job (a native deploy never does), under the name of its attempt (or the name it
    had before names held the run's UID)."""
    job = pipeline.job(seen.pipeline_job)
    if job is None or job.deploy is not None:
        return False
    names = {
        attempt_job_name(run.name, job.name, seen.attempt, run.metadata.uid or ""),
        attempt_job_name(run.name, job.name, seen.attempt),
    }
    return seen.job_name in names
