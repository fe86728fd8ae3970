"""The operator's side of artifacts and caches: per-attempt transfer plans (presigned URLs),
the records of what an attempt kept (status.jobs[].artifacts), and the store's garbage
collection (deleted runs, expired artifacts). Blocking calls: the controller runs them on its
I/O threads.

The store's credentials are read once from their Secret (by reference, --artifact-store-secret)
and never leave the operator: job pods get presigned URLs for exactly their attempt's objects,
valid for the job's lifetime.
"""

from __future__ import annotations

import datetime
import fnmatch
import io
import json
import logging
import posixpath
import tarfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import ArtifactRecord, JobStatus, JunitSummary, PipelineRun
from conveyor.engine import artifacts as rules
from conveyor.engine import reports
from conveyor.engine.artifacts import KeptRecord
from conveyor.engine.model import ObservedJob
from conveyor.engine.variables.job import job_variables
from conveyor.kube.client import Kube
from conveyor.kube.jobspec import SCRIPT_START_ALLOWANCE_SECONDS, JobOptions
from conveyor.store import plan as plans
from conveyor.store.client import StoreClient, StoreError
from conveyor.store.config import ACCESS_KEY, NOT_CONFIGURED, SECRET_KEY, StoreConfig
from conveyor.store.sigv4 import Credentials

log = logging.getLogger(__name__)

KEY_FILES_UNREAD = "cache keyFiles: the files' git blob ids were not read"
# JUnit reports are read from the archive when it is at most this large (the operator holds it
# in memory); a larger archive's reports are not summarised.
REPORTS_ARCHIVE_MAX_BYTES = 64 * 1024 * 1024


def junit_summary(archive: bytes, globs: Sequence[str]) -> JunitSummary:
    """The merged JUnit summary of the archive's files that match `globs` (GitLab's paths)."""
    files: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and any(glob_match(g, member.name) for g in globs):
                data = tar.extractfile(member)
                if data is not None:
                    files.append((member.name, data.read(reports.JUNIT_MAX_BYTES + 1)))
    return reports.summarize_junit_files(files)


def glob_match(pattern: str, name: str) -> bool:
    """GitLab's artifact globs, as the transfer binary matches them: `*` within a segment, `**`
    across any number of segments."""
    pat = posixpath.normpath(pattern.removeprefix("./")).strip("/").split("/")
    parts = name.strip("/").split("/")

    def match(i: int, j: int) -> bool:
        if i == len(pat):
            return j == len(parts)
        if pat[i] == "**":
            return any(match(i + 1, k) for k in range(j, len(parts) + 1))
        return j < len(parts) and fnmatch.fnmatchcase(parts[j], pat[i]) and match(i + 1, j + 1)

    return match(0, 0)


@dataclass(frozen=True)
class Prepared:
    """What a job attempt's pod gets for artifacts and caches (ArtifactService.prepare)."""

    plan: str | None = None  # the transfer plan (JSON), for the attempt's plan Secret
    refusal: str | None = None  # why the job fails before it runs
    waiting: bool = False  # an artifact it downloads is not recorded yet: not created this pass


