"""A run's Jobs as the engine sees them (`ObservedJob`), from the watch's view of them, the
pods of ended Jobs (read on demand, once each, instead of watched) and the Jobs this process
created that the watch has not brought yet."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from conveyor.engine.model import ObservedJob
from conveyor.kube.client import controller_uid
from conveyor.kube.observe import (
    as_active,
    awaiting_pod_details,
    awaiting_reported_result,
    compact_pod,
    needs_pod_details,
    needs_reported_result,
    observe_job,
    pod_ended,
)
from conveyor.reconcile.locks import CREATED_OVERLAY_TTL

Key = tuple[str, str]  # (namespace, run name)


class PodsKube(Protocol):
    def list_job_pods(
        self, namespace: str, job_name: str, job_uid: str | None
    ) -> list[dict[str, Any]]: ...


class ObservedJobs:
    def __init__(self, kube: PodsKube, io: Callable[..., Awaitable[Any]]) -> None:
        self.kube, self.io = kube, io
        # The pods of ended Jobs that need reading, once each: a failure's exit code and
        # termination message, a build's digest, a scan's findings.
        self._ended_pods: dict[Key, dict[str, list[dict[str, Any]]]] = {}
        # Jobs created that the watch has not brought yet, and when.
        self._created: dict[Key, dict[str, tuple[ObservedJob, datetime.datetime]]] = {}

    def created(self, key: Key, job: ObservedJob, at: datetime.datetime) -> None:
        self._created.setdefault(key, {})[job.job_name] = (job, at)

    def forget(self, key: Key) -> None:
        self._created.pop(key, None)
        self._ended_pods.pop(key, None)

    async def of(
        self,
        key: Key,
        jobs: Iterable[Mapping[str, Any]],
        now: datetime.datetime,
        reporting: frozenset[str],
        run_uid: str | None,
    ) -> tuple[list[ObservedJob], bool]:
        """The run's Jobs (`jobs`: the watch's, compact) as the engine sees them, and whether a
        pod's details are still due. `reporting` jobs' pods tell their result on success too
        (a digest, findings)."""
        observed: list[ObservedJob] = []
        awaiting = False
        # A copy: `jobs` may be the watch's live view, which events change while pods are read.
        for job in list(jobs):
            if run_uid and controller_uid(job) != run_uid:
                continue  # labelled as the run's, but not made by the operator for it
            seen = observe_job(job)
            if seen is None:
                continue
            reports = seen.pipeline_job in reporting
            if needs_pod_details(seen) or (reports and needs_reported_result(seen)):
                pods = await self._pods_of_ended(
                    key, job["metadata"]["name"], job["metadata"].get("uid")
                )
                seen = observe_job(job, pods)
                if seen is None:
                    continue
                if awaiting_pod_details(seen, pods, now) or (
                    reports and awaiting_reported_result(seen, pods, now)
                ):
                    seen, awaiting = as_active(seen), True
            observed.append(seen)
        # Jobs this operator created that the watch has not brought yet: they exist.
        created = self._created.get(key, {})
        for name, (_, at) in list(created.items()):
            # Seen by the watch now, or never will be (deleted before it was watched).
            if any(o.job_name == name for o in observed) or (now - at) > CREATED_OVERLAY_TTL:
                del created[name]
        observed.extend(job for job, _ in created.values())
        return observed, awaiting

    async def _pods_of_ended(
        self, key: Key, job_name: str, job_uid: str | None
    ) -> list[dict[str, Any]]:
        """An ended Job's pods (compact), read once they tell how the script ended."""
        known = self._ended_pods.setdefault(key, {})
        if job_name in known:
            return known[job_name]
        listed = await self.io(self.kube.list_job_pods, key[0], job_name, job_uid)
        pods = [compact_pod(p) for p in listed]
        if any(pod_ended(p) for p in pods):  # else read again on the next pass
            known[job_name] = pods
        return pods
