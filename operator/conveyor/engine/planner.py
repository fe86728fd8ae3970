"""The level-triggered planner: from a run's spec, its previous status and its observed Jobs, decide
which Jobs should exist, which to delete, and what the status now says.

GitLab's semantics: stages run in order unless `needs` says otherwise; `when` decides from the
outcome of a job's predecessors; manual jobs wait to be played; allowed failures give warnings;
failed attempts are retried per `retry`. Everything is recomputed on each pass, so the same inputs
always give the same plan and applying a plan then planning again converges.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.api import pipelinerun as prs
from conveyor.api.codec import format_time
from conveyor.api.conditions import Condition, find_condition, set_condition
from conveyor.api.durations import format_duration, parse_duration
from conveyor.api.evaluation import Evaluation
from conveyor.api.meta import ANNOTATION_CANCELLED_BY
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import JobStatus, PipelineRun, PipelineRunStatus
from conveyor.engine.attempts import Attempt, latest_attempts, should_retry
from conveyor.engine.deploy_order import Hold
from conveyor.engine.evaluation import apply_evaluation
from conveyor.engine.gates import REASON_WAITING_FOR_APPROVAL, with_gates
from conveyor.engine.model import Event, JobToCreate, ObservedJob, Plan
from conveyor.engine.names import job_name
from conveyor.engine.validate import execution_order, job_needs, predecessors, validate_pipeline

# Why a job was skipped (JobStatus.reason).
SKIP_NEVER = "WhenNever"
SKIP_PREVIOUS_FAILED = "PreviousFailed"
SKIP_NO_FAILURE = "NoFailure"

_FINISHED = prs.JOB_FINISHED_PHASES


@dataclass
class _Pass:
    """Working state of one planning pass."""

    pipeline: PipelineSpec
    run_name: str
    played: frozenset[str]
    may_create: bool
    entries: dict[str, JobStatus] = field(default_factory=dict)
    tainted: dict[str, bool] = field(default_factory=dict)  # failed, or skipped for a failure
    creates: list[JobToCreate] = field(default_factory=list)
    retried: dict[str, Attempt] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()  # jobs the run's rules keep out
    gated: frozenset[str] = frozenset()  # jobs waiting for an Approval while manual
    held: Mapping[str, Hold] = field(default_factory=dict)  # job -> why it waits
    now: datetime.datetime | None = None
    run_uid: str = ""  # in Job names: a run made again under a name meets no earlier Job
    scheduled: Mapping[str, datetime.datetime] = field(default_factory=dict)  # delayed jobs
    retry: Mapping[str, int] = field(default_factory=dict)  # job -> failed attempt to retry


def plan(
    pipeline: PipelineSpec,
    run: PipelineRun,
    observed: Sequence[ObservedJob],
    now: datetime.datetime,
    *,
    may_start: bool = True,
    evaluation: Evaluation | None = None,
    gated: frozenset[str] = frozenset(),
    held: Mapping[str, Hold] = {},
    superseded: str | None = None,
) -> Plan:
    """Plan one reconcile pass of `run`, whose pipeline is `pipeline`.

    `observed` are the run's batch/v1 Jobs; `may_start` is False while the pipeline's concurrency
    limit makes a run that has not started yet wait. `evaluation` is the outcome of the
    pipeline's GitLab rules for this run (`conveyor.gitlab.rules.evaluate`): pass it on the
    first pass, and the plan's status stores it; later passes read it from `run.status`.
    Without one, every job runs as declared.

    `held` maps jobs that are ready but must wait for their environment or resource group
    (another run holds it) to why: they stay Pending, with the hold's reason. `superseded`
    says why a newer run has overtaken this one's deploy: the run stops, Cancelled, Superseded.
    """
    previous = run.status
    retries = requested_retries(run, gated)
    played_late = reopened(run)
    if previous.finished:
        if not played_late and not _reopens(run, retries):
            # Finished runs never change; only stray Jobs (a stop that failed) are stopped.
            return Plan(stop=_active(observed), status=previous)
        # GitLab: a manual job of a finished pipeline can still be played, a failed job
        # retried (`conveyor retry`); the pipeline runs again and ends with that job's result.
        previous = dataclasses.replace(
            previous, phase=prs.RUNNING, completion_time=None, duration=None
        )
        retried_late = sorted(retries) if _reopens(run, retries) else []
    else:
        retried_late = []
    if evaluation is None:
        evaluation = previous.evaluation
    elif evaluation != previous.evaluation:
        previous = dataclasses.replace(previous, evaluation=evaluation)
    if evaluation is not None and evaluation.skipped:
        return _skipped_run(run, previous, observed, evaluation, now)
    excluded = evaluation.excluded if evaluation is not None else frozenset()
    # A scan of a build the rules removed has nothing to scan: it is left out with it.
    excluded |= {j.name for j in pipeline.jobs if j.scan is not None and j.scan.build in excluded}
    # Gates last: an environment's protection wins over what a rule says of `when`.
    pipeline = with_gates(apply_evaluation(pipeline, evaluation), gated)
    spec = run.spec
    problems = (
        validate_pipeline(pipeline, excluded) if spec is not None else ["PipelineRun has no spec"]
    )
    if problems or spec is None:
        message = "invalid pipeline: " + "; ".join(problems)
        status = _status(run, previous, (), prs.FAILED, prs.REASON_INVALID_PIPELINE, message, now)
        return Plan(
            delete=_active(observed),
            status=status,
            events=[Event("Warning", prs.REASON_INVALID_PIPELINE, message[:1024])],
        )

    attempts = latest_attempts(pipeline, previous, observed, now)
    run_timeout = pipeline.timeout_seconds()
    timed_out = (
        run_timeout is not None
        and previous.start_time is not None
        and (now - previous.start_time).total_seconds() >= run_timeout
    )
    stopping = spec.cancelled or timed_out or superseded is not None
    started = previous.start_time is not None or bool(attempts)
    work = _Pass(
        pipeline=pipeline,
        run_name=run.name,
        run_uid=run.metadata.uid or "",
        played=frozenset(spec.play),
        may_create=not stopping and (started or may_start),
        excluded=excluded,
        gated=gated,
        held=held,
        now=now,
        scheduled={j.name: j.scheduled_at for j in previous.jobs if j.scheduled_at is not None},
        retry=retries,
    )
    for job in execution_order(pipeline):
        _decide(work, job, attempts.get(job.name))

    stop: list[str] = []
    if stopping:
        if spec.cancelled:
            reason = prs.REASON_CANCELLED
        elif timed_out:
            reason = prs.REASON_TIMEOUT
        else:
            reason = prs.REASON_SUPERSEDED
        work.creates.clear()
        for name, entry in list(work.entries.items()):
            if entry.phase not in _FINISHED:
                work.entries[name] = dataclasses.replace(entry, phase=prs.CANCELLED, reason=reason)
        # Stopped, not deleted: what the jobs printed is kept (GitLab keeps a cancelled
        # job's log). A planned Job not seen yet is stopped too (it is deleted if podless).
        stop = sorted(
            {o.job_name for o in observed if o.state == "active"}
            | {a.job_name for a in attempts.values() if a.phase == prs.PENDING}
        )
    jobs = tuple(work.entries[j.name] for j in pipeline.jobs)
    holders = _manual_holders(work)
    delayed = [
        (j.name, j.scheduled_at)
        for j in jobs
        if j.reason == prs.REASON_DELAYED and j.scheduled_at is not None
    ]

    if spec.cancelled:
        phase, reason, message = prs.CANCELLED, prs.REASON_CANCELLED, cancelled_message(run)
    elif timed_out:
        phase, reason = prs.FAILED, prs.REASON_TIMEOUT
        message = f"the run exceeded its timeout of {pipeline.timeout}"
    elif superseded is not None:
        phase, reason, message = prs.CANCELLED, prs.REASON_SUPERSEDED, superseded
    elif _all_done(jobs, holders):
        phase, reason, message = _outcome(work, jobs)
    elif not started and not work.creates and not may_start:
        phase, reason = prs.PENDING, prs.REASON_WAITING_FOR_CONCURRENCY
        message = "waiting: the pipeline's concurrency limit is reached"
    else:
        phase, reason, message = prs.RUNNING, prs.REASON_RUNNING, "the run is in progress"
        busy = work.creates or any(
            j.phase in (prs.PENDING, prs.RUNNING) and j.attempt for j in jobs
        )
        waiting = [j for j in jobs if j.name in held and j.reason == held[j.name].reason]
        if holders and not busy:
            if all(h in work.gated for h in holders):
                # Only approvals hold the run: say so, and never invite a play (it would not
                # release a gated job).
                phase, reason = prs.WAITING_FOR_APPROVAL, REASON_WAITING_FOR_APPROVAL
                message = (
                    f"waiting for approval of {', '.join(sorted(holders))}: "
                    f"conveyor approve {run.name}"
                )
            else:
                reason = prs.REASON_MANUAL_ACTION_REQUIRED
                message = "; ".join(
                    f"job '{h}' waits for approval: conveyor approve {run.name}"
                    if h in work.gated
                    else f"job '{h}' is waiting to be played: conveyor play {run.name} {h}"
                    for h in holders[:3]
                )
        elif waiting and not busy:
            reason = held[waiting[0].name].reason
            message = "; ".join(
                f"job '{j.name}' waits: {held[j.name].message}" for j in waiting[:3]
            )
        elif delayed and not busy:
            reason = prs.REASON_DELAYED
            message = "; ".join(
                f"job '{name}' starts at {format_time(at)} "
                f"(or now: conveyor play {run.name} {name})"
                for name, at in delayed[:3]
            )
    stage = _current_stage(pipeline, jobs, holders)
    status = _status(run, previous, jobs, phase, reason, message, now, current_stage=stage)
    events = _job_events(previous, jobs, work.retried, work.retry)
    events += _run_events(previous, status, message)
    if played_late:
        names = ", ".join(played_late)
        events.insert(0, Event("Normal", "RunReopened", f"{names} played after the run ended"))
    if retried_late:
        events.insert(0, Event("Normal", "RunRetried", _names("retried", retried_late)))
    return Plan(
        create=list(work.creates),
        stop=stop,
        status=status,
        events=events,
        wake_at=min(at for _, at in delayed) if delayed and phase == prs.RUNNING else None,
    )


def reopened(run: PipelineRun) -> list[str]:
    """Manual jobs of a finished run that were played since it ended (they reopen it)."""
    if run.spec is None or not run.status.finished:
        return []
    return [
        name
        for name in run.spec.play
        if (entry := run.status.job(name)) is not None and entry.phase == prs.MANUAL
    ]


# Who set spec.status: Cancelled, stamped by the API server (deploy/30-admission.yaml).


def cancelled_message(run: PipelineRun) -> str:
    who = run.metadata.annotations.get(ANNOTATION_CANCELLED_BY)
    return f"the run was cancelled by {who}" if who else "the run was cancelled"


def requested_retries(run: PipelineRun, gated: frozenset[str] = frozenset()) -> dict[str, int]:
    """Job -> the failed attempt `spec.retry` asks to follow with a new one (the latest request
    per job). Never a gated job: a new attempt would deploy on the old attempt's Approval, so
    a gated job is retried only in a new run, whose deploy asks for a new approval."""
    if run.spec is None or run.spec.cancelled:
        return {}
    out: dict[str, int] = {}
    for request in run.spec.retry:
        if request.job not in gated:
            out[request.job] = max(out.get(request.job, 0), request.attempt)
    return out


def retry_due(run: PipelineRun, gated: frozenset[str] = frozenset()) -> bool:
    """Whether a finished run runs again: a retry names a job's latest attempt, which failed."""
    return run.status.finished and _reopens(run, requested_retries(run, gated))


