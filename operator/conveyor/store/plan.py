"""The transfer plan of one job attempt: what its pod downloads before the script and uploads
after, as presigned URLs for exactly that attempt's objects, valid for the job's lifetime.

Pure: the presigner is passed in. Which jobs' artifacts, the cache keys and the object names
come from conveyor.engine.artifacts (GitLab's rules); this module only turns them into URLs for
the transfer binary (transfer/cmd/conveyor-transfer, whose Plan type this JSON is).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import JobStatus
from conveyor.engine import artifacts as rules
from conveyor.engine.artifacts import keeps_artifacts

# The objects of one attempt: the archive (a gzipped tar) and the manifest the binary writes
# after it (size, sha256, files), which the operator reads into status.jobs[].artifacts.
ARCHIVE_OBJECT = "archive.tar.gz"
MANIFEST_OBJECT = "manifest.json"
ARCHIVE_SUFFIX = ".tar.gz"
# Where the binary stages archives (S3 wants a length first): the workspace volume, always
# writable, never the image's /tmp (a read-only or absent /tmp must not break uploads).
TEMP_DIR = "/builds/.conveyor-transfer"
# The list of the files git tracks (`git ls-files -z`), written by the checkout of a job that
# archives untracked files: in the workspace volume, outside the project directory (so never
# archived itself), read by the binary at upload time. The job's image needs no git.
TRACKED_FILE = "/builds/.conveyor-tracked"
# URLs outlive the job's timeout by this much: image pulls and the checkout come first.
URL_SLACK_SECONDS = 15 * 60

Presign = Callable[[str, str, int], str]  # (method, object key, seconds) -> URL


@dataclass(frozen=True)
class AttemptRef:
    """Where an attempt's objects are."""

    namespace: str
    run: str
    run_uid: str
    job: str
    attempt: int

    def key(self, file_name: str) -> str:
        return rules.artifact_object(
            self.namespace, self.run, self.job, self.attempt, file_name, self.run_uid
        )


def uses_store(spec: PipelineSpec, job: PipelineJob, present: Sequence[str] | None) -> bool:
    """Whether the job needs the artifact store: it keeps artifacts, has caches, or downloads
    artifacts of jobs that keep some."""
    if keeps_artifacts(job):
        return True
    if job.cache and job.build is None and job.scan is None:
        return True
    return bool(downloads(spec, job, present))


def downloads(
    spec: PipelineSpec, job: PipelineJob, present: Sequence[str] | None
) -> tuple[str, ...]:
    """The earlier jobs whose artifacts this job downloads and that keep artifacts at all. A
    build gets them in its checkout before the builder reads its context; a scan reads a
    registry, and a native deploy runs in the operator: none."""
    if job.scan is not None or job.deploy is not None:
        return ()
    sources = rules.artifact_sources(spec, job.name, present)
    return tuple(
        name for name in sources if (other := spec.job(name)) is not None and keeps_artifacts(other)
    )


@dataclass(frozen=True)
class Dependency:
    """The artifacts archive of an earlier job's attempt that this job downloads, and the
    digest the operator recorded for it (status.jobs[].artifacts): the download must match."""

    job: str
    attempt: int
    digest: str  # sha256:<hex>


def dependencies(
    spec: PipelineSpec,
    job: PipelineJob,
    jobs: Sequence[JobStatus],
) -> tuple[Dependency, ...] | None:
    """The archives `job` downloads, from the run's status.jobs: each source job's latest attempt
    whose record names a digest. None while a finished source's record is not read yet (the
    job must not start, nor its approval be asked, before it is: what it gets is what was
    approved). A source that never ran, or kept nothing, gives nothing."""
    entries = {e.name: e for e in jobs}
    present = list(entries) or None
    out = []
    for name in downloads(spec, job, present):
        entry = entries.get(name)
        if entry is None or not entry.attempt:
            continue  # it never ran in this run (skipped by rules, manual not played)
        if entry.artifacts is None:
            if entry.phase in ("Succeeded", "Failed"):
                return None
            continue  # still running or never started: a later stage waits for it anyway
        for record in entry.artifacts:
            digest = record.digest or ""
            if record.kind == "archive" and is_digest(digest):
                out.append(Dependency(name, entry.attempt, digest))
    return tuple(out)


