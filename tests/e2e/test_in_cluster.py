"""The README's install path, done for real: the operator's image built from the project's
Dockerfile (hack/operator-image.sh, buildah) and pushed to the local registry under the name
deploy/ runs, then `kubectl apply -f crds/ -f deploy/` into the ci cluster. The operator runs
as a pod on the real node (the test patches only placement and the replica count), reaches the
API server from the pod through the `kubernetes` Service, and drives a real job to Succeeded
under deploy/'s ServiceAccount, the one identity the admission policies let make Conveyor's
Jobs. The test's own operator process is stopped meanwhile (two cluster-wide operators would
both act on the run) and started again afterwards."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.e2e.conveyor import (
    OPERATOR_NS,
    OPERATOR_SA,
    OPERATOR_USER,
    Conveyor,
    Operator,
    audit_entries,
    conveyor_cli,
    job_status,
    pipeline,
    run,
)
from tests.e2e.realnode import RealNodes
from tests.e2e.support import ROOT, Clusters, wait_until

DEPLOYMENT = "conveyor-operator"
SELECTOR = "app.kubernetes.io/name=conveyor,app.kubernetes.io/component=operator"


@pytest.fixture(scope="module")
def operator_image(clusters: Clusters) -> str:
    """Built (or found in the cache) and pushed to the local registry."""
    real = RealNodes.load()
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "operator-image.sh"), "--push", real.registry],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"the operator image did not build:\n{proc.stderr[-4000:]}"
    return proc.stdout.strip()


@pytest.fixture
def in_cluster(
    clusters: Clusters, operator: Operator, operator_image: str
) -> Iterator[client.CoreV1Api]:
    """deploy/ applied as the README says, the test's operator process stopped meanwhile;
    afterwards the Deployment, its Services and its Lease are deleted and the process runs
    again."""
    core = client.CoreV1Api(clusters.api("ci"))
    operator.stop()
    try:
        clusters.kubectl("ci", "apply", "-f", str(ROOT / "crds"), "-f", str(ROOT / "deploy"))
        real = RealNodes.load()
        # The local clusters' specifics, in the test and not in deploy/: the real node (kwok's
        # fake kubelets run no container), and one replica on this small machine.
        patch = {
            "spec": {
                "replicas": 1,
                "template": {"spec": real.placement()},
            }
        }
        clusters.kubectl(
            "ci", "-n", OPERATOR_NS, "patch", "deployment", DEPLOYMENT, "-p", json.dumps(patch)
        )
        yield core
    finally:
        clusters.kubectl(
            "ci", "delete", "--wait=true", "-f", str(ROOT / "deploy" / "20-operator.yaml"),
            check=False,
        )  # fmt: skip
        wait_until(
            lambda: not core.list_namespaced_pod(OPERATOR_NS, label_selector=SELECTOR).items,
            timeout=120,
            what="the operator's pods gone",
        )
        clusters.kubectl(
            "ci", "-n", OPERATOR_NS, "delete", "lease", DEPLOYMENT, "--ignore-not-found",
            check=False,
        )  # fmt: skip
        operator.start()


def test_the_operator_installed_with_kubectl_apply_runs_a_real_job_from_its_pod(
    clusters: Clusters, in_cluster: client.CoreV1Api, namespace: str
) -> None:
    core = in_cluster
    real = RealNodes.load()
    clusters.kubectl(
        "ci", "-n", OPERATOR_NS, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s"
    )
    pods = core.list_namespaced_pod(OPERATOR_NS, label_selector=SELECTOR).items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.spec.node_name == real.nodes["ci"]["name"]
    assert pod.spec.service_account_name == OPERATOR_SA
    assert pod.spec.containers[0].image == "conveyor:0.1.0"
    # It checked its identity against the admission policies at start, from inside the pod.
    logs = core.read_namespaced_pod_log(pod.metadata.name, OPERATOR_NS)
    assert f"running as {OPERATOR_USER}" in logs, logs[-3000:]

    conveyor = Conveyor(clusters, namespace)
    conveyor.create(
        pipeline(
            "in-cluster",
            [
                {
                    "name": "hello",
                    "stage": "test",
                    "image": "busybox:1.36",
                    "script": ['echo "driven by the operator in its pod: $CI_JOB_NAME"'],
                }
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("in-cluster-1", "in-cluster"))
    done = conveyor.wait_finished("in-cluster-1", timeout=240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert job_status(done, "hello")["exitCode"] == 0
    out = conveyor_cli(clusters, "logs", "in-cluster-1", "hello", "-n", namespace)
    assert "driven by the operator in its pod: hello" in out.stdout.splitlines(), out.stderr

    # The Job was made by deploy/'s ServiceAccount, from the pod (its user agent names the
    # pod's host name): the admission policies let no other identity make it.
    made = wait_until(
        lambda: audit_entries(
            lambda e: (
                e.get("verb") == "create"
                and e.get("objectRef", {}).get("resource") == "jobs"
                and e.get("objectRef", {}).get("namespace") == namespace
            )
        ),
        what="the audit record of the Job's creation",
    )
    assert {e["user"]["username"] for e in made} == {OPERATOR_USER}
    assert all(f"({pod.metadata.name}_" in e.get("userAgent", "") for e in made), made
