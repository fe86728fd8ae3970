"""The images hack/images/kubectl.sh and python.sh stand in for, pulled on the real node under
their public names and run: kubectl reaches the cluster's API server from a pod, the seed's
kubectl_deployer has the tools its deploy script uses, python:3.11-slim is Python 3.11 with pip."""

from __future__ import annotations

from kubernetes import client

from tests.e2e.realnode import RealNodes, pod
from tests.e2e.support import Clusters, wait_for_object


def test_kubectl_and_python_images_run_under_their_public_names(
    clusters: Clusters, namespace: str
) -> None:
    real = RealNodes.load()
    core = client.CoreV1Api(clusters.api("ci"))
    cases = {
        # In-cluster config from the pod's ServiceAccount token, through the kubernetes Service.
        "kubectl": (
            "bitnami/kubectl:latest",
            'kubectl get --raw /version | grep -o \'"gitVersion": *"[^"]*"\' | tr -d \' \'',
            '"gitVersion":"v1.37.2"',
        ),
        "deployer": (
            "operations/images/kubectl_deployer:latest",
            "kubectl version --client | head -1; git --version | cut -d' ' -f1-2; "
            "echo '$HOME' | HOME=/root envsubst",
            "Client Version: v1.37.2\ngit version\n/root",
        ),
        "python": (
            "python:3.11-slim",
            "python -c 'import sys; print(*sys.version_info[:2], sep=\".\")'; "
            "pip --version | cut -d' ' -f1",
            "3.11\npip",
        ),
    }
    for name, (image, script, _) in cases.items():
        core.create_namespaced_pod(namespace, pod(name, script, real, image=image))
    for name, (image, _, expected) in cases.items():
        ended = wait_for_object(
            core.list_namespaced_pod,
            name,
            lambda p: p.status.phase in ("Succeeded", "Failed"),
            namespace=namespace,
            timeout=180,
        )
        log = core.read_namespaced_pod_log(name, namespace).strip()
        assert ended.status.phase == "Succeeded", f"{image}: {log}"
        assert log == expected, image
