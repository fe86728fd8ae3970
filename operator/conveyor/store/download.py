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
from conveyor.api.codec import ModelError, format_time, parse_time
from conveyor.api.pipeline import parse_pipeline_spec
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
    spec: Mapping[str, Any],
    run: Mapping[str, Any] | None,
    now: datetime.datetime,
) -> Grant | Refusal:
    """What request `spec` (run, job, attempt) of `namespace` may download. `run` is the run of
    that name in the request's own namespace, or None: a run of another namespace is never
    looked at, so naming one gets RunNotFound."""
    run_name, job = str(spec.get("run") or ""), str(spec.get("job") or "")
    wanted = spec.get("attempt")
    meta = (run or {}).get("metadata") or {}
    if run is None or meta.get("deletionTimestamp"):
        return Refusal(ad.RUN_NOT_FOUND, f"no PipelineRun {run_name} in namespace {namespace}")
    entries = [e for e in (run.get("status") or {}).get("jobs") or () if isinstance(e, Mapping)]
    entry = next((e for e in entries if e.get("name") == job), None)
    if entry is None:
        known = ", ".join(str(e.get("name")) for e in entries) or "none yet"
        return Refusal(ad.JOB_NOT_FOUND, f"run {run_name} has no job {job!r} (its jobs: {known})")
    latest = entry.get("attempt")
    if not latest:
        return Refusal(ad.NOT_FINISHED, f"job {job} of run {run_name} has not run")
    if wanted is not None and wanted != latest:
        return Refusal(
            ad.ATTEMPT_NOT_FOUND,
            f"job {job} of run {run_name} has a record of its latest attempt ({latest}) only, "
            f"not of attempt {wanted}",
        )
    where = f"job {job} of run {run_name} (attempt {latest})"
    if "artifacts" not in entry and keeps_artifacts(run, job) is False:
        return Refusal(ad.NO_ARTIFACTS, f"{where} kept no artifacts (it has no `artifacts`)")
    if "artifacts" not in entry:
        phase = entry.get("phase")
        if phase in ("Succeeded", "Failed"):
            return Refusal(
                ad.NOT_RECORDED,
                f"the artifacts of {where} are not recorded yet: try again in a few seconds",
            )
        return Refusal(
            ad.NOT_FINISHED,
            f"{where} has not finished ({phase or 'Pending'}): what it keeps is recorded when it "
            "ends",
        )
    records = [
        r
        for r in entry.get("artifacts") or ()
        if isinstance(r, Mapping) and r.get("kind", "archive") == "archive"
    ]
    record = next((r for r in records if plans.is_digest(str(r.get("digest") or ""))), None)
    if record is None:
        return Refusal(ad.NO_ARTIFACTS, f"{where} kept no artifacts")
    expires = record.get("expiresAt")
    if isinstance(expires, str) and parse_time(expires) <= now:
        return Refusal(ad.EXPIRED, f"the artifacts of {where} expired at {expires}")
    ref = plans.AttemptRef(namespace, run_name, str(meta.get("uid") or ""), job, int(latest))
    return Grant(
        key=ref.key(plans.ARCHIVE_OBJECT),
        attempt=int(latest),
        name=str(record.get("name") or "artifacts.tar.gz"),
        digest=str(record["digest"]),
        size=int(record.get("size") or 0),
        expires_at=expires if isinstance(expires, str) else None,
    )


def keeps_artifacts(run: Mapping[str, Any], job: str) -> bool | None:
    """Whether `job` keeps artifacts in the pipeline the run started with (its recorded
    status.pipelineSpec); None when that cannot be said."""
    recorded = (run.get("status") or {}).get("pipelineSpec")
    if not isinstance(recorded, Mapping):
        return None
    try:
        spec = parse_pipeline_spec(recorded)
    except ModelError:
        return None
    found = spec.job(job)
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
