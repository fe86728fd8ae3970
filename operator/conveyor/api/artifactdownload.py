"""The ArtifactDownload resource: a team member's request to download what a job kept.

Like a CertificateSigningRequest: the user creates it in the run's namespace (spec: run, job,
attempt), and the operator answers in `status` with a presigned GET URL of exactly that job's
archive, valid a few minutes, and the digest recorded when the job ended, or with an error
naming why not. Whoever may create one in a namespace may download that namespace's artifacts;
the store's credentials never leave the operator. Only the operator writes the status
(deploy/30-admission.yaml), and it deletes requests after a TTL.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import from_dict
from conveyor.api.fields import Validation, model, spec_field
from conveyor.api.meta import DNS_LABEL_MAX, DNS_SUBDOMAIN_PATTERN, ObjectMeta
from conveyor.api.pipeline import JOB_NAME_MAX

READY = "Ready"
FAILED = "Failed"
PHASES = (READY, FAILED)

# Why a request failed (status.reason).
RUN_NOT_FOUND = "RunNotFound"
JOB_NOT_FOUND = "JobNotFound"
ATTEMPT_NOT_FOUND = "AttemptNotFound"
NOT_FINISHED = "NotFinished"
NOT_RECORDED = "NotRecorded"
NO_ARTIFACTS = "NoArtifacts"
EXPIRED = "Expired"
STORE_UNAVAILABLE = "StoreUnavailable"
REASONS = (
    RUN_NOT_FOUND,
    JOB_NOT_FOUND,
    ATTEMPT_NOT_FOUND,
    NOT_FINISHED,
    NOT_RECORDED,
    NO_ARTIFACTS,
    EXPIRED,
    STORE_UNAVAILABLE,
)

URL_MAX_LENGTH = 4096
ERROR_MAX_LENGTH = 1024

SPEC_IMMUTABLE = Validation(
    rule="self == oldSelf",
    message="spec is immutable: create another ArtifactDownload",
    reason="FieldValueForbidden",
)


@model("What to download: the archive of one job of one run of this namespace.", (SPEC_IMMUTABLE,))
@dataclass(frozen=True)
class ArtifactDownloadSpec:
    run: str = spec_field(
        "The PipelineRun, in this namespace (the operator looks nowhere else).",
        max_length=DNS_LABEL_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    job: str = spec_field("The pipeline job of the run.", max_length=JOB_NAME_MAX, min_length=1)
    attempt: int | None = spec_field(
        "The attempt (default: the job's latest, the only one with a record).",
        default=None,
        minimum=1,
    )


@model("The operator's answer; only the operator writes it.")
@dataclass(frozen=True)
class ArtifactDownloadStatus:
    phase: str | None = spec_field(
        "Ready (url holds the answer) or Failed (error says why).", default=None, enum=PHASES
    )
    reason: str | None = spec_field("Why the request failed.", default=None, enum=REASONS)
    error: str | None = spec_field(
        "Why the request failed, in words.", default=None, max_length=ERROR_MAX_LENGTH
    )
    url: str | None = spec_field(
        "A presigned GET URL of exactly the archive: nothing else, and only until "
        "urlExpiresAt. A bearer credential: never log it.",
        default=None,
        max_length=URL_MAX_LENGTH,
    )
    url_expires_at: datetime.datetime | None = spec_field(
        "When the URL stops working.", default=None
    )
    attempt: int | None = spec_field("The attempt answered for.", default=None, minimum=1)
    name: str | None = spec_field("The archive's file name.", default=None, max_length=255)
    digest: str | None = spec_field(
        "The archive's sha256, recorded when its job ended: check the download against it.",
        default=None,
        max_length=80,
        pattern=r"^sha256:[0-9a-f]{64}$",
    )
    size: int | None = spec_field("The archive's size in bytes.", default=None, minimum=0)
    expires_at: datetime.datetime | None = spec_field(
        "When the artifacts themselves expire; absent: never.", default=None
    )


@dataclass(frozen=True)
class ArtifactDownload:
    metadata: ObjectMeta = spec_field("Object metadata.", default_factory=ObjectMeta)
    spec: ArtifactDownloadSpec | None = spec_field("Desired state.", default=None)
    status: ArtifactDownloadStatus = spec_field(
        "Observed state.", default_factory=ArtifactDownloadStatus
    )

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ArtifactDownload:
        return from_dict(cls, obj)