def _reopens(run: PipelineRun, retries: Mapping[str, int]) -> bool:
    for name, attempt in retries.items():
        entry = run.status.job(name)
        if entry is not None and entry.phase == prs.FAILED and entry.attempt == attempt:
            return True
    return False


def _skipped_run(
    run: PipelineRun,
    previous: PipelineRunStatus,
    observed: Sequence[ObservedJob],
    evaluation: Evaluation,
    now: datetime.datetime,
) -> Plan:
    """A run that [skip ci] or workflow:rules skip: no Job is created, the run ends Skipped."""
    message = f"the run is skipped: {evaluation.reason or 'rules'}"
    status = _status(run, previous, (), prs.SKIPPED, prs.REASON_SKIPPED, message, now)
    events = _run_events(previous, status, message)
    return Plan(delete=_active(observed), status=status, events=events)


def _decide(work: _Pass, job: PipelineJob, attempt: Attempt | None) -> None:
    """Set the status entry (and maybe a Job to create) of one pipeline job."""
    environment = job.environment.name if job.environment is not None else None
    entry = JobStatus(
        name=job.name,
        stage=job.stage,
        phase=prs.PENDING,
        environment=environment,
        resource_group=job.resource_group,
    )
    tainted = False
    if job.name in work.excluded:
        # Not part of the run (GitLab would not create the job at all).
        work.entries[job.name] = dataclasses.replace(
            entry, phase=prs.SKIPPED, reason=prs.REASON_EXCLUDED_BY_RULES
        )
        work.tainted[job.name] = False
        return
    if attempt is not None:
        requested = attempt.phase == prs.FAILED and work.retry.get(job.name) == attempt.number
        if (requested or should_retry(job, attempt)) and work.may_create:
            number = attempt.number + 1
            name = job_name(work.run_name, job.name, number, work.run_uid)
            work.creates.append(JobToCreate(job.name, number, name))
            work.retried[job.name] = attempt
            entry = dataclasses.replace(entry, attempt=number, job_name=name)
        else:
            entry = _entry_from_attempt(entry, attempt, job)
            if attempt.phase == prs.PENDING and work.may_create:
                # Planned before but not visible yet: ask again ("already exists" is success).
                work.creates.append(JobToCreate(job.name, attempt.number, attempt.job_name))
            if attempt.phase == prs.FAILED:
                allowed = job.failure_allowed(attempt.exit_code)
                entry = dataclasses.replace(entry, allowed_failure=True if allowed else None)
                tainted = not allowed
        work.entries[job.name] = entry
        work.tainted[job.name] = tainted
        return

    preds = predecessors(work.pipeline, job)
    for pred in preds:
        pred_entry = work.entries[pred]
        if pred_entry.phase in _FINISHED:
            continue
        pred_job = work.pipeline.job(pred)
        # An unplayed optional manual job does not hold later stages back, but it does hold a
        # job that `needs` it (GitLab's DAG rule).
        if (
            pred_entry.phase == prs.MANUAL
            and job_needs(work.pipeline, job) is None
            and pred_job is not None
            and not pred_job.blocking_manual
        ):
            continue
        work.entries[job.name] = entry  # waiting
        work.tainted[job.name] = False
        return

    failed = any(work.tainted[p] for p in preds)
    skip_reason: str | None = None
    runs = False
    if job.when == "never":
        skip_reason = SKIP_NEVER
    elif job.when in ("on_success", "manual", "delayed"):
        if failed:
            skip_reason, tainted = SKIP_PREVIOUS_FAILED, True
        elif job.when == "manual" and job.name not in work.played:
            # A gated job says what it waits for: other runs' deploys see it (newest first).
            why = REASON_WAITING_FOR_APPROVAL if job.name in work.gated else None
            entry = dataclasses.replace(entry, phase=prs.MANUAL, reason=why)
        elif job.when == "delayed" and job.name not in work.played and work.may_create:
            # The delay counts from the pass that first found the job ready; status keeps it.
            assert work.now is not None and job.start_in is not None
            at = work.scheduled.get(job.name) or work.now + datetime.timedelta(
                seconds=parse_duration(job.start_in)
            )
            if work.now < at:
                entry = dataclasses.replace(entry, reason=prs.REASON_DELAYED, scheduled_at=at)
            else:
                runs = True
        else:
            runs = True
    elif job.when == "on_failure":
        runs = failed
        skip_reason = None if failed else SKIP_NO_FAILURE
    else:  # always
        runs = True
    if skip_reason is not None:
        entry = dataclasses.replace(entry, phase=prs.SKIPPED, reason=skip_reason)
    elif runs and job.name in work.held:
        entry = dataclasses.replace(entry, reason=work.held[job.name].reason)
    elif runs and work.may_create:
        name = job_name(work.run_name, job.name, 1, work.run_uid)
        work.creates.append(JobToCreate(job.name, 1, name))
        entry = dataclasses.replace(entry, attempt=1, job_name=name)
    work.entries[job.name] = entry
    work.tainted[job.name] = tainted


