"""Making a run's Jobs: one batch/v1 Job per attempt the pass decided to create, with its
artifact transfer plan (a Secret of its own) when it uses artifacts or caches; deleting and
stopping Jobs. Job creates and deletes are the pipeline's critical path: they have threads of
their own, never queued behind status and event writes of other runs."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import JobStatus, PipelineRun
from conveyor.engine.model import ACTIVE, FAILED, JobToCreate, ObservedJob
from conveyor.engine.tags import REASON_UNMAPPED_TAG, TagError
from conveyor.kube.client import Kube
from conveyor.kube.jobspec import JobOptions, build_job, transfer_plan_secret
from conveyor.reconcile.artifacts import ArtifactService, Prepared
from conveyor.reconcile.observed import ObservedJobs
from conveyor.reconcile.sources import Sources, SourceUnavailable
from conveyor.reconcile.views import Key
from conveyor.source import errors as source_errors

log = logging.getLogger("conveyor.runs")


# An attempt whose artifacts it downloads are not recorded yet is planned again this soon.
ARTIFACT_RETRY_SECONDS = 5.0
# cache:key:files needs the files' blob ids: a repository that cannot be read for a reason that
# may pass (unreachable, a timeout, git failing) is tried again this often, for this long, before
# the job fails naming the cause; others (authentication, a commit gone) fail it at once.
KEY_FILES_RETRY_SECONDS = 10.0
KEY_FILES_PATIENCE_SECONDS = 300.0
KEY_FILES_TRANSIENT = frozenset(
    {source_errors.UNREACHABLE, source_errors.TIMEOUT, source_errors.GIT_FAILED}
)
KeyFileBlobs = Mapping[str, tuple[str, ...]]  # a file pattern -> the blob ids it names


class KeyFilesWait(Exception):
    """The repository cannot be read now, for a reason that may pass: the attempt waits."""


class JobLauncher:
    def __init__(
        self,
        kube: Kube,
        io: Callable[..., Awaitable[Any]],
        options: JobOptions,
        artifacts: ArtifactService,
        observed: ObservedJobs,
        sources: Sources,
        built_by: Callable[[Key], Mapping[str, str]],
        clock: Callable[[], datetime.datetime],
        threads: int,
    ) -> None:
        self.kube, self.io, self.options, self.clock = kube, io, options, clock
        self.artifacts, self.observed, self.built_by = artifacts, observed, built_by
        self.sources = sources
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jobs")
        # Attempts whose runner tags the operator does not map (--tag-selector): no Job is
        # made, and the attempt fails naming the tag (in memory: a restart finds it again).
        self._unplaced: dict[Key, dict[str, ObservedJob]] = {}
        # Since when each attempt's cache:key:files blob ids could not be read (monotonic).
        self._key_files_failing: dict[tuple[Key, str, int], float] = {}

    async def _jobs_io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def unplaced(self, key: Key) -> list[ObservedJob]:
        """The run's attempts no Job could be made for, as failed attempts."""
        return list(self._unplaced.get(key, {}).values())

    def forget(self, key: Key) -> None:
        self._unplaced.pop(key, None)
        for failing in [f for f in self._key_files_failing if f[0] == key]:
            del self._key_files_failing[failing]

    async def create(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        create: JobToCreate,
        jobs: Sequence[JobStatus],
    ) -> float | None:
        """Makes the attempt's Job (or fails the attempt); else the seconds after which to plan
        it again: an artifact it downloads is not recorded yet, or its cache:key:files cannot
        be read yet."""
        namespace = key[0]
        try:
            key_files = await self._key_file_blobs(key, run, pipeline, job, create.attempt)
        except KeyFilesWait:
            return KEY_FILES_RETRY_SECONDS
        if isinstance(key_files, str):
            prepared = Prepared(refusal=key_files)
        else:
            prepared = await self.io(
                self.artifacts.prepare, run, pipeline, job, create.attempt, jobs, key_files
            )
        if prepared.waiting:
            return ARTIFACT_RETRY_SECONDS
        transfer = None
        if prepared.plan is not None:
            secret = transfer_plan_secret(run, job, create.attempt, prepared.plan)
            transfer = await self.io(self.kube.create_secret, namespace, secret)
        try:
            body = build_job(
                run=run,
                pipeline=pipeline,
                # Never the Environment's credentials: those serve native deploys only, in the
                # operator, so no pod the team can reach ever holds them.
                job=job,
                attempt=create.attempt,
                options=self.options,
                built=self.built_by(key),
                transfer=transfer,
                refusal=prepared.refusal,
            )
        except TagError as e:
            self._unplaced.setdefault(key, {})[create.job_name] = ObservedJob(
                create.job_name,
                create.pipeline_job,
                create.attempt,
                FAILED,
                reason=REASON_UNMAPPED_TAG,
                message=str(e),
            )
            return None
        await self._jobs_io(self.kube.create_job, namespace, body)
        seen = ObservedJob(create.job_name, create.pipeline_job, create.attempt, ACTIVE)
        self.observed.created(key, seen, self.clock())
        return None

    async def _key_file_blobs(
        self, key: Key, run: PipelineRun, pipeline: PipelineSpec, job: PipelineJob, attempt: int
    ) -> KeyFileBlobs | str | None:
        """For a scripted job with `keyFiles` caches, the blob ids at the run's commit of the
        files they name; why the job fails instead (a str); None for a job without them.
        Raises KeyFilesWait while the repository cannot be read for a reason that may pass."""
        patterns = [f for c in job.cache if c.key_files is not None for f in c.key_files.files]
        if not patterns or job.build is not None or job.scan is not None:
            return None
        assert run.spec is not None
        failing = (key, job.name, attempt)
        try:
            blobs: KeyFileBlobs = await self.sources.key_file_blobs(
                key[0], pipeline, run.spec.revision.sha, patterns
            )
        except SourceUnavailable as e:
            now = time.monotonic()
            since = self._key_files_failing.setdefault(failing, now)
            if e.reason in KEY_FILES_TRANSIENT and now - since < KEY_FILES_PATIENCE_SECONDS:
                log.warning(
                    "%s/%s: job %s waits for its cache:key:files blob ids: %s", *key, job.name, e
                )
                raise KeyFilesWait from e
            self._key_files_failing.pop(failing, None)
            return f"cache keyFiles: the files' git blob ids could not be read: {e}"
        self._key_files_failing.pop(failing, None)
        return blobs

    async def delete(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            await self._jobs_io(self.kube.delete_job, namespace, name)

    async def stop(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            await self._jobs_io(self.kube.stop_job, namespace, name)
