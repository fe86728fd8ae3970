"""deploy/optional/privileged-pool.yaml: pods of a privileged namespace (where a developer with
`edit` may create a privileged pod, which owns its node) go only to the nodes of their pool,
never to the operator's. Tried as the developer: their own pods, a pod naming the operator's node,
escaping through labels; and Conveyor's jobs still run there (on the real node, labelled)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conveyor import Conveyor, bind, job_status, pipeline, run
from tests.e2e.realnode import RealNodes
from tests.e2e.support import ROOT, Clusters, wait_until

MANIFEST = ROOT / "deploy" / "optional" / "privileged-pool.yaml"
POOL = "conveyor.dev/pool"
POOL_TOLERATION = {"key": POOL, "operator": "Equal", "value": "privileged", "effect": "NoSchedule"}


def as_developer(clusters: Clusters) -> client.CoreV1Api:
    return client.CoreV1Api(clusters.api("ci-as-developer"))


def privileged_pod(name: str, **spec: Any) -> dict[str, Any]:
    """What a developer would use to own a node: privileged, the host's PID namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "hostPID": True,
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36",
                    "command": ["sleep", "3600"],
                    "securityContext": {"privileged": True},
                }
            ],
            **spec,
        },
    }


def dry_run_selector(clusters: Clusters, ns: str) -> dict[str, str] | None:
    """The nodeSelector the API server gives a pod of `ns` (created as a dry run)."""
    made = client.CoreV1Api(clusters.api("ci")).create_namespaced_pod(
        ns, privileged_pod(f"probe-{uuid.uuid4().hex[:6]}"), dry_run="All"
    )
    return made.spec.node_selector


@pytest.fixture(scope="module")
def policies(clusters: Clusters) -> Iterator[None]:
    """The manifest applied, in effect (policies reach the API server's admission a moment after
    they are stored), and removed afterwards, with the same wait."""
    core = client.CoreV1Api(clusters.api("ci"))
    probe = f"pool-probe-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        {
            "metadata": {
                "name": probe,
                "labels": {"pod-security.kubernetes.io/enforce": "privileged"},
            }
        }
    )
    wait_until(lambda: core.read_namespaced_service_account("default", probe), what="default SA")
    clusters.kubectl("ci", "apply", "-f", str(MANIFEST))
    wait_until(
        lambda: (dry_run_selector(clusters, probe) or {}).get(POOL) == "privileged",
        timeout=60,
        what="the pool policies to be in effect",
    )
    yield
    clusters.kubectl("ci", "delete", "-f", str(MANIFEST), "--ignore-not-found")
    wait_until(
        lambda: POOL not in (dry_run_selector(clusters, probe) or {}),
        timeout=60,
        what="the pool policies to be gone",
    )
    core.delete_namespace(probe)


@pytest.fixture
def privileged_ns(clusters: Clusters, namespace: str) -> str:
    """The test's namespace at Pod Security level privileged, the developer with `edit` there."""
    clusters.kubectl(
        "ci", "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged"
    )
    bind(clusters, namespace, [("developer", "edit")])
    return namespace


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status == 403, info.value
    return str(json.loads(info.value.body)["message"])


def test_a_developers_privileged_pod_is_held_to_the_pool_whatever_it_asks_for(
    policies: None, clusters: Clusters, privileged_ns: str, real: RealNodes
) -> None:
    dev = as_developer(clusters)
    # Asking for the real node (which is not in the pool) and for another pool, with a
    # toleration of its own: the pool's selector wins, the pod's own toleration stays.
    asked = privileged_pod(
        "owner",
        nodeSelector={**real.node_selector, POOL: "system"},
        tolerations=real.tolerations,
    )
    made = dev.create_namespaced_pod(privileged_ns, asked)
    assert made.spec.node_selector == {**real.node_selector, POOL: "privileged"}
    tolerations = [t.to_dict() for t in made.spec.tolerations]
    assert {k: v for k, v in tolerations[-1].items() if v is not None} == POOL_TOLERATION
    own = {(t["key"], t.get("value"), t["effect"]) for t in real.tolerations}
    assert own <= {(t["key"], t["value"], t["effect"]) for t in tolerations}

    # No node is in the pool: the scheduler finds none, so the pod runs nowhere.
    def unschedulable() -> bool:
        conditions = dev.read_namespaced_pod("owner", privileged_ns).status.conditions or []
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in conditions
        )

    wait_until(unschedulable, timeout=60, what="the pod to be unschedulable")
    assert dev.read_namespaced_pod("owner", privileged_ns).spec.node_name is None