def _entry_from_attempt(entry: JobStatus, attempt: Attempt, job: PipelineJob) -> JobStatus:
    ended = attempt.phase in (prs.SUCCEEDED, prs.FAILED)
    return dataclasses.replace(
        entry,
        phase=attempt.phase,
        attempt=attempt.number,
        job_name=attempt.job_name,
        start_time=attempt.start_time,
        completion_time=attempt.completion_time if attempt.phase in _FINISHED else None,
        exit_code=attempt.exit_code if attempt.phase in _FINISHED else None,
        reason=attempt.reason if attempt.phase == prs.FAILED else None,
        message=attempt.message[:512] if attempt.phase == prs.FAILED and attempt.message else None,
        image_digest=(
            attempt.image_digest
            if job.build is not None and attempt.phase == prs.SUCCEEDED
            else None
        ),
        findings=attempt.findings if job.scan is not None and ended else None,
    )


def _manual_holders(work: _Pass) -> list[str]:
    """Unplayed manual jobs the run is waiting for: blocking ones, and those a waiting job needs."""
    holders: list[str] = []
    for job in work.pipeline.jobs:
        entry = work.entries[job.name]
        if entry.phase == prs.MANUAL and job.blocking_manual:
            holders.append(job.name)
    for job in work.pipeline.jobs:
        entry = work.entries[job.name]
        needs = job_needs(work.pipeline, job)
        if entry.phase == prs.PENDING and entry.attempt is None and needs:
            for need in needs:
                if work.entries[need].phase == prs.MANUAL and need not in holders:
                    holders.append(need)
    return holders


