"""Making a run's Jobs: one batch/v1 Job per attempt the pass decided to create, with its
artifact transfer plan (a Secret of its own) when it uses artifacts or caches; deleting and
stopping Jobs. Job creates and deletes are the pipeline's critical path: they have threads of
their own, never queued behind status and event writes of other runs."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.model import ACTIVE, FAILED, JobToCreate, ObservedJob
from conveyor.engine.tags import REASON_UNMAPPED_TAG, TagError
from conveyor.kube.client import Kube
from conveyor.kube.jobspec import JobOptions, build_job, transfer_plan_secret
from conveyor.reconcile.artifacts import ArtifactService
from conveyor.reconcile.observed import ObservedJobs
from conveyor.reconcile.views import Key


class JobLauncher:
    def __init__(
        self,
        kube: Kube,
        io: Callable[..., Awaitable[Any]],
        options: JobOptions,
        artifacts: ArtifactService,
        observed: ObservedJobs,
        built_by: Callable[[Key], Mapping[str, str]],
        clock: Callable[[], datetime.datetime],
        threads: int,
    ) -> None:
        self.kube, self.io, self.options, self.clock = kube, io, options, clock
        self.artifacts, self.observed, self.built_by = artifacts, observed, built_by
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jobs")
        # Attempts whose runner tags the operator does not map (--tag-selector): no Job is
        # made, and the attempt fails naming the tag (in memory: a restart finds it again).
        self._unplaced: dict[Key, dict[str, ObservedJob]] = {}

    async def _jobs_io(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)

    def unplaced(self, key: Key) -> list[ObservedJob]:
        """The run's attempts no Job could be made for, as failed attempts."""
        return list(self._unplaced.get(key, {}).values())

    def forget(self, key: Key) -> None:
        self._unplaced.pop(key, None)

    async def create(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        create: JobToCreate,
        status: Mapping[str, Any],
    ) -> bool:
        """Makes the attempt's Job; False when it is not made in this pass: an artifact it
        downloads is not recorded yet (planned again on the next pass)."""
        namespace = key[0]
        prepared = await self.io(self.artifacts.prepare, run, pipeline, job, create.attempt, status)
        if prepared.waiting:
            return False
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
            return True
        await self._jobs_io(self.kube.create_job, namespace, body)
        seen = ObservedJob(create.job_name, create.pipeline_job, create.attempt, ACTIVE)
        self.observed.created(key, seen, self.clock())
        return True

    async def delete(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            await self._jobs_io(self.kube.delete_job, namespace, name)

    async def stop(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            await self._jobs_io(self.kube.stop_job, namespace, name)
