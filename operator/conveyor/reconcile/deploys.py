"""Native deploy jobs, run by the operator itself: render the repository's templates at the run's
commit for an environment, apply them to its cluster, prune what the revision removed, wait for
the rollout, roll back if asked. A deploy converges the target to one revision, so running it
again (after a restart) is safe: a deploy the status says was running is simply started again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes.client.rest import ApiException

from conveyor.api.codec import format_time
from conveyor.api.durations import parse_duration
from conveyor.api.environment import DNS_LABEL_PATTERN
from conveyor.api.meta import DNS_LABEL_MAX
from conveyor.api.pipeline import ENVIRONMENT_STOP as STOP
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.deploy.errors import DeployError, KubeconfigError, RenderError, TargetUnavailable
from conveyor.engine.environments import object_name, target_namespace
from conveyor.engine.model import ACTIVE, FAILED, SUCCEEDED, ObservedJob
from conveyor.engine.variables.predefined import environment_slug
from conveyor.kube.client import Kube
from conveyor.kube.defaults import DEFAULT_CREDENTIALS_NAMESPACE
from conveyor.reconcile.release import (
    DeployRequest,
    DeployResult,
    preview_images,
    run_deploy,
    run_stop,
)
from conveyor.reconcile.sources import Sources, SourceUnavailable

log = logging.getLogger("conveyor.deploys")

Key = tuple[str, str]
DEFAULT_ROLLOUT_SECONDS = 300
RETRY_DELAYS = (2.0, 4.0, 8.0, 15.0, 30.0)  # a target that is down: retried until the timeout


@dataclasses.dataclass
class Deployment:
    """One deploy attempt's progress, kept in memory while it runs and just after."""

    job: str
    attempt: int
    job_name: str
    started: datetime.datetime
    state: str = ACTIVE
    reason: str | None = None
    message: str | None = None
    finished: datetime.datetime | None = None
    result: DeployResult | None = None
    task: asyncio.Task[None] | None = None
    unreachable: str | None = None  # while the target does not answer: what it said

    def observed(self) -> ObservedJob:
        return ObservedJob(
            self.job_name,
            self.job,
            self.attempt,
            self.state,
            exit_code=0 if self.state == SUCCEEDED else None,
            reason=self.reason if self.state == FAILED else None,
            start_time=self.started,
            completion_time=self.finished,
            message=self.message,
        )