class ArtifactService:
    def __init__(
        self,
        kube: Kube,
        config: StoreConfig | None,
        options: JobOptions,
        default_expire_in: str | None = rules.DEFAULT_EXPIRE_IN,
    ) -> None:
        self.kube = kube
        self.config = config
        self.options = options
        self.default_expire_in = default_expire_in
        self._client: StoreClient | None = None
        self._lock = threading.Lock()
        # Records read from the store, by (namespace, Job name): a finished attempt's never change.
        self._records: dict[tuple[str, str], KeptRecord] = {}

    def client(self) -> StoreClient:
        assert self.config is not None
        with self._lock:
            if self._client is None:
                data = self.kube.read_secret_data(
                    self.config.secret_namespace, self.config.secret_name
                )
                try:
                    creds = Credentials(data[ACCESS_KEY].decode(), data[SECRET_KEY].decode())
                except KeyError:
                    raise StoreError(
                        f"the artifact store Secret {self.config.secret_namespace}/"
                        f"{self.config.secret_name} needs the keys {ACCESS_KEY} and {SECRET_KEY}"
                    ) from None
                self._client = StoreClient(self.config, creds)
            return self._client

    def _ca_pem(self) -> str | None:
        if self.config is None or not self.config.ca_file:
            return None
        with open(self.config.ca_file) as f:
            return f.read()

    # -- before a Job: its plan

    def prepare(
        self,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        attempt: int,
        jobs: Sequence[JobStatus],
        key_files: Mapping[str, Sequence[str]] | None = None,
    ) -> Prepared:
        """The attempt's transfer plan: none when it uses no artifacts, a refusal when it does
        but cannot have them, `waiting` while an artifact it downloads is not recorded yet.
        `key_files`: for a job with `keyFiles` caches, each of their entries -> the blob ids
        at the run's commit of the files it names (`Sources.key_file_blobs`)."""
        present = [e.name for e in jobs] or None
        if not plans.uses_store(pipeline, job, present):
            return Prepared()
        if self.config is None:
            return Prepared(refusal=NOT_CONFIGURED)
        if key_files is None and any(cache.key_files is not None for cache in job.cache):
            return Prepared(refusal=KEY_FILES_UNREAD)
        found = key_files or {}
        sources = plans.dependencies(pipeline, job, jobs)
        if sources is None:
            return Prepared(waiting=True)
        variables = job_variables(pipeline, run, job, self.options)
        lookup = variables.raw.get
        seconds = job.timeout_seconds() + SCRIPT_START_ALLOWANCE_SECONDS + plans.URL_SLACK_SECONDS
        try:
            client = self.client()
            plan = plans.transfer_plan(
                spec=pipeline,
                job=job,
                attempt=plans.AttemptRef(
                    run.metadata.namespace or "",
                    run.name,
                    run.metadata.uid or "",
                    job.name,
                    attempt,
                ),
                sources=sources,
                pipeline_name=run.pipeline_name or "default",
                project_dir=variables.raw["CI_PROJECT_DIR"],
                lookup=lookup,
                presign=client.presign,
                seconds=seconds,
                max_bytes=self.config.max_artifact_bytes,
                ca_pem=self._ca_pem(),
                insecure=self.config.insecure,
                blob_ids=lambda files: [b for f in files for b in found.get(f, ())],
                checkout=pipeline.source is not None,
            )
        except rules.CacheKeyError as e:
            return Prepared(refusal=f"cache key refused: {e}")
        except (StoreError, OSError) as e:
            return Prepared(refusal=f"the artifact store cannot be used: {e}")
        except Exception as e:  # the Secret unreadable (ApiException)
            return Prepared(refusal=f"the artifact store cannot be used: {type(e).__name__}: {e}")
        return Prepared(plan=plans.plan_json(plan))

    # -- after a Job: what it kept

    def records(
        self, run: PipelineRun, pipeline: PipelineSpec, seen: ObservedJob
    ) -> KeptRecord | None:
        """What a finished attempt kept: its archive (from its manifest) and `tests` (its JUnit
        reports, read from its archive); no files: read, nothing kept. None: not readable now,
        try again later. Called only with the store configured."""
        namespace = run.metadata.namespace or ""
        cached = self._records.get((namespace, seen.job_name))
        if cached is not None:
            return cached
        try:
            found = self._read_records(run, pipeline, seen)
        except (StoreError, ValueError, OSError, tarfile.TarError) as e:
            log.warning("artifacts of %s/%s not readable yet: %s", namespace, seen.job_name, e)
            return None
        self._records[(namespace, seen.job_name)] = found
        return found

    def _read_records(
        self, run: PipelineRun, pipeline: PipelineSpec, seen: ObservedJob
    ) -> KeptRecord:
        assert self.config is not None
        ref = plans.AttemptRef(
            run.metadata.namespace or "",
            run.name,
            run.metadata.uid or "",
            seen.pipeline_job,
            seen.attempt,
        )
        client = self.client()
        raw = client.get(ref.key(plans.MANIFEST_OBJECT))
        # `artifacts: []`: read, nothing kept (absent: not read yet; a job that downloads this
        # one's artifacts waits for the record, store.plan.dependencies).
        nothing = KeptRecord(())
        if raw is None:
            return nothing
        manifest = json.loads(raw)
        head = client.head(ref.key(plans.ARCHIVE_OBJECT))
        if head is None:
            return nothing
        if head.size > self.config.max_artifact_bytes:
            # The binary refuses such archives; one that got here anyway does not stay.
            log.warning("deleting %s: over the artifact size limit", ref.key(""))
            client.delete_prefix(ref.key(""))
            return nothing
        digest = "sha256:" + str(manifest.get("sha256") or "")
        if not plans.is_digest(digest):
            # The transfer binary always writes one: this archive is not its.
            log.warning("ignoring %s: its manifest has no digest", ref.key(""))
            return nothing
        job = pipeline.job(seen.pipeline_job)
        kept = rules.effective_artifacts(job) if job is not None else None
        finished = seen.completion_time or datetime.datetime.now(datetime.UTC)
        record = ArtifactRecord(
            name=str(manifest.get("name") or "artifacts.tar.gz")[:255],
            kind="archive",
            size=head.size,
            digest=digest,
            expires_at=rules.expires_at(kept, finished, self.default_expire_in),
        )
        tests = None
        junit = rules.report_paths(kept).get("junit")
        if junit and head.size <= REPORTS_ARCHIVE_MAX_BYTES:
            archive = client.get(ref.key(plans.ARCHIVE_OBJECT))
            if archive is not None:
                tests = junit_summary(archive, junit)
        return KeptRecord((record,), tests)

    # -- garbage collection

    def sweep(
        self,
        runs: Iterable[tuple[str, str, str]],
        statuses: Iterable[tuple[str, str, str, Mapping[str, Any]]],
        now: datetime.datetime,
        run_exists: Callable[[str, str, str], bool],
    ) -> int:
        """Deletes the objects of runs that no longer exist and of attempts whose artifacts
        expired. `runs`: (namespace, name, uid) of the runs the operator sees; a run not among
        them is asked for (`run_exists`) before its objects go, so a view still filling after a
        start never costs a live run its artifacts. `statuses`: each run's status. Returns how
        many objects went."""
        if self.config is None:
            return 0
        client = self.client()
        alive = {(ns, f"{name}-{uid}") for ns, name, uid in runs}
        owners: dict[tuple[str, str], list[str]] = {}
        for obj in client.list(rules.ARTIFACTS_ROOT + "/"):
            parts = obj.key.split("/")
            if len(parts) >= 4 and (parts[1], parts[2]) not in alive:
                owners.setdefault((parts[1], parts[2]), []).append(obj.key)
        gone = 0
        for (namespace, owner), keys in owners.items():
            # RUN-UID: a UID is 36 characters (a UUID).
            name, uid = owner[:-37], owner[-36:]
            if len(owner) > 37 and run_exists(namespace, name, uid):
                continue
            for key in keys:
                client.delete(key)
                gone += 1
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for namespace, name, uid, status in statuses:
            for entry in status.get("jobs") or ():
                for record in entry.get("artifacts") or ():
                    expires = record.get("expiresAt")
                    if not expires or expires > stamp:
                        continue
                    ref = plans.AttemptRef(namespace, name, uid, entry["name"], entry["attempt"])
                    gone += client.delete_prefix(ref.key(""))
        return gone