def _all_done(jobs: Sequence[JobStatus], holders: Sequence[str]) -> bool:
    return all(
        j.phase in _FINISHED or (j.phase == prs.MANUAL and j.name not in holders) for j in jobs
    )


def _outcome(work: _Pass, jobs: Sequence[JobStatus]) -> tuple[str, str, str]:
    failed = [j for j in jobs if j.phase == prs.FAILED and work.tainted[j.name]]
    if failed:
        message = _names("failed", [j.name for j in failed])
        if failed[0].message:  # the first failure's own words, so the run says what went wrong
            message += f": {failed[0].message}"
        return prs.FAILED, prs.REASON_FAILED, message
    if work.excluded and all(j.name in work.excluded for j in jobs):
        return prs.SKIPPED, prs.REASON_SKIPPED, "the rules excluded every job of the pipeline"
    if all(j.phase == prs.SKIPPED for j in jobs):
        return prs.SKIPPED, prs.REASON_SKIPPED, "no job of the pipeline had to run"
    warned = [j.name for j in jobs if j.allowed_failure]
    if warned:
        message = _names("failed (failure allowed)", warned)
        return prs.SUCCEEDED, prs.REASON_SUCCEEDED_WITH_WARNINGS, message
    return prs.SUCCEEDED, prs.REASON_SUCCEEDED, "all jobs succeeded"


