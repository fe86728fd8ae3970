"""Inputs and outputs of the planner: what is observed in the cluster, and what to do next."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import NamedTuple

from conveyor.api.pipelinerun import PipelineRunStatus

# States of an observed batch/v1 Job.
ACTIVE = "active"
SUCCEEDED = "succeeded"
FAILED = "failed"
OBSERVED_STATES = (ACTIVE, SUCCEEDED, FAILED)

# Kubernetes' reason on a Job that ran past activeDeadlineSeconds.
DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclass(frozen=True)
class ObservedJob:
    """One batch/v1 Job of the run as it exists in the cluster."""

    job_name: str
    pipeline_job: str  # the conveyor.dev/job annotation: the exact pipeline job name
    attempt: int
    state: str  # active | succeeded | failed
    exit_code: int | None = None
    reason: str | None = None  # e.g. DeadlineExceeded, BackoffLimitExceeded
    start_time: datetime.datetime | None = None
    completion_time: datetime.datetime | None = None
    message: str | None = None  # termination message, short

    def __post_init__(self) -> None:
        if self.state not in OBSERVED_STATES:
            raise ValueError(f"state must be one of {OBSERVED_STATES}, not {self.state!r}")


@dataclass(frozen=True)
class JobToCreate:
    """An attempt of a pipeline job whose batch/v1 Job should exist (create; 409 is success)."""

    pipeline_job: str
    attempt: int
    job_name: str


class Event(NamedTuple):
    """A Kubernetes event to record on the run: a plain (type, reason, message) tuple."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile pass should do. Applying it and planning again converges."""

    create: list[JobToCreate] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # names of batch/v1 Jobs
    # Jobs to stop but keep (cancel, timeout, superseded): their pods end, and what the jobs
    # printed stays readable until the run goes (kube.stop).
    stop: list[str] = field(default_factory=list)
    status: PipelineRunStatus = field(default_factory=PipelineRunStatus)  # the run's new status
    events: list[Event] = field(default_factory=list)
    wake_at: datetime.datetime | None = None  # plan again then (a delayed job's start)