def is_digest(value: str) -> bool:
    hexpart = value.removeprefix("sha256:")
    return (
        value.startswith("sha256:")
        and len(hexpart) == 64
        and all(c in "0123456789abcdef" for c in hexpart)
    )


def transfer_plan(
    *,
    spec: PipelineSpec,
    job: PipelineJob,
    attempt: AttemptRef,
    sources: Sequence[Dependency],
    pipeline_name: str,
    project_dir: str,
    lookup: rules.Lookup,
    presign: Presign,
    seconds: int,
    max_bytes: int,
    ca_pem: str | None = None,
    insecure: bool = False,
    blob_ids: Callable[[Sequence[str]], Sequence[str | None]] | None = None,
    checkout: bool = True,
) -> dict[str, Any]:
    """The plan (the binary's JSON). `sources`: the archives to download (`dependencies`),
    each checked against its recorded digest before it is extracted; `pipeline_name`: the
    caches' scope in the namespace (GitLab: the project); `seconds`: how long the URLs last;
    `blob_ids`: for `keyFiles`, the blob ids of the files their entries name; `checkout`:
    whether the pod checks out the pipeline's source (else every file is untracked)."""
    plan: dict[str, Any] = {"projectDir": project_dir, "tempDir": TEMP_DIR}
    if checkout and job.scan is None and rules.uses_untracked(job):
        # The checkout writes it (kube/script.py); without one git tracks nothing.
        plan["trackedFile"] = TRACKED_FILE
    deps = []
    for source in sources:
        ref = AttemptRef(
            attempt.namespace, attempt.run, attempt.run_uid, source.job, source.attempt
        )
        deps.append(
            {
                "job": source.job,
                "url": presign("GET", ref.key(ARCHIVE_OBJECT), seconds),
                "sha256": source.digest.removeprefix("sha256:"),
            }
        )
    plan["downloads"] = deps
    artifacts = rules.effective_artifacts(job) if keeps_artifacts(job) else None
    if artifacts is not None and (artifacts.paths or artifacts.untracked or artifacts.reports):
        report_paths = [p for paths in rules.report_paths(artifacts).values() for p in paths]
        plan["artifacts"] = {
            "name": rules.archive_name(artifacts, lookup) + ARCHIVE_SUFFIX,
            "paths": [*artifacts.paths, *report_paths],
            "untracked": artifacts.untracked,
            "exclude": list(artifacts.exclude),
            "when": artifacts.when,
            "url": presign("PUT", attempt.key(ARCHIVE_OBJECT), seconds),
            "manifestUrl": presign("PUT", attempt.key(MANIFEST_OBJECT), seconds),
            "maxBytes": max_bytes,
        }
    caches = []
    # A build's builder never runs the transfer binary: it neither restores nor saves caches.
    for index, cache in enumerate(job.cache if job.build is None else ()):
        keys = rules.cache_keys(cache, index, lookup, blob_ids)
        entry: dict[str, Any] = {
            "paths": list(cache.paths),
            "untracked": cache.untracked,
            "when": cache.when,
            "pull": [],
        }
        if rules.cache_restores(cache):
            entry["pull"] = [
                {
                    "key": k,
                    "url": presign(
                        "GET", rules.cache_object(attempt.namespace, pipeline_name, k), seconds
                    ),
                }
                for k in keys.restore_order
            ]
        if cache.policy != "pull":  # `policy: pull` never uploads: no URL to do it with
            entry["push"] = {
                "key": keys.key,
                "url": presign(
                    "PUT", rules.cache_object(attempt.namespace, pipeline_name, keys.key), seconds
                ),
            }
        caches.append(entry)
    plan["caches"] = caches
    if ca_pem:
        plan["ca"] = ca_pem
    if insecure:
        plan["insecure"] = True
    return plan


def plan_json(plan: Mapping[str, Any]) -> str:
    return json.dumps(plan, separators=(",", ":"), sort_keys=True)