def _names(what: str, names: Sequence[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    noun = "job" if len(names) == 1 else "jobs"
    return f"{noun} {shown}{more} {what}"


def _status(
    run: PipelineRun,
    previous: PipelineRunStatus,
    jobs: tuple[JobStatus, ...],
    phase: str,
    reason: str,
    message: str,
    now: datetime.datetime,
    *,
    current_stage: str | None = None,
) -> PipelineRunStatus:
    finished = phase in prs.FINISHED_PHASES
    start = previous.start_time
    if start is None and phase in (prs.RUNNING, prs.WAITING_FOR_APPROVAL):
        start = now
    completion = now if finished else None
    duration = format_duration((now - (start or now)).total_seconds()) if finished else None
    if finished:
        cond_status = (
            "True"
            if reason
            in (prs.REASON_SUCCEEDED, prs.REASON_SUCCEEDED_WITH_WARNINGS, prs.REASON_SKIPPED)
            else "False"
        )
    else:
        cond_status = "Unknown"
    generation = run.metadata.generation
    condition = Condition(
        type=prs.CONDITION_SUCCEEDED,
        status=cond_status,
        reason=reason,
        message=message[:2048],
        observed_generation=generation,
    )
    sha = run.spec.revision.sha if run.spec is not None else None
    return PipelineRunStatus(
        phase=phase,
        conditions=set_condition(previous.conditions, condition, now),
        pipeline_name=run.pipeline_name,
        short_sha=sha[:8] if sha else None,
        current_stage=None if finished else current_stage,
        start_time=start,
        completion_time=completion,
        duration=duration,
        jobs=jobs,
        observed_generation=generation,
        evaluation=previous.evaluation,
        pipeline_spec=previous.pipeline_spec,
        variables=previous.variables,
    )


def _current_stage(
    pipeline: PipelineSpec, jobs: Sequence[JobStatus], holders: Sequence[str]
) -> str | None:
    """The lowest stage that still has unfinished work."""
    open_stages = {
        j.stage for j in jobs if j.phase in (prs.PENDING, prs.RUNNING) or j.name in holders
    }
    return next((s for s in pipeline.stages if s in open_stages), None)


def _active(observed: Sequence[ObservedJob]) -> list[str]:
    return sorted(o.job_name for o in observed if o.state == "active")


def _job_events(
    previous: PipelineRunStatus,
    jobs: Sequence[JobStatus],
    retried: dict[str, Attempt],
    requested: Mapping[str, int],
) -> list[Event]:
    """Events of what changed since `previous` (the status last written): a retry is told by
    the pass that writes its new attempt, which may be a pass after the one that planned it."""
    events: list[Event] = []
    for entry in jobs:
        before = previous.job(entry.name)
        if before is not None and (before.phase, before.attempt) == (entry.phase, entry.attempt):
            continue
        failed = retried.get(entry.name)
        after = failed.number if failed is not None else None
        if after is None and before is not None and before.phase == prs.FAILED:
            newer = (entry.attempt or 0) > (before.attempt or 0)
            after = before.attempt if newer else None
        if after is not None and requested.get(entry.name) == after:
            events.append(
                Event(
                    "Normal",
                    "JobRetried",
                    f"job '{entry.name}' is retried on request after its attempt "
                    f"{after} failed; attempt {entry.attempt} {entry.phase.lower()}",
                )
            )
        elif failed is not None:
            detail = failed.reason or "failure"
            if failed.exit_code is not None:
                detail += f", exit code {failed.exit_code}"
            events.append(
                Event(
                    "Warning",
                    "JobRetrying",
                    f"job '{entry.name}' attempt {failed.number} failed ({detail}); "
                    f"starting attempt {entry.attempt}",
                )
            )
        elif entry.phase == prs.RUNNING:
            events.append(
                Event("Normal", "JobStarted", f"job '{entry.name}' started (Job {entry.job_name})")
            )
        elif entry.phase == prs.SUCCEEDED:
            events.append(Event("Normal", "JobSucceeded", f"job '{entry.name}' succeeded"))
        elif entry.phase == prs.FAILED:
            detail = entry.reason or "failure"
            if entry.exit_code is not None:
                detail += f", exit code {entry.exit_code}"
            allowed = " (failure allowed)" if entry.allowed_failure else ""
            events.append(
                Event("Warning", "JobFailed", f"job '{entry.name}' failed ({detail}){allowed}")
            )
    return events


def _run_events(
    previous: PipelineRunStatus, status: PipelineRunStatus, message: str
) -> list[Event]:
    new = find_condition(status.conditions, prs.CONDITION_SUCCEEDED)
    old = find_condition(previous.conditions, prs.CONDITION_SUCCEEDED)
    if new is None or (old is not None and (old.status, old.reason) == (new.status, new.reason)):
        return []
    if status.finished:
        kind = "Normal" if new.status == "True" else "Warning"
        return [Event(kind, f"Run{status.phase}", f"{new.reason}: {message}"[:1024])]
    if new.reason in (prs.REASON_MANUAL_ACTION_REQUIRED, REASON_WAITING_FOR_APPROVAL):
        return [Event("Normal", new.reason, message[:1024])]
    return []


def missing_pipeline_status(
    run: PipelineRun, now: datetime.datetime, message: str | None = None
) -> PipelineRunStatus:
    """Status of a run whose Pipeline does not exist (yet): it waits Pending, unless it had
    already started, in which case it fails; a cancelled run is cancelled."""
    previous = run.status
    if previous.finished:
        return previous
    name = run.pipeline_name or ""
    text = message or f"pipeline '{name}' not found"
    if run.spec is not None and run.spec.cancelled:
        phase, reason, text = prs.CANCELLED, prs.REASON_CANCELLED, cancelled_message(run)
    elif previous.start_time is not None:
        phase, reason = prs.FAILED, prs.REASON_PIPELINE_NOT_FOUND
    else:
        phase, reason = prs.PENDING, prs.REASON_PIPELINE_NOT_FOUND
    status = _status(
        run,
        previous,
        previous.jobs,
        phase,
        reason,
        text,
        now,
        current_stage=previous.current_stage,
    )
    return status


def failed_status(
    run: PipelineRun, now: datetime.datetime, reason: str, message: str
) -> PipelineRunStatus:
    """Status of a run that fails before planning can start (its pipeline cannot be parsed,
    its repository cannot be read): Failed with `reason`. Finished runs keep their status."""
    previous = run.status
    if previous.finished:
        return previous
    return _status(run, previous, previous.jobs, prs.FAILED, reason, message, now)


def invalid_pipeline_status(
    run: PipelineRun, now: datetime.datetime, message: str
) -> PipelineRunStatus:
    """Failed with reason InvalidPipeline (e.g. a ModelError while parsing the pipeline)."""
    return failed_status(run, now, prs.REASON_INVALID_PIPELINE, f"invalid pipeline: {message}")
