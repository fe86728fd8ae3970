"""Session fixtures for end-to-end tests: the local clusters, started once (or reused)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.e2e.conveyor import (
    OPERATOR_NS,
    SERVICE_MONITOR_CRD,
    TAG_OPTIONS,
    Conveyor,
    Operator,
    install,
    scanner_db_options,
    service_account_kubeconfig,
    stop_demo_operator,
    store_options,
)
from tests.e2e.realnode import RealNodes, git_http_handler, serve
from tests.e2e.support import ROOT, STATE, Clusters, wait_until


def _cluster_cmd(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "localcluster.py"), command],
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="session")
def clusters() -> Iterator[Clusters]:
    """Starts the clusters unless they already run. A failure to start fails the tests: e2e
    tests never skip."""
    was_up = _cluster_cmd("status").returncode == 0
    if not was_up:
        proc = _cluster_cmd("up")
        if proc.returncode != 0:
            pytest.fail(f"the local clusters did not start:\n{proc.stdout}{proc.stderr}")
    yield Clusters(kubeconfig=STATE / "kubeconfig", kubectl_path=STATE / "bin" / "kubectl")
    if not was_up and not os.environ.get("CONVEYOR_KEEP_CLUSTERS"):
        _cluster_cmd("down")


def _make_namespace(clusters: Clusters, context: str, name: str) -> None:
    api = client.CoreV1Api(clusters.api(context))
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the controller-manager has made the default ServiceAccount.
    wait_until(
        lambda: api.read_namespaced_service_account("default", name),
        what=f"serviceaccount default in {context}/{name}",
    )


@pytest.fixture
def namespace(request: pytest.FixtureRequest, clusters: Clusters) -> Iterator[str]:
    """A fresh namespace of the ci cluster for one test, deleted afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    _make_namespace(clusters, "ci", name)
    yield name
    client.CoreV1Api(clusters.api("ci")).delete_namespace(name)


@pytest.fixture
def target_namespace(clusters: Clusters) -> Iterator[str]:
    """A namespace of the same fresh name in the test and prod clusters."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    for ctx in ("test", "prod"):
        _make_namespace(clusters, ctx, name)
    yield name
    for ctx in ("test", "prod"):
        client.CoreV1Api(clusters.api(ctx)).delete_namespace(name)


@pytest.fixture(scope="session")
def operator(clusters: Clusters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """The operator, running as its own service account under deploy/'s RBAC (never as admin),
    for the whole session; tests that kill it start it again."""
    install(clusters)
    stop_demo_operator()
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(clusters, workdir / "kubeconfig")
    op = Operator(
        kubeconfig,
        STATE / "logs" / "conveyor-operator.log",
        port=_free_port(),
        webhook_port=_free_port(),
        metrics_port=_free_port(),
        # Docker daemons may run privileged: the seed's jobs all have a docker:dind service.
        extra=(
            *TAG_OPTIONS,
            "--privileged-services",
            *_scanner_db_options(),
            *store_options(clusters),
        ),
    )
    op.start()
    yield op
    op.stop()


def _scanner_db_options() -> tuple[str, ...]:
    info = STATE / "real-nodes.json"
    registry = json.loads(info.read_text()).get("registry") if info.exists() else None
    return scanner_db_options(registry) if registry else ()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def conveyor(operator: Operator, clusters: Clusters, namespace: str) -> Conveyor:
    """Conveyor objects in this test's own namespace, with the operator running."""
    return Conveyor(clusters, namespace)


@pytest.fixture
def targets(clusters: Clusters) -> None:
    """What the seed's templates expect of a target: the Prometheus Operator's ServiceMonitor
    kind and a `monitoring` namespace (a real cluster has them; the local ones get a minimal
    CRD)."""
    for ctx in ("test", "prod"):
        clusters.kubectl(ctx, "apply", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
        clusters.kubectl(
            ctx, "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
        )
        if clusters.kubectl(ctx, "get", "ns", "monitoring", check=False).returncode != 0:
            clusters.kubectl(ctx, "create", "ns", "monitoring")


@pytest.fixture
def hook_secret(clusters: Clusters, conveyor: Conveyor) -> Iterator[str]:
    """A webhook token Secret, made by the platform in the credentials namespace as
    `<namespace>.hook` (out of the team's reach)."""
    token = "gl-hook-7c2f9a"
    core = client.CoreV1Api(clusters.api("ci"))
    name = f"{conveyor.ns}.hook"
    core.create_namespaced_secret(
        OPERATOR_NS,
        client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"token": token}),
    )
    yield token
    core.delete_namespaced_secret(name, OPERATOR_NS)


@pytest.fixture(scope="session")
def real(clusters: Clusters) -> RealNodes:
    """The clusters' real nodes; their tests fail (never skip) when there are none."""
    nodes = RealNodes.load()
    assert nodes.nodes, "the local clusters have no real node (CONVEYOR_REAL_NODES is empty)"
    return nodes


@pytest.fixture
def git_server(real: RealNodes, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory of bare repositories served over smart HTTP on the address pods reach."""
    root = tmp_path / "git"
    root.mkdir()
    with serve(real.host_ip, git_http_handler(root)) as port:
        yield root, f"http://{real.host_ip}:{port}"
