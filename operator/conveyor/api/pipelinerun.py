"""The PipelineRun resource: one execution of a pipeline at one revision.

`spec` is the user's (what to run, at which revision, cancel/play requests); `status` is the
operator's compact record (phase, Succeeded condition, one small entry per job).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import from_dict, to_dict
from conveyor.api.conditions import Condition
from conveyor.api.evaluation import Evaluation
from conveyor.api.fields import Validation, model, spec_field
from conveyor.api.meta import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, ObjectMeta
from conveyor.api.pipeline import (
    JOB_NAME_MAX,
    MAX_JOBS,
    STAGE_NAME_MAX,
    VARIABLE_VALUE_MAX,
    VARIABLES_MAX,
    PipelineSpec,
)

SHA_PATTERN = r"^[0-9a-f]{40}$"
PIPELINE_SOURCES = ("push", "web", "trigger", "schedule", "api")

# Run phases.
PENDING = "Pending"
RUNNING = "Running"
WAITING_FOR_APPROVAL = "WaitingForApproval"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELLED = "Cancelled"
SKIPPED = "Skipped"
RUN_PHASES = (PENDING, RUNNING, WAITING_FOR_APPROVAL, SUCCEEDED, FAILED, CANCELLED, SKIPPED)
FINISHED_PHASES = frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED})

# Job phases (MANUAL: waiting to be played).
MANUAL = "Manual"
JOB_PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, MANUAL, CANCELLED)
JOB_FINISHED_PHASES = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})

# Reasons of the Succeeded condition.
CONDITION_SUCCEEDED = "Succeeded"
REASON_SUCCEEDED = "Succeeded"
REASON_SUCCEEDED_WITH_WARNINGS = "SucceededWithWarnings"
REASON_FAILED = "Failed"
REASON_CANCELLED = "Cancelled"
REASON_TIMEOUT = "Timeout"
REASON_SKIPPED = "Skipped"
REASON_INVALID_PIPELINE = "InvalidPipeline"
REASON_PIPELINE_NOT_FOUND = "PipelineNotFound"
REASON_SOURCE_UNAVAILABLE = "SourceUnavailable"
REASON_MANUAL_ACTION_REQUIRED = "ManualActionRequired"
REASON_DELAYED = "Delayed"  # a when: delayed job waits for its time
REASON_PENDING = "Pending"
REASON_WAITING_FOR_CONCURRENCY = "WaitingForConcurrency"
REASON_RUNNING = "Running"
# Why a job is Skipped when its rules (rules, only/except) keep it out of the run.
REASON_EXCLUDED_BY_RULES = "ExcludedByRules"
# One deploy at a time per environment, newest first: a job ready to deploy waits while another
# run deploys there; a run whose deploy a newer run has overtaken ends Cancelled, Superseded.
REASON_WAITING_FOR_ENVIRONMENT = "WaitingForEnvironment"
REASON_WAITING_FOR_RESOURCE = "WaitingForResource"  # its resource group is busy
REASON_SUPERSEDED = "Superseded"
FINAL_REASONS = (
    REASON_SUCCEEDED,
    REASON_SUCCEEDED_WITH_WARNINGS,
    REASON_FAILED,
    REASON_CANCELLED,
    REASON_SUPERSEDED,
    REASON_TIMEOUT,
    REASON_SKIPPED,
    REASON_INVALID_PIPELINE,
    REASON_PIPELINE_NOT_FOUND,
    REASON_SOURCE_UNAVAILABLE,
)


@model("Reference to a Pipeline in the run's namespace.")
@dataclass(frozen=True)
class PipelineRef:
    name: str = spec_field(
        "Name of the Pipeline.", max_length=DNS_SUBDOMAIN_MAX, pattern=DNS_SUBDOMAIN_PATTERN
    )


@model("The revision the run builds.")
@dataclass(frozen=True)
class Revision:
    ref: str = spec_field("Branch or tag name, e.g. main.", max_length=255, min_length=1)
    sha: str | None = spec_field(
        "Commit the run builds.", default=None, pattern=SHA_PATTERN, max_length=40
    )
    before_sha: str | None = spec_field(
        "Previous commit of the ref (a push's before SHA).",
        default=None,
        pattern=SHA_PATTERN,
        max_length=40,
    )


@model("A request to run a failed job of the run again (`conveyor retry`).")
@dataclass(frozen=True)
class RetryRequest:
    job: str = spec_field("The pipeline job.", max_length=JOB_NAME_MAX, min_length=1)
    attempt: int = spec_field(
        "Its failed attempt that is retried: the new attempt is this one plus 1.",
        minimum=1,
        maximum=99,
    )


@model(
    "What to run and at which revision.",
    validations=(
        Validation(
            rule="has(self.pipelineRef) != has(self.pipelineSpec)",
            message="exactly one of pipelineRef and pipelineSpec must be set",
        ),
        Validation(
            rule=(
                "has(self.pipelineRef) == has(oldSelf.pipelineRef) && "
                "has(self.pipelineSpec) == has(oldSelf.pipelineSpec)"
            ),
            message="pipelineRef and pipelineSpec are immutable",
        ),
        Validation(
            rule="!has(oldSelf.status) || has(self.status)",
            message="status: a cancelled run cannot be resumed",
        ),
    ),
)
@dataclass(frozen=True)
class PipelineRunSpec:
    revision: Revision = spec_field(
        "Revision to build; immutable.",
        validations=(Validation(rule="self == oldSelf", message="revision is immutable"),),
    )
    pipeline_ref: PipelineRef | None = spec_field(
        "The Pipeline to run; immutable.",
        default=None,
        validations=(Validation(rule="self == oldSelf", message="pipelineRef is immutable"),),
    )
    pipeline_spec: PipelineSpec | None = spec_field(
        "An inline pipeline definition instead of pipelineRef; immutable.",
        default=None,
        validations=(Validation(rule="self == oldSelf", message="pipelineSpec is immutable"),),
    )
    variables: Mapping[str, str] = spec_field(
        "Run variables; they override every other variable (GitLab pipeline variables).",
        default_factory=dict,
        max_properties=VARIABLES_MAX,
        item_max_length=VARIABLE_VALUE_MAX,
    )
    status: str | None = spec_field(
        "Set to Cancelled to cancel the run.", default=None, enum=(CANCELLED,)
    )
    play: tuple[str, ...] = spec_field(
        "Manual jobs released to run (what `conveyor play RUN JOB` appends).",
        default_factory=tuple,
        max_items=MAX_JOBS,
        item_max_length=JOB_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    retry: tuple[RetryRequest, ...] = spec_field(
        "Failed jobs to run again in this run, each after the attempt named (what `conveyor "
        "retry` appends); a job whose environment requires approval is not retried.",
        default_factory=tuple,
        max_items=MAX_JOBS,
        list_type="map",
        list_map_keys=("job", "attempt"),
    )
    pipeline_source: str = spec_field(
        "What started the run (GitLab CI_PIPELINE_SOURCE); immutable.",
        default="api",
        enum=PIPELINE_SOURCES,
        validations=(Validation(rule="self == oldSelf", message="pipelineSource is immutable"),),
    )

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED


ARTIFACT_KINDS = ("archive", "junit", "container_scanning")
MAX_JOB_ARTIFACTS = 20
MAX_FAILED_TESTS = 10  # names kept in status: enough to start from, bounded for etcd


@model("One file a job kept in the artifact store.")
@dataclass(frozen=True)
class ArtifactRecord:
    name: str = spec_field(
        "File name: the archive's (`artifacts.zip`-like, from artifacts.name) or the report's.",
        max_length=255,
    )
    kind: str = spec_field(
        "archive (artifacts.paths), junit or container_scanning (a report).",
        default="archive",
        enum=ARTIFACT_KINDS,
    )
    size: int = spec_field("Size in bytes.", default=0, minimum=0)
    digest: str | None = spec_field(
        "sha256 of the content.", default=None, max_length=80, pattern=r"^sha256:[0-9a-f]{64}$"
    )
    expires_at: datetime.datetime | None = spec_field(
        "When the store deletes it; absent: never (expireIn: never).", default=None
    )


@model("What a job's JUnit reports say (artifacts.reports.junit), summed over the files.")
@dataclass(frozen=True)
class JunitSummary:
    total: int = spec_field("Test cases.", default=0, minimum=0)
    passed: int = spec_field("Passed test cases.", default=0, minimum=0)
    failed: int = spec_field("Failed test cases (a <failure>).", default=0, minimum=0)
    errors: int = spec_field("Test cases in error (an <error>).", default=0, minimum=0)
    skipped: int = spec_field("Skipped test cases.", default=0, minimum=0)
    failed_tests: tuple[str, ...] = spec_field(
        "The first failed or errored tests, as `classname.name`.",
        default_factory=tuple,
        max_items=MAX_FAILED_TESTS,
        item_max_length=512,
    )
    unreadable: tuple[str, ...] = spec_field(
        "Report files that could not be read, with why (`FILE: reason`).",
        default_factory=tuple,
        max_items=MAX_FAILED_TESTS,
        item_max_length=512,
    )


@model("Compact record of one pipeline job (its latest attempt).")
@dataclass(frozen=True)
class JobStatus:
    name: str = spec_field("Pipeline job name.", max_length=JOB_NAME_MAX)
    stage: str = spec_field("Stage of the job.", max_length=STAGE_NAME_MAX)
    phase: str = spec_field("Phase of the job.", enum=JOB_PHASES)
    attempt: int | None = spec_field(
        "Attempt number, 1-based; absent before the first Job.",
        default=None,
        minimum=1,
        maximum=100,
    )
    job_name: str | None = spec_field(
        "Name of the batch/v1 Job of this attempt.", default=None, max_length=63
    )
    start_time: datetime.datetime | None = spec_field("When the attempt started.", default=None)
    completion_time: datetime.datetime | None = spec_field(
        "When the attempt finished.", default=None
    )
    exit_code: int | None = spec_field(
        "Exit code of the script.", default=None, minimum=0, maximum=255
    )
    reason: str | None = spec_field(
        "Why the job is in this phase (e.g. Timeout, ScriptFailure).", default=None, max_length=64
    )
    allowed_failure: bool | None = spec_field(
        "The job failed but its failure is allowed.", default=None
    )
    message: str | None = spec_field(
        "Why the attempt failed, in short: a deploy's error, or the script's termination message.",
        default=None,
        max_length=512,
    )
    scheduled_at: datetime.datetime | None = spec_field(
        "When a `when: delayed` job starts, if nobody plays it before.", default=None
    )
    findings: Mapping[str, int] | None = spec_field(
        "What a scan job found: vulnerabilities per severity (CRITICAL, HIGH, ...).",
        default=None,
        max_properties=5,
    )
    image_digest: str | None = spec_field(
        "The digest of the image a build job pushed.",
        default=None,
        max_length=80,
        pattern=r"^sha256:[0-9a-f]{64}$",
    )
    environment: str | None = spec_field(
        "The environment the job deploys to; at most one job deploys to an environment at a time.",
        default=None,
        max_length=255,
    )
    resource_group: str | None = spec_field(
        "The job's resource group; at most one job of a group runs at a time.",
        default=None,
        max_length=255,
    )
    artifacts: tuple[ArtifactRecord, ...] | None = spec_field(
        "Files the attempt kept in the artifact store (its archive and reports).",
        default=None,
        max_items=MAX_JOB_ARTIFACTS,
    )
    tests: JunitSummary | None = spec_field(
        "Test results from the job's JUnit reports.", default=None
    )


@model("What a deploy job applied where (the run's record of it).")
@dataclass(frozen=True)
class DeploymentRecord:
    job: str = spec_field("The deploy job.", max_length=JOB_NAME_MAX)
    environment: str = spec_field("The environment deployed to.", max_length=255)
    namespace: str = spec_field("Namespace in the target cluster.", max_length=63)
    sha: str = spec_field("The commit deployed.", max_length=40)
    version: str = spec_field("VERSION the templates were rendered with.", max_length=512)
    result: str = spec_field(
        "Succeeded, Failed, or RolledBack (failed, previous revision restored).",
        enum=("Succeeded", "Failed", "RolledBack"),
    )
    images: tuple[str, ...] = spec_field(
        "Container images of the workloads applied.",
        default_factory=tuple,
        max_items=20,
        item_max_length=1024,
    )
    objects: int = spec_field("Objects applied.", default=0, minimum=0)
    pruned: int = spec_field(
        "Objects deleted because the revision no longer has them.", default=0, minimum=0
    )
    message: str | None = spec_field("What happened, briefly.", default=None, max_length=512)
    finished_at: datetime.datetime | None = spec_field("When the deploy ended.", default=None)


@model("PipelineRun status, written by the operator.")
@dataclass(frozen=True)
class PipelineRunStatus:
    phase: str | None = spec_field("Phase of the run.", default=None, enum=RUN_PHASES)
    conditions: tuple[Condition, ...] = spec_field(
        "Conditions; Succeeded is Unknown while running, then True or False.",
        default_factory=tuple,
        max_items=8,
        list_type="map",
        list_map_keys=("type",),
    )
    pipeline_name: str | None = spec_field(
        "Name of the Pipeline (absent for inline specs).", default=None, max_length=253
    )
    short_sha: str | None = spec_field("First 8 characters of the SHA.", default=None, max_length=8)
    current_stage: str | None = spec_field(
        "Lowest stage with unfinished jobs.", default=None, max_length=STAGE_NAME_MAX
    )
    start_time: datetime.datetime | None = spec_field(
        "When the first Job was planned.", default=None
    )
    completion_time: datetime.datetime | None = spec_field("When the run finished.", default=None)
    duration: str | None = spec_field(
        "Run duration once finished, e.g. 1m23s.", default=None, max_length=32
    )
    jobs: tuple[JobStatus, ...] = spec_field(
        "One entry per pipeline job.",
        default_factory=tuple,
        max_items=MAX_JOBS,
        list_type="map",
        list_map_keys=("name",),
    )
    observed_generation: int | None = spec_field(
        "Generation of the spec last processed.", default=None, minimum=0
    )
    evaluation: Evaluation | None = spec_field(
        "Outcome of the pipeline's GitLab rules ([skip ci], workflow:rules, rules, only/except), "
        "computed once when the run starts; absent: every job runs as declared.",
        default=None,
    )
    deployments: tuple[DeploymentRecord, ...] = spec_field(
        "What the run's deploy jobs applied where.",
        default_factory=tuple,
        max_items=MAX_JOBS,
        list_type="map",
        list_map_keys=("job",),
    )
    pipeline_spec: PipelineSpec | None = spec_field(
        "The pipeline as it was when the run started: every job of the run runs from this "
        "record, whatever happens to the Pipeline afterwards.",
        default=None,
    )
    variables: Mapping[str, str] | None = spec_field(
        "The run variables the run started with (spec.variables cannot change after that).",
        default=None,
        max_properties=VARIABLES_MAX,
        item_max_length=VARIABLE_VALUE_MAX,
    )

    @property
    def recorded(self) -> bool:
        """Whether the run's pipeline and variables are recorded (it has started)."""
        return self.pipeline_spec is not None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_PHASES

    def job(self, name: str) -> JobStatus | None:
        return next((j for j in self.jobs if j.name == name), None)


@dataclass(frozen=True)
class PipelineRun:
    metadata: ObjectMeta = spec_field("Object metadata.", default_factory=ObjectMeta)
    spec: PipelineRunSpec | None = spec_field("Desired state.", default=None)
    status: PipelineRunStatus = spec_field("Observed state.", default_factory=PipelineRunStatus)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> PipelineRun:
        return from_dict(cls, obj)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def pipeline_name(self) -> str | None:
        if self.spec is not None and self.spec.pipeline_ref is not None:
            return self.spec.pipeline_ref.name
        return None


def parse_run_status(obj: Mapping[str, Any] | None) -> PipelineRunStatus:
    """A run's status alone, from its stored JSON."""
    return from_dict(PipelineRunStatus, obj or {}, "status")


def dump_run_status(status: PipelineRunStatus) -> dict[str, Any]:
    """The status as it is stored, its evaluation in compact form: the operator serialises a
    run's status here only, when it writes it."""
    out = to_dict(status)
    if status.evaluation is not None:
        out["evaluation"] = status.evaluation.to_dict()
    return out