class DeployExecutor:
    def __init__(
        self,
        kube: Kube,
        sources: Sources,
        io: Callable[..., Awaitable[Any]],
        clock: Callable[[], datetime.datetime],
        changed: Callable[[Key], None],
        built: Callable[[Key], Mapping[str, str]] = lambda key: {},
        *,
        credentials_namespace: str = DEFAULT_CREDENTIALS_NAMESPACE,
        environment: Callable[[str, str], Mapping[str, Any] | None],
    ) -> None:
        self.built = built  # what each run's build jobs pushed: image -> digest
        # Environments' kubeconfig Secrets live here, out of the teams' reach.
        self.credentials_namespace = credentials_namespace
        # (namespace, environment name) -> the Environment that serves it (by name, slug or
        # pattern), from the controller's view.
        self.environment = environment
        self.kube, self.sources, self.io, self.clock, self.changed = (
            kube,
            sources,
            io,
            clock,
            changed,
        )
        self._runs: dict[Key, dict[str, Deployment]] = {}

    def observed(self, key: Key) -> list[ObservedJob]:
        return [d.observed() for d in self._runs.get(key, {}).values()]

    def unreachable(self, key: Key) -> list[str]:
        """What each deploy of the run that retries (or gave up) towards a silent target saw."""
        return [d.unreachable for d in self._runs.get(key, {}).values() if d.unreachable]

    def results(self, key: Key) -> list[DeployResult]:
        return [d.result for d in self._runs.get(key, {}).values() if d.result is not None]

    def forget(self, key: Key) -> None:
        for deployment in self._runs.pop(key, {}).values():
            if deployment.task is not None:
                deployment.task.cancel()

    def resume(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        gated: frozenset[str],
        approved_images: Mapping[str, tuple[str, ...]],
    ) -> None:
        """A deploy the status says was running, that this process is not running: the
        operator restarted mid-deploy. Deploying again is safe (server-side apply)."""
        if run.status.finished:
            return
        for entry in run.status.jobs:
            if entry.phase != "Running" or not entry.job_name or not entry.attempt:
                continue
            job = pipeline.job(entry.name)
            if job is None or job.deploy is None:
                continue
            if job.name in gated and job.name not in approved_images:
                continue  # a gated deploy starts on its Approval only, never by resuming
            if not self.running(key, entry.job_name):
                images = approved_images.get(job.name)
                self.start(key, run, pipeline, job, entry.attempt, entry.job_name, images)

    def running(self, key: Key, job_name: str) -> bool:
        return job_name in self._runs.get(key, {})

    def start(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        attempt: int,
        job_name: str,
        approved_images: tuple[str, ...] | None = None,
    ) -> None:
        """Starts the deploy of `job` unless this attempt already runs or ran; with
        `approved_images`, it applies only if the templates still render exactly those."""
        runs = self._runs.setdefault(key, {})
        if job_name in runs:
            return
        deployment = Deployment(job.name, attempt, job_name, self.clock())
        runs[job_name] = deployment
        deployment.task = asyncio.create_task(
            self._run(key, run, pipeline, job, deployment, approved_images),
            name=f"deploy {key} {job.name}",
        )

    async def _run(
        self,
        key: Key,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        deployment: Deployment,
        approved_images: tuple[str, ...] | None,
    ) -> None:
        namespace = key[0]
        environment = job.environment.name if job.environment is not None else ""
        deadline = deployment.started + datetime.timedelta(seconds=job.timeout_seconds())
        attempt = 0
        try:
            while True:
                try:
                    request = await self._request(namespace, run, pipeline, job)
                    request = dataclasses.replace(request, approved_images=approved_images)
                    stops = job.environment is not None and job.environment.action == STOP
                    deployment.result = await self.io(run_stop if stops else run_deploy, request)
                    result = deployment.result
                    self._finish(
                        deployment, SUCCEEDED, None, result.message if stops else result.summary()
                    )
                    if not stops:  # a stop is no deployment of what now runs there
                        await self._record_on_environment(namespace, run, request, deployment)
                    break
                except TargetUnavailable as e:
                    delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                    attempt += 1
                    if self.clock() + datetime.timedelta(seconds=delay) >= deadline:
                        self._finish(deployment, FAILED, "TargetUnavailable", str(e))
                        break
                    deployment.message = f"target unreachable, retrying: {e}"[:256]
                    deployment.unreachable = (
                        f"job '{job.name}' cannot reach the cluster of environment "
                        f"'{environment}': {e}; retrying until the job's timeout"
                    )[:1024]
                    log.warning("deploy %s/%s %s: %s; retrying", *key, job.name, e)
                    self.changed(key)
                    await asyncio.sleep(delay)  # backoff towards a cluster that is down
                except RenderError as e:
                    self._finish(deployment, FAILED, "RenderFailed", str(e))
                    break
                except KubeconfigError as e:
                    self._finish(deployment, FAILED, "InvalidKubeconfig", str(e))
                    break
                except SourceUnavailable as e:
                    self._finish(deployment, FAILED, "SourceUnavailable", str(e))
                    break
                except DeployError as e:
                    reason = "RolloutFailed" if getattr(e, "rollout", False) else "DeployFailed"
                    deployment.result = getattr(e, "result", None)
                    self._finish(deployment, FAILED, reason, str(e))
                    break
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug must not leave the job running forever
            log.exception("deploy %s/%s %s failed", *key, job.name)
            self._finish(deployment, FAILED, "DeployFailed", f"internal error: {e}")
        self.changed(key)

    async def _record_on_environment(
        self, namespace: str, run: PipelineRun, request: DeployRequest, deployment: Deployment
    ) -> None:
        """The Environment says what it runs now: its status.lastDeployment."""
        result = deployment.result
        assert result is not None
        last: dict[str, Any] = {
            "pipelineRun": run.metadata.name,
            "job": deployment.job,
            "environment": request.environment,
            "revision": request.ref,
            "sha": request.sha,
            "time": format_time(deployment.finished or self.clock()),
        }
        if result.images:
            last["image"] = result.images[0]
        try:
            await self.io(
                self.kube.patch_environment_status,
                namespace,
                request.environment_object,
                {"lastDeployment": last},
            )
        except ApiException as e:  # the deploy itself succeeded: a record lost is no failure
            log.warning(
                "recording the deployment on environment %s/%s: %s %s",
                namespace,
                request.environment_object,
                e.status,
                e.reason,
            )

    def _finish(self, deployment: Deployment, state: str, reason: str | None, msg: str) -> None:
        deployment.state, deployment.reason = state, reason
        if reason != "TargetUnavailable":
            deployment.unreachable = None  # it answered
        deployment.message = msg[:256] if msg else None
        deployment.finished = self.clock()

    async def images(
        self, namespace: str, run: PipelineRun, pipeline: PipelineSpec, job: PipelineJob
    ) -> tuple[str, ...]:
        """The images `job` would deploy now: its templates rendered at the run's commit for its
        environment, without the kubeconfig and without touching the target."""
        request = await self._request(namespace, run, pipeline, job, kubeconfig=False)
        return tuple(await self.io(preview_images, request))

    async def _request(
        self,
        namespace: str,
        run: PipelineRun,
        pipeline: PipelineSpec,
        job: PipelineJob,
        *,
        kubeconfig: bool = True,
    ) -> DeployRequest:
        """Everything a deploy needs, read from the cluster and the repository."""
        assert job.deploy is not None and job.environment is not None and run.spec is not None
        env_name = job.environment.name
        environment = self.environment(namespace, env_name)
        if environment is None:
            raise DeployError(
                f"no Environment in namespace {namespace} serves environment {env_name!r} "
                f"(by its name, its slug {object_name(env_name)!r}, or spec.names)"
            )
        spec = environment.get("spec") or {}
        target = target_namespace(spec["namespace"], env_name)
        if not re.fullmatch(DNS_LABEL_PATTERN, target) or len(target) > DNS_LABEL_MAX:
            raise DeployError(
                f"environment {env_name!r}: the target namespace {spec['namespace']!r} expands "
                f"to {target!r}, which is no namespace name"
            )
        config = await self._kubeconfig(namespace, spec) if kubeconfig else b""
        if pipeline.source is None:
            raise DeployError(
                "a deploy job reads templates from the pipeline's source: set spec.source"
            )
        revision = run.spec.revision
        sha = revision.sha
        if sha is None:
            raise DeployError("the run's commit is not known yet")
        files, changed = await self.sources.deploy_inputs(
            namespace, pipeline, sha, revision.before_sha, job.deploy.templates
        )
        url = spec.get("url") or job.environment.url or ""
        variables = {
            **pipeline.variables,
            **job.variables,
            **(spec.get("variables") or {}),
            "CI_ENVIRONMENT_NAME": env_name,
            "CI_ENVIRONMENT_SLUG": environment_slug(env_name),
            "CI_ENVIRONMENT_URL": url,
            "CI_PIPELINE_ID": run.metadata.uid or "",
            **run.spec.variables,
        }
        timeout = job.deploy.timeout
        return DeployRequest(
            kubeconfig=config,
            context=spec.get("context"),
            namespace=target,
            environment=env_name,
            environment_object=environment["metadata"]["name"],
            pipeline=run.pipeline_name or "",
            run=run.metadata.name,
            job=job.name,
            ref=revision.ref,
            sha=sha,
            files=files,
            changed_paths=changed,
            version_paths=job.deploy.version_paths,
            hash_paths=job.deploy.hash_paths,
            variables=variables,
            rollback=job.deploy.rollback,
            rollout_seconds=parse_duration(timeout) if timeout else DEFAULT_ROLLOUT_SECONDS,
            built=dict(self.built((namespace, run.metadata.name))),
        )

    async def _kubeconfig(self, namespace: str, spec: dict[str, Any]) -> bytes:
        """The Environment's kubeconfig, from the credentials namespace: never from the team's
        own namespace, where anyone with `edit` could read it or swap it. Only Secrets made for
        the Environment's namespace (`<namespace>.<...>`, as `conveyor env add` names them): an
        Environment of one team never deploys with another team's credentials."""
        secret_ref = spec.get("kubeconfigSecret") or {}
        name = secret_ref.get("name") or ""
        if not name.startswith(f"{namespace}."):
            raise KubeconfigError(
                f"the environment's kubeconfig Secret {name!r} is not one of namespace "
                f"{namespace}: its name must start with {namespace + '.'!r} (conveyor env add)"
            )
        try:
            data = await self.sources.credentials(self.credentials_namespace, name)
        except SourceUnavailable as e:  # missing, or not readable: the environment's problem
            raise KubeconfigError(f"the environment's kubeconfig: {e}") from e
        key = secret_ref.get("key", "kubeconfig")
        kubeconfig = (data or {}).get(key)
        if not kubeconfig:
            raise KubeconfigError(
                f"the environment's kubeconfig Secret {self.credentials_namespace}/{name} "
                f"has no key {key!r}"
            )
        return bytes(kubeconfig)
