"""The answer to an ArtifactDownload: which archive it may have, or why not. Pure: the run is
handed in (the one of that name in the request's own namespace, or None), as are the presigner
and the clock.

A request gets a GET URL of exactly one object, the archive of the job's attempt that the run's
status records (`status.jobs[].artifacts`), with the digest recorded when the job ended, so the
client checks that the bytes it gets are the bytes the job uploaded.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api import artifactdownload as ad
from conveyor.api.codec import format_time, parse_time
from conveyor.api.pipelinerun import PipelineRun
from conveyor.store import plan as plans

# How long a download URL works: long enough to start the download (S3 checks the signature
# when the request starts, so a long transfer is not cut), short enough that one pasted
# somewhere is soon worth nothing.
URL_SECONDS = 5 * 60


@dataclass(frozen=True)
class Grant:
    """The archive a request may download."""

    key: str  # the object's key in the bucket
    attempt: int
    name: str
    digest: str
    size: int
    expires_at: str | None


@dataclass(frozen=True)
class Refusal:
    reason: str  # one of artifactdownload.REASONS
    message: str


def decide(
    namespace: str,
    spec: ad.ArtifactDownloadSpec,
    run: PipelineRun | None,
    now: datetime.datetime,
) -> Grant | Refusal:
    """What request `spec` (run, job, attempt) of `namespace` may download. `run` is the run of
    that name in the request's own namespace, or None: a run of another namespace is never
    looked at, so naming one gets RunNotFound."""
    run_name, job = spec.run, spec.job
    if run is None or run.metadata.deletion_timestamp is not None:
        return Refusal(ad.RUN_NOT_FOUND, f"no PipelineRun {run_name} in namespace {namespace}")
    entry = run.status.job(job)
    if entry is None:
        known = ", ".join(e.name for e in run.status.jobs) or "none yet"
        return Refusal(ad.JOB_NOT_FOUND, f"run {run_name} has no job {job!r} (its jobs: {known})")
    latest = entry.attempt
    if not latest:
        return Refusal(ad.NOT_FINISHED, f"job {job} of run {run_name} has not run")
    if spec.attempt is not None and spec.attempt != latest:
        return Refusal(
            ad.ATTEMPT_NOT_FOUND,
            f"job {job} of run {run_name} has a record of its latest attempt ({latest}) only, "
            f"not of attempt {spec.attempt}",
        )
    where = f"job {job} of run {run_name} (attempt {latest})"
    if entry.artifacts is None and keeps_artifacts(run, job) is False:
        return Refusal(ad.NO_ARTIFACTS, f"{where} kept no artifacts (it has no `artifacts`)")
    if entry.artifacts is None:
        if entry.phase in ("Succeeded", "Failed"):
            return Refusal(
                ad.NOT_RECORDED,
                f"the artifacts of {where} are not recorded yet: try again in a few seconds",
            )
        return Refusal(
            ad.NOT_FINISHED,
            f"{where} has not finished ({entry.phase or 'Pending'}): what it keeps is recorded "
            "when it ends",
        )
    record = next(
        (
            r
            for r in entry.artifacts
            if r.kind == "archive" and r.digest is not None and plans.is_digest(r.digest)
        ),
        None,
    )
    if record is None or record.digest is None:
        return Refusal(ad.NO_ARTIFACTS, f"{where} kept no artifacts")
    expires = format_time(record.expires_at) if record.expires_at is not None else None
    if record.expires_at is not None and record.expires_at <= now:
        return Refusal(ad.EXPIRED, f"the artifacts of {where} expired at {expires}")
    ref = plans.AttemptRef(namespace, run_name, run.metadata.uid or "", job, latest)
    return Grant(
        key=ref.key(plans.ARCHIVE_OBJECT),
        attempt=latest,
        name=record.name or "artifacts.tar.gz",
        digest=record.digest,
        size=record.size,
        expires_at=expires,
    )


def keeps_artifacts(run: PipelineRun, job: str) -> bool | None:
    """Whether `job` keeps artifacts in the pipeline the run started with (its recorded
    status.pipelineSpec); None when that cannot be said."""
    recorded = run.status.pipeline_spec
    found = recorded.job(job) if recorded is not None else None
    return None if found is None else plans.keeps_artifacts(found)


def answer(
    decision: Grant | Refusal,
    presign: plans.Presign,
    now: datetime.datetime,
    seconds: int = URL_SECONDS,
) -> dict[str, Any]:
    """The request's status: a presigned GET of exactly the granted object, or the refusal."""
    if isinstance(decision, Refusal):
        return refused(decision.reason, decision.message)
    status: dict[str, Any] = {
        "phase": ad.READY,
        "url": presign("GET", decision.key, seconds),
        "urlExpiresAt": format_time(now + datetime.timedelta(seconds=seconds)),
        "attempt": decision.attempt,
        "name": decision.name,
        "digest": decision.digest,
        "size": decision.size,
    }
    if decision.expires_at:
        status["expiresAt"] = decision.expires_at
    return status


def refused(reason: str, message: str) -> dict[str, Any]:
    return {"phase": ad.FAILED, "reason": reason, "error": message[: ad.ERROR_MAX_LENGTH]}


def expired_requests(
    bodies: list[Mapping[str, Any]], now: datetime.datetime, ttl: datetime.timedelta
) -> list[tuple[str, str]]:
    """(namespace, name) of the requests created more than `ttl` before `now`."""
    out = []
    for body in bodies:
        meta = body.get("metadata") or {}
        created = meta.get("creationTimestamp")
        if isinstance(created, str) and parse_time(created) + ttl <= now:
            out.append((str(meta.get("namespace")), str(meta.get("name"))))
    return out


def unanswered(
    bodies: list[Mapping[str, Any]], now: datetime.datetime, grace: datetime.timedelta
) -> list[Mapping[str, Any]]:
    """The requests without an answer, created at least `grace` before `now` (the event that
    should have answered them was missed or its write failed)."""
    out = []
    for body in bodies:
        meta = body.get("metadata") or {}
        created = meta.get("creationTimestamp")
        if (
            not (body.get("status") or {}).get("phase")
            and not meta.get("deletionTimestamp")
            and isinstance(created, str)
            and parse_time(created) + grace <= now
        ):
            out.append(body)
    return out
