"""One deploy of one revision to one environment, start to end (synchronous: run it in a thread).

The last good deployment of each environment is kept in a ConfigMap in the target namespace
(`conveyor-release-<environment>`), as Helm keeps releases beside what it deploys: the next deploy
prunes what that one applied and this one no longer has, and a failed rollout can roll back to it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from conveyor.api.pipelinerun import DeploymentRecord
from conveyor.deploy import (
    DeployError,
    DeployRecord,
    apply,
    deploy_variables,
    label_selector,
    prune,
    render_templates,
    rollback,
    target_client,
    wait_rollout,
)
from conveyor.deploy.cluster import translated
from conveyor.engine.names import label_value, ref_slug, short_hash

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}


@dataclass(frozen=True)
class DeployRequest:
    kubeconfig: bytes = field(repr=False)  # never printed
    context: str | None
    namespace: str
    environment: str
    pipeline: str
    # The Environment object serving `environment` (another name for a slug or pattern match).
    environment_object: str
    run: str
    job: str
    ref: str
    sha: str
    files: Mapping[str, bytes] = field(repr=False)
    changed_paths: frozenset[str] | None
    version_paths: tuple[str, ...]
    hash_paths: tuple[str, ...]
    variables: Mapping[str, str] = field(repr=False)
    rollback: bool
    rollout_seconds: float
    # The images an Approval was given for (None: the job is not gated). A gated deploy applies
    # only what was approved, and an Approval that names no image holds it to none.
    approved_images: tuple[str, ...] | None = None
    # What the run's build jobs pushed: image as built -> digest. The templates' references to
    # those images are pinned to the digest, so exactly the built image deploys.
    built: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployResult:
    job: str
    environment: str
    namespace: str
    sha: str
    version: str
    result: str  # Succeeded | Failed | RolledBack
    images: tuple[str, ...] = ()
    objects: int = 0
    pruned: int = 0
    message: str = ""
    finished: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def summary(self) -> str:
        return (
            f"{self.objects} objects applied to {self.environment} "
            f"(namespace {self.namespace}), {self.pruned} pruned; version {self.version}"
        )

    def record(self) -> DeploymentRecord:
        """The run's status.deployments entry."""
        return DeploymentRecord(
            job=self.job,
            environment=self.environment,
            namespace=self.namespace,
            sha=self.sha,
            version=self.version[:512],
            result=self.result,
            images=self.images[:20],
            objects=self.objects,
            pruned=self.pruned,
            message=self.message[:512] or None,
            finished_at=self.finished,
        )


class RolloutFailed(DeployError):
    """The objects were applied but did not become ready; `result` says what stands now."""

    rollout = True

    def __init__(self, message: str, result: DeployResult) -> None:
        super().__init__(message)
        self.result = result


def images_of(manifests: list[dict[str, Any]]) -> tuple[str, ...]:
    found: list[str] = []
    for m in manifests:
        if m.get("kind") not in WORKLOADS:
            continue
        for c in _containers(m):
            if c.get("image") and c["image"] not in found:
                found.append(c["image"])
    return tuple(found)


def _kinds(objects: list[Any]) -> set[tuple[str, str]]:
    return {(o.api_version, o.kind) for o in objects}


def _record_name(environment: str) -> str:
    """One record per environment name: names that slug alike (case, `/`, length) get a hash of
    the exact name, so two environments never share (and prune from) one record."""
    slugged = ref_slug(environment)
    if slugged == environment and len(slugged) <= 40:
        return f"conveyor-release-{slugged}"
    return f"conveyor-release-{slugged[:40].rstrip('-')}-{short_hash(environment)}"


