"""Deploying the seed's go-app templates into the local test/prod clusters: server-side apply,
rollout, re-apply, prune, failed rollout and rollback, cluster-scoped objects, errors."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conveyor.deploy import (
    ApplyResult,
    DeployError,
    TargetUnavailable,
    apply,
    deploy_variables,
    dynamic,
    kinds_of,
    label_selector,
    prune,
    render_templates,
    rollback,
    target_client,
    wait_rollout,
)
from tests.e2e.support import ROOT, Clusters, wait_until

pytestmark = pytest.mark.e2e

TEMPLATES = ROOT / "examples" / "go-app" / "templates"
SHA1 = "1111111111111111111111111111111111111111"
SHA2 = "2222222222222222222222222222222222222222"


def templates(*without: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(TEMPLATES).iterdir() if p.name not in without}


def render(sha: str, *without: str) -> list[dict[str, Any]]:
    variables = deploy_variables(
        "master", sha, frozenset({"src/server.go"}), extra={"APP_FQDN": "go-app.prod.example.com"}
    )
    return render_templates(templates("sm.yml", *without), variables)


def labels_for(namespace: str) -> dict[str, str]:
    # The pipeline label is unique per test: prune of cluster-scoped kinds selects across the
    # whole cluster, and tests must not prune each other's objects.
    return {
        "conveyor.dev/environment": "prod",
        "conveyor.dev/pipeline": namespace,
        "app.kubernetes.io/managed-by": "conveyor",
    }


def target(clusters: Clusters, context: str = "prod") -> client.ApiClient:
    return target_client(clusters.kubeconfig.read_bytes(), context)


def image_of(apps: client.AppsV1Api, namespace: str) -> str:
    return (
        apps.read_namespaced_deployment("go-app", namespace).spec.template.spec.containers[0].image
    )


def deployment_of(result: ApplyResult) -> dict[str, Any]:
    return next(m for m in result.manifests if m["kind"] == "Deployment")


def test_servicemonitor_without_prometheus_operator_is_a_clear_error(clusters, target_namespace):
    # Other tests install a minimal ServiceMonitor CRD: this one needs a cluster without it.
    clusters.kubectl(
        "prod",
        "delete",
        "crd",
        "servicemonitors.monitoring.coreos.com",
        "--ignore-not-found",
        "--wait=true",
    )
    api = target(clusters)
    variables = deploy_variables("master", SHA1, None, extra={"APP_FQDN": "go-app.example.com"})
    manifests = render_templates(templates(), variables)
    with pytest.raises(DeployError) as e:
        apply(api, target_namespace, manifests, labels=labels_for(target_namespace))
    assert str(e.value) == (
        "ServiceMonitor (monitoring.coreos.com/v1) is not served by the target cluster"
    )
    # Checked before anything was applied: no half deploy.
    apps = client.AppsV1Api(api)
    assert apps.list_namespaced_deployment(target_namespace).items == []


def test_apply_rollout_reapply_and_prune(clusters, target_namespace):
    api = dynamic(target(clusters))  # discovery once for all the calls below
    ns = target_namespace
    labels = labels_for(ns)
    apps = client.AppsV1Api(api.client)

    first = apply(api, ns, render(SHA1), labels=labels)
    assert first.created_namespace is None  # the fixture made it
    assert {(o.kind, o.namespace) for o in first.objects} == {
        ("ServiceAccount", ns),
        ("Service", ns),
        ("Deployment", ns),
        ("HorizontalPodAutoscaler", ns),
        ("Ingress", ns),
    }
    # Dependencies first: the ServiceAccount exists before the Deployment makes pods.
    kinds = [o.kind for o in first.objects]
    assert kinds.index("ServiceAccount") < kinds.index("Deployment")

    result = wait_rollout(api, first.objects, timeout_seconds=60)
    assert result.ok, result.message
    dep = apps.read_namespaced_deployment("go-app", ns)
    assert any(c.type == "Available" and c.status == "True" for c in dep.status.conditions)
    assert dep.status.updated_replicas == dep.spec.replicas == 2
    assert dep.spec.template.spec.containers[0].image.endswith(f":master_{SHA1}")

    # Field manager and labels, on every object.
    for obj in first.objects:
        live = clusters.kubectl_json(
            "prod", "get", obj.kind, obj.name, "-n", ns, "--show-managed-fields"
        )
        managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
        assert ("conveyor", "Apply") in managers, (obj.kind, managers)
        assert labels.items() <= live["metadata"]["labels"].items()
    # Labels go on objects, not into pod templates (a changing label would roll every pod).
    assert "conveyor.dev/pipeline" not in (dep.spec.template.metadata.labels or {})
    assert dep.metadata.labels["app"] == "go-app"  # the template's own labels are kept

    # A new image: the rollout waits for the new generation.
    second = apply(api, ns, render(SHA2), labels=labels)
    new_dep = next(o for o in second.objects if o.kind == "Deployment")
    old_dep = next(o for o in first.objects if o.kind == "Deployment")
    assert new_dep.generation == old_dep.generation + 1
    result = wait_rollout(api, second.objects, timeout_seconds=60)
    assert result.ok, result.message
    dep = apps.read_namespaced_deployment("go-app", ns)
    assert dep.status.observed_generation >= new_dep.generation
    assert image_of(apps, ns).endswith(f":master_{SHA2}")
    assert dep.status.updated_replicas == 2

    # The next revision has no autoscaler.yml: prune deletes the HPA, nothing else.
    previous = second.record()
    third = apply(api, ns, render(SHA2, "autoscaler.yml"), labels=labels)
    deleted = prune(
        api,
        ns,
        label_selector(labels),
        {o.key for o in third.objects},
        kinds_of(previous, third.record()),
        namespaces=previous.namespaces,
    )
    assert deleted == [("autoscaling/v2", "HorizontalPodAutoscaler", ns, "go-app")]
    autoscaling = client.AutoscalingV2Api(api.client)
    wait_until(
        lambda: not autoscaling.list_namespaced_horizontal_pod_autoscaler(ns).items,
        what="the HPA to be deleted",
    )
    assert apps.read_namespaced_deployment("go-app", ns)
    assert client.CoreV1Api(api.client).read_namespaced_service("go-app", ns)
    # Pruning again finds nothing more.
    again = prune(
        api, ns, label_selector(labels), {o.key for o in third.objects}, kinds_of(previous)
    )
    assert again == []


def test_failed_rollout_is_detected_and_rolled_back(clusters, target_namespace):
    api = dynamic(target(clusters))
    ns = target_namespace
    labels = labels_for(ns)
    apps = client.AppsV1Api(api.client)

    good = apply(api, ns, render(SHA1), labels=labels)
    assert wait_rollout(api, good.objects, timeout_seconds=60).ok
    good_record = good.record()

    # The next revision's pods never become ready (kwok keeps them Pending).
    bad_manifests = copy.deepcopy(render(SHA2))
    bad_dep = next(m for m in bad_manifests if m["kind"] == "Deployment")
    bad_dep["spec"]["progressDeadlineSeconds"] = 5
    bad_dep["spec"]["template"]["metadata"]["annotations"]["kwok.conveyor.dev/never-ready"] = "true"
    bad = apply(api, ns, bad_manifests, labels=labels)

    started = time.monotonic()
    result = wait_rollout(api, bad.objects, timeout_seconds=20)
    assert not result.ok
    assert result.reason == "ProgressDeadlineExceeded", result
    assert result.failed is not None and (result.failed.kind, result.failed.name) == (
        "Deployment",
        "go-app",
    )
    assert result.message.startswith(f"Deployment go-app in namespace {ns}: ")
    assert time.monotonic() - started < 20  # failed early, not at the timeout

    back = rollback(
        api,
        ns,
        good_record,
        labels=labels,
        labels_selector=label_selector(labels),
        failed_kinds=bad.record().kinds,
    )
    assert back.pruned == []  # the bad revision added no object
    result = wait_rollout(api, back.objects, timeout_seconds=60)
    assert result.ok, result.message
    dep = apps.read_namespaced_deployment("go-app", ns)
    assert image_of(apps, ns).endswith(f":master_{SHA1}")
    # Server-side apply removed what only the bad revision set.
    assert "kwok.conveyor.dev/never-ready" not in dep.spec.template.metadata.annotations
    assert dep.spec.progress_deadline_seconds == 600
    assert dep.status.updated_replicas == dep.status.available_replicas == 2


def test_timeout_when_no_progress_deadline_applies(clusters, target_namespace):
    api = dynamic(target(clusters, "test"))
    ns = target_namespace
    manifests = render(SHA1)
    dep = next(m for m in manifests if m["kind"] == "Deployment")
    dep["spec"]["template"]["metadata"]["annotations"]["kwok.conveyor.dev/never-ready"] = "true"
    applied = apply(api, ns, manifests, labels=labels_for(ns))
    result = wait_rollout(api, applied.objects, timeout_seconds=3)
    assert not result.ok
    assert result.reason == "Timeout"
    assert "not rolled out after 3s" in result.message
    assert "Deployment go-app" in result.message


def test_cluster_scoped_object_applies_without_namespace_and_is_pruned(clusters, target_namespace):
    api = dynamic(target(clusters))
    ns = target_namespace
    labels = labels_for(ns)
    role_name = f"conveyor-e2e-{ns}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        # A namespace in a cluster-scoped object's metadata is dropped, not an error.
        "metadata": {"name": role_name, "namespace": "ignored"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    rbac = client.RbacAuthorizationV1Api(api.client)
    try:
        first = apply(api, ns, [role, config_map], labels=labels)
        by_kind = {o.kind: o for o in first.objects}
        assert by_kind["ClusterRole"].namespace is None
        assert by_kind["ConfigMap"].namespace == ns
        live = rbac.read_cluster_role(role_name)
        assert live.metadata.labels["conveyor.dev/pipeline"] == ns

        second = apply(api, ns, [config_map], labels=labels)
        deleted = prune(
            api,
            ns,
            label_selector(labels),
            {o.key for o in second.objects},
            kinds_of(first.record(), second.record()),
        )
        assert deleted == [("rbac.authorization.k8s.io/v1", "ClusterRole", None, role_name)]
        wait_until(
            lambda: _gone(lambda: rbac.read_cluster_role(role_name)), what="ClusterRole gone"
        )
    finally:
        try:
            rbac.delete_cluster_role(role_name)
        except ApiException as e:
            if e.status != 404:
                raise


def _gone(read: Any) -> bool:
    try:
        read()
    except ApiException as e:
        return e.status == 404
    return False


def test_namespaces_the_target_is_created_others_are_not_invented(clusters):
    api = dynamic(target(clusters, "test"))
    ns = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api.client)
    elsewhere = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": f"missing-{ns}"},
    }
    here = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}}
    try:
        with pytest.raises(DeployError) as e:
            apply(api, ns, [here, elsewhere], labels=labels_for(ns))
        assert f"namespace missing-{ns} does not exist" in str(e.value)
        assert "ConfigMap x" in str(e.value)
        # The check comes before any change: not even the target namespace was made.
        assert _gone(lambda: core.read_namespace(ns))

        with pytest.raises(DeployError, match="is not allowed for this environment"):
            apply(api, ns, [elsewhere], labels=labels_for(ns), allowed_namespaces={ns})

        result = apply(api, ns, [here], labels=labels_for(ns))
        assert result.created_namespace == ns
        assert core.read_namespaced_config_map("y", ns).metadata.labels == labels_for(ns)
        # The namespace we made carries no labels of ours, so no prune can ever select it.
        assert not (core.read_namespace(ns).metadata.labels or {}).get("conveyor.dev/pipeline")
    finally:
        try:
            core.delete_namespace(ns)
        except ApiException as e:
            if e.status != 404:
                raise


def test_invalid_object_is_refused_before_anything_changes(clusters, target_namespace):
    api = dynamic(target(clusters))
    ns = target_namespace
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good"}}
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad"},
        "spec": {"ports": [{"port": 99999}]},
    }
    with pytest.raises(DeployError) as e:
        apply(api, ns, [good, bad], labels=labels_for(ns))
    assert str(e.value).startswith(f"checking Service bad in namespace {ns}: 422")
    assert "spec.ports[0].port" in str(e.value)
    assert _gone(lambda: client.CoreV1Api(api.client).read_namespaced_config_map("good", ns))


def test_unreachable_target_is_target_unavailable_quickly(clusters, tmp_path):
    doc = json.loads(clusters.kubeconfig.read_text())
    for entry in doc["clusters"]:
        if entry["name"] == "prod":
            entry["cluster"]["server"] = "https://127.0.0.1:1"
    api = target_client(json.dumps(doc).encode(), "prod", connect_timeout=1, read_timeout=2)
    started = time.monotonic()
    with pytest.raises(TargetUnavailable) as e:
        apply(api, "anything", render(SHA1), labels={"a": "b"})
    assert time.monotonic() - started < 10
    assert "unreachable" in str(e.value)
    assert not isinstance(e.value, DeployError)
