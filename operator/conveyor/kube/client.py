"""Thin wrappers over the Kubernetes client: configuration the way kubectl finds it, and the few
calls Conveyor makes, with "already exists" and "not found" treated as the idempotent outcomes."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from conveyor.api.meta import GROUP, VERSION
from conveyor.kube.jobspec import LABEL_RUN
from conveyor.kube.stop import pods_to_stop, stop_patch

PIPELINES = "pipelines"
PIPELINERUNS = "pipelineruns"
ENVIRONMENTS = "environments"
APPROVALS = "approvals"
ARTIFACTDOWNLOADS = "artifactdownloads"
MERGE_PATCH = "application/merge-patch+json"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubeConfigError(Exception):
    """No usable cluster configuration; the message says what was looked for."""


@dataclass(frozen=True)
class Target:
    """Which cluster and as whom, as kubectl's --kubeconfig and --context say."""

    kubeconfig: str | None = None
    context: str | None = None
    retries: int | None = None  # urllib3's per request; None: its default (the operator's)

    def in_cluster(self) -> bool:
        return (
            self.kubeconfig is None
            and self.context is None
            and not os.environ.get("KUBECONFIG")
            and "KUBERNETES_SERVICE_HOST" in os.environ
            and not Path("~/.kube/config").expanduser().exists()
        )

    def configuration(self) -> client.Configuration:
        cfg = client.Configuration()
        where = self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        if self.kubeconfig is not None and not Path(self.kubeconfig).expanduser().is_file():
            raise KubeConfigError(f"kubeconfig {self.kubeconfig}: no such file")
        try:
            if self.in_cluster():
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(
                    config_file=self.kubeconfig,
                    context=self.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark is not None else ""
            raise KubeConfigError(f"kubeconfig {where} is not valid YAML{line}") from None
        except UnicodeDecodeError:
            raise KubeConfigError(f"kubeconfig {where} is not UTF-8 text") from None
        except (config.ConfigException, OSError, TypeError, AttributeError, ValueError) as e:
            # The client's own words, on one line ("Invalid kube-config file. ...").
            text = " ".join(str(e).split()) or type(e).__name__
            raise KubeConfigError(f"cannot load cluster configuration from {where}: {text}") from e
        if self.retries is not None:
            cfg.retries = self.retries
        return cfg

    def api_client(self) -> client.ApiClient:
        return client.ApiClient(self.configuration())

    def default_namespace(self) -> str:
        """The context's namespace, as kubectl would use it; `default` when none is set."""
        if self.in_cluster():
            try:
                return IN_CLUSTER_NAMESPACE.read_text().strip()
            except OSError:
                return "default"
        try:
            contexts, current = config.list_kube_config_contexts(config_file=self.kubeconfig)
        except (config.ConfigException, OSError, yaml.YAMLError, ValueError, TypeError):
            return "default"  # the configuration's own error is reported when it is loaded
        chosen = next((c for c in contexts if c["name"] == self.context), None) or current
        return ((chosen or {}).get("context") or {}).get("namespace") or "default"


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The UID of the object's controller (its ownerReference with controller: true)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def create_ignoring_conflict(create: Any, *args: Any, **kwargs: Any) -> Any | None:
    """Calls a create_* method; an object that already exists is success (returns None)."""
    try:
        return create(*args, **kwargs)
    except ApiException as e:
        if e.status == 409:
            return None
        raise


def delete_ignoring_missing(delete: Any, *args: Any, **kwargs: Any) -> None:
    try:
        delete(*args, **kwargs)
    except ApiException as e:
        if e.status != 404:
            raise


class Kube:
    """The calls the operator and the CLI make, over one ApiClient."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # -- conveyor.dev objects
    def get_run(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PIPELINERUNS, name
        )

    def list_runs(
        self, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """The runs of `namespace`, or of every namespace (None)."""
        kwargs = {"label_selector": label_selector} if label_selector else {}
        if namespace is None:
            return self.custom.list_cluster_custom_object(GROUP, VERSION, PIPELINERUNS, **kwargs)[
                "items"
            ]
        return self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PIPELINERUNS, **kwargs
        )["items"]

    def watch_runs(
        self, namespace: str | None, name: str | None = None, *, timeout: int = 3600
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, run) as runs change: each existing one first (ADDED), then changes, for
        up to `timeout` seconds. `namespace` None: every namespace."""
        from kubernetes import watch

        fields = {"field_selector": f"metadata.name={name}"} if name else {}
        if namespace is None:
            call: Any = self.custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, PIPELINERUNS)
        else:
            call = self.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, namespace, PIPELINERUNS)
        stream = watch.Watch().stream(call, *args, timeout_seconds=timeout, **fields)
        for event in stream:
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                yield event["type"], event["object"]

    def list_approvals(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, APPROVALS)[
            "items"
        ]

    def list_events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """The core/v1 Events about one object, as the API returns them (JSON)."""
        response = self.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or ())

    def create_run(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PIPELINERUNS, body
        )

    def patch_run(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PIPELINERUNS, name, patch, _content_type=MERGE_PATCH
        )

    def patch_run_status(
        self, namespace: str, name: str, patch: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Applies a merge patch of the status (see kube.patch.merge_patch), only to the run
        at `resource_version` when given (else 409 Conflict). The status subresource ignores a
        uid in the patch, so the version is what tells a run from another of the same name."""
        body: dict[str, Any] = {"status": patch}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PIPELINERUNS, name, body, _content_type=MERGE_PATCH
        )

    def delete_run(self, namespace: str, name: str) -> None:
        delete_ignoring_missing(
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PIPELINERUNS,
            name,
            propagation_policy="Background",
        )

    def _patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """A merge patch of one of Conveyor's objects' status subresource."""
        return self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status}, _content_type=MERGE_PATCH
        )

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PIPELINES, name)

    def patch_pipeline_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return self._patch_status(PIPELINES, namespace, name, status)

    def list_environments(self, namespace: str) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, ENVIRONMENTS)
        return list(listed.get("items") or ())

    def patch_environment_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return self._patch_status(ENVIRONMENTS, namespace, name, patch)

    def create_approval(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return create_ignoring_conflict(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, APPROVALS, body
        )

    def delete_approval(self, namespace: str, name: str) -> None:
        delete_ignoring_missing(
            self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, APPROVALS, name
        )

    def patch_approval_status(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        return self._patch_status(APPROVALS, namespace, name, patch)

    def create_download(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, ARTIFACTDOWNLOADS, body
        )

    def patch_download_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        return self._patch_status(ARTIFACTDOWNLOADS, namespace, name, status)

    def delete_download(self, namespace: str, name: str) -> None:
        delete_ignoring_missing(
            self.custom.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            ARTIFACTDOWNLOADS,
            name,
        )

    def watch_download(
        self, namespace: str, name: str, timeout: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, request) as ArtifactDownload `name` changes, from its current state, for
        up to `timeout` seconds."""
        from kubernetes import watch

        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            ARTIFACTDOWNLOADS,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, timeout),
        )
        for event in stream:
            if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                yield event["type"], event["object"]

    # -- batch/v1 Jobs and events
    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        return create_ignoring_conflict(self.batch.create_namespaced_job, namespace, body)

    def delete_job(self, namespace: str, name: str) -> None:
        # Background: the pods go with the Job; the run need not wait for them.
        delete_ignoring_missing(
            self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
        )

    def stop_job(self, namespace: str, name: str) -> None:
        """Stops a Job's pods and keeps them, logs included (kube.stop); a Job without a pod
        is deleted."""
        pods = self.list_job_pods(namespace, name)
        names = pods_to_stop(pods)
        if names is None:
            self.delete_job(namespace, name)
            return
        for pod in names:
            try:
                self.core.patch_namespaced_pod(pod, namespace, stop_patch())
            except ApiException as e:
                if e.status != 404:  # gone meanwhile: nothing left to stop
                    raise

    def list_job_pods(
        self, namespace: str, job_name: str, job_uid: str | None = None
    ) -> list[dict[str, Any]]:
        """The pods of one of Conveyor's Jobs, as the API returns them (JSON, not client models).
        With `job_uid`, only pods that Job's controller made: a pod anyone labelled alike (or
        a Job of someone else's making) never speaks for it."""
        response = self.core.list_namespaced_pod(
            namespace,
            label_selector=f"batch.kubernetes.io/job-name={job_name},{LABEL_RUN}",
            _preload_content=False,
        )
        pods = list(json.loads(response.data).get("items") or ())
        if job_uid is None:
            return pods
        return [p for p in pods if controller_uid(p) == job_uid]

    def pod_log(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        follow: bool,
        tail: int | None,
        opened: Any = None,
    ) -> Iterator[bytes]:
        """A container's log as it arrives (the kubelet's bytes, undecoded). `opened` is
        called with the HTTP response, which another thread may close to end a follow."""
        response = self.core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            follow=follow,
            tail_lines=tail,
            _preload_content=False,
        )
        if opened is not None:
            opened(response)
        try:
            yield from response.stream(4096)
        finally:
            response.release_conn()

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.core.create_namespaced_event(namespace, body)

    def create_secret(self, namespace: str, body: dict[str, Any]) -> str:
        """Creates a Secret (named by the server: `generateName`); returns its name."""
        created = self.core.create_namespaced_secret(namespace, body)
        return str(created.metadata.name)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's decoded data. Callers pass it on and never log it."""
        secret = self.core.read_namespaced_secret(name, namespace)
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