def load_record(api: client.ApiClient, namespace: str, environment: str) -> DeployRecord | None:
    # translated(): connection trouble becomes TargetUnavailable (retried), a refusal such as
    # 403 a DeployError (permanent: retrying would not help). No record yet is no error.
    with translated("reading the last deployment"):
        try:
            cm = client.CoreV1Api(api).read_namespaced_config_map(
                _record_name(environment), namespace
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
    raw = (cm.data or {}).get("record.json")
    return DeployRecord.from_dict(json.loads(raw)) if raw else None


def save_record(
    api: client.ApiClient,
    namespace: str,
    environment: str,
    record: DeployRecord,
    request: DeployRequest,
    version: str,
) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": _record_name(environment),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "conveyor"},
            "annotations": {
                "conveyor.dev/pipelinerun": request.run,
                "conveyor.dev/job": request.job,
                "conveyor.dev/sha": request.sha,
                "conveyor.dev/version": version[:256],
            },
        },
        "data": {"record.json": json.dumps(record.to_dict(), sort_keys=True)},
    }
    try:
        client.CoreV1Api(api).patch_namespaced_config_map(
            body["metadata"]["name"],
            namespace,
            body,
            field_manager="conveyor",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as e:
        raise DeployError(f"recording the deployment: {e.status} {e.reason}") from e


def render_request(request: DeployRequest) -> tuple[str, list[dict[str, Any]]]:
    """The VERSION and the manifests a deploy applies (pure; raises RenderError)."""
    variables = deploy_variables(
        request.ref,
        request.sha,
        request.changed_paths,
        version_paths=request.version_paths,
        hash_paths=request.hash_paths,
        extra=request.variables,
    )
    return variables["VERSION"], pin_built(
        render_templates(request.files, variables), request.built
    )


def pin_built(manifests: list[dict[str, Any]], built: Mapping[str, str]) -> list[dict[str, Any]]:
    """Workload containers whose image is one the run built name it by its digest too
    (`name:tag@sha256:...`): the tag can move, the digest cannot."""
    if not built:
        return manifests
    for m in manifests:
        if m.get("kind") not in WORKLOADS:
            continue
        for c in _containers(m):
            digest = built.get(c.get("image") or "")
            if digest:
                c["image"] = f"{c['image']}@{digest}"
    return manifests


def _containers(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    pod = ((spec.get("template") or {}).get("spec")) or spec
    return (pod.get("initContainers") or []) + (pod.get("containers") or [])


def preview_images(request: DeployRequest) -> tuple[str, ...]:
    """The images a deploy would apply (what an Approval records); the target is not touched."""
    return images_of(render_request(request)[1])


def run_stop(request: DeployRequest) -> DeployResult:
    """Stops an environment (GitLab's `environment: action: stop`): deletes what the last
    deploy applied there, by its record, and the record. Raises DeployError, KubeconfigError
    and TargetUnavailable (the caller retries)."""
    api = target_client(request.kubeconfig, request.context, read_timeout=10.0, retries=0)
    labels = {
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/environment": label_value(request.environment),
        "conveyor.dev/pipeline": label_value(request.pipeline),
    }
    common: dict[str, Any] = {  # DeployResult fields by name
        "job": request.job,
        "environment": request.environment,
        "namespace": request.namespace,
        "sha": request.sha,
        "version": "",
    }
    previous = load_record(api, request.namespace, request.environment)
    if previous is None:
        message = f"nothing to stop: no deployment of {request.environment} is recorded there"
        return DeployResult(**common, result="Succeeded", message=message)
    pruned = prune(
        api,
        request.namespace,
        label_selector(labels),
        [],
        previous.kinds,
        namespaces=previous.namespaces,
    )
    with translated("deleting the deployment record"):
        try:
            client.CoreV1Api(api).delete_namespaced_config_map(
                _record_name(request.environment), request.namespace
            )
        except ApiException as e:
            if e.status != 404:
                raise
    message = f"stopped {request.environment}: {len(pruned)} objects deleted"
    return DeployResult(**common, result="Succeeded", pruned=len(pruned), message=message)


def run_deploy(request: DeployRequest) -> DeployResult:
    """Render, apply, prune, wait for the rollout, roll back if asked. Raises RenderError,
    KubeconfigError, DeployError (RolloutFailed for a rollout that did not complete; also when
    the templates now render other images than the approved ones) and TargetUnavailable (the
    caller retries)."""
    version, manifests = render_request(request)
    images = images_of(manifests)
    if request.approved_images is not None and images != request.approved_images:
        raise DeployError(
            f"the approval was given for images {', '.join(request.approved_images)}, but the "
            f"templates now render {', '.join(images) or 'none'} (did the environment's "
            "variables change since?); nothing was applied"
        )
    # Short reads, no client-level retries: the executor retries the whole deploy with backoff,
    # so a cluster that is down is noticed (and said) in seconds, not minutes.
    api = target_client(request.kubeconfig, request.context, read_timeout=10.0, retries=0)
    labels = {
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/environment": label_value(request.environment),
        "conveyor.dev/pipeline": label_value(request.pipeline),
    }
    selector = label_selector(labels)
    previous = load_record(api, request.namespace, request.environment)
    applied = apply(api, request.namespace, manifests, labels=labels)
    outcome = wait_rollout(api, applied.objects, timeout_seconds=request.rollout_seconds)
    pruned: list[Any] = []
    if outcome.ok:  # prune only once the new revision stands: a rollback may still need them
        pruned = prune(
            api,
            request.namespace,
            selector,
            [o.key for o in applied.objects],
            _kinds(applied.objects) | (previous.kinds if previous else set()),
            namespaces=previous.namespaces if previous else (),
        )
    common: dict[str, Any] = {  # DeployResult fields by name
        "job": request.job,
        "environment": request.environment,
        "namespace": request.namespace,
        "sha": request.sha,
        "version": version,
        "images": images,
        "objects": len(applied.objects),
        "pruned": len(pruned),
    }
    if not outcome.ok:
        message = f"rollout failed: {outcome.message}"
        if request.rollback and previous is not None:
            restored_apply = rollback(
                api,
                request.namespace,
                previous,
                labels=labels,
                labels_selector=selector,
                failed_kinds=_kinds(applied.objects),
            )
            restored = wait_rollout(
                api, restored_apply.objects, timeout_seconds=request.rollout_seconds
            )
            message += (
                "; rolled back to the previous revision"
                if restored.ok
                else f"; rollback did not become ready either: {restored.message}"
            )
            raise RolloutFailed(
                message, DeployResult(**common, result="RolledBack", message=message)
            )
        raise RolloutFailed(message, DeployResult(**common, result="Failed", message=message))
    save_record(api, request.namespace, request.environment, applied.record(), request, version)
    done = DeployResult(**common, result="Succeeded")
    return DeployResult(**common, result="Succeeded", message=done.summary())