def test_a_pod_naming_a_node_outside_the_pool_is_refused_by_that_nodes_kubelet(
    policies: None, clusters: Clusters, privileged_ns: str, real: RealNodes
) -> None:
    """Skipping the scheduler: the pod names the real node (standing for the operator's node)
    itself. The real kubelet checks the nodeSelector the policy set and refuses to run it."""
    dev = as_developer(clusters)
    node = real.nodes["ci"]["name"]
    dev.create_namespaced_pod(privileged_ns, privileged_pod("direct", nodeName=node))

    def rejected() -> Any:
        pod = dev.read_namespaced_pod("direct", privileged_ns)
        return pod if pod.status.phase == "Failed" else None

    pod = wait_until(rejected, timeout=90, what="the kubelet to reject the pod")
    assert pod.status.reason == "NodeAffinity", pod.status
    assert not pod.status.container_statuses or not any(
        s.state.running or s.state.terminated for s in pod.status.container_statuses
    )


def test_the_developer_cannot_leave_the_rules_by_labels(
    policies: None, clusters: Clusters, privileged_ns: str, real: RealNodes
) -> None:
    dev = as_developer(clusters)
    exempt = {"metadata": {"labels": {"conveyor.dev/any-node": "true"}}}
    message = refusal(dev.patch_namespace, privileged_ns, exempt)
    assert 'cannot patch resource "namespaces"' in message
    into_pool = {"metadata": {"labels": {POOL: "privileged"}}}
    message = refusal(dev.patch_node, real.nodes["ci"]["name"], into_pool)
    assert 'cannot patch resource "nodes"' in message


def test_without_the_mutation_a_pod_outside_the_pool_is_refused(
    policies: None, clusters: Clusters, privileged_ns: str
) -> None:
    """The validating policy is the backstop should the mutating one be gone."""
    admin = client.AdmissionregistrationV1Api(clusters.api("ci"))
    admin.delete_mutating_admission_policy_binding("conveyor-privileged-pool")
    try:
        dev = as_developer(clusters)

        def refused_now() -> str | None:
            try:
                dev.create_namespaced_pod(privileged_ns, privileged_pod("bare"), dry_run="All")
            except ApiException as e:
                return json.loads(e.body)["message"] if e.status == 403 else None
            return None

        message = wait_until(refused_now, timeout=60, what="the pod to be refused")
        assert "run only on the nodes labelled conveyor.dev/pool=privileged" in message
        assert "developer" in message
        placed = privileged_pod("placed", nodeSelector={POOL: "privileged"})
        dev.create_namespaced_pod(privileged_ns, placed, dry_run="All")
    finally:
        clusters.kubectl("ci", "apply", "-f", str(MANIFEST))
        wait_until(
            lambda: (dry_run_selector(clusters, privileged_ns) or {}).get(POOL) == "privileged",
            timeout=60,
            what="the mutating policy back in effect",
        )


def test_conveyors_jobs_in_a_privileged_namespace_run_in_the_pool(
    policies: None,
    clusters: Clusters,
    privileged_ns: str,
    conveyor: Conveyor,
    real: RealNodes,
) -> None:
    """With the real node in the pool, a job of a privileged namespace runs there for real."""
    node = real.nodes["ci"]["name"]
    core = client.CoreV1Api(clusters.api("ci"))
    core.patch_node(node, {"metadata": {"labels": {POOL: "privileged"}}})
    try:
        jobs = [
            {
                "name": "in-the-pool",
                "stage": "test",
                "image": "busybox:1.36",
                "script": ["echo ran in the pool"],
            }
        ]
        conveyor.create(pipeline("pooled", jobs, **real.placement()))
        conveyor.create(run("pooled-1", "pooled"))
        done = conveyor.wait_finished("pooled-1", timeout=180)
        assert job_status(done, "in-the-pool")["phase"] == "Succeeded", done["status"]
        (pod,) = core.list_namespaced_pod(privileged_ns).items
        assert pod.spec.node_name == node
        assert pod.spec.node_selector[POOL] == "privileged"
    finally:
        core.patch_node(node, {"metadata": {"labels": {POOL: None}}})
