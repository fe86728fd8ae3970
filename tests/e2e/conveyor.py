"""Running the operator under test, and building and watching Conveyor objects."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.realnode import RealNodes
from tests.e2e.support import ROOT, STATE, Clusters, wait_for_object, wait_until

GROUP, VERSION = "conveyor.dev", "v1alpha1"
OPERATOR_NS, OPERATOR_SA = "conveyor-system", "conveyor-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NS}:{OPERATOR_SA}"
FINISHED = {"Succeeded", "Failed", "Cancelled", "Skipped"}
# The tests' operator maps GitLab runner tag `docker` to the real nodes (their label, and the
# toleration of their taint): hack/localcluster.py's real-nodes.json says the same.
TAG_OPTIONS = (
    "--tag-selector",
    "docker=conveyor.dev/node=real",
    "--tag-toleration",
    "docker=conveyor.dev/real-node=true:NoSchedule",
)


def scanner_db_options(registry: str) -> tuple[str, ...]:
    """Trivy's databases from the local registry, where cluster-up pushed the one built from the
    tests' feed (there is no Java index there: a Java scan fails rather than download one)."""
    return (
        "--scanner-db-repository",
        f"{registry}/aquasecurity/trivy-db:2",
        "--scanner-java-db-repository",
        f"{registry}/aquasecurity/trivy-java-db:1",
    )


def platform_options(real: RealNodes) -> tuple[str, ...]:
    """The operator as a platform runs it on the local clusters: CI_REGISTRY is the local
    registry, which also mirrors the public images (plain HTTP, as the nodes' containerd
    reaches it) for builders and Docker daemons, and holds Trivy's databases."""
    assert real.registry, "the local clusters have no registry (CONVEYOR_REAL_NODES is empty)"
    return (
        "--registry",
        real.registry,
        "--registry-mirror",
        real.registry,
        "--insecure-registry",
        real.registry,
        *scanner_db_options(real.registry),
    )


STORE_SECRET = "artifact-store"


def store_info() -> dict[str, str] | None:
    """The local artifact store (hack/localcluster.py): endpoint, bucket, root credentials."""
    path = STATE / "store.json"
    return json.loads(path.read_text()) if path.exists() else None


def store_options(clusters: Clusters) -> tuple[str, ...]:
    """The operator's artifact store options for the local store, its credentials put in a
    Secret of the operator's namespace (where the operator reads them, by reference)."""
    info = store_info()
    if info is None:
        return ()
    core = client.CoreV1Api(clusters.api("ci"))
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=STORE_SECRET),
        string_data={"accessKey": info["accessKey"], "secretKey": info["secretKey"]},
    )
    try:
        core.create_namespaced_secret(OPERATOR_NS, body)
    except ApiException as e:
        if e.status != 409:
            raise
        core.replace_namespaced_secret(STORE_SECRET, OPERATOR_NS, body)
    return (
        "--artifact-store-endpoint",
        info["endpoint"],
        "--artifact-store-bucket",
        info["bucket"],
        "--artifact-store-secret",
        STORE_SECRET,
        # Often, so that tests see deleted runs' and expired artifacts go.
        "--artifact-sweep-interval",
        "5s",
        # Short, so that a test sees download requests go (the sweep runs at least this often).
        "--artifact-download-ttl",
        "60s",
    )


def conveyor_cli(
    clusters: Clusters, *args: str, context: str = "ci"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            *args,
            "--kubeconfig",
            str(clusters.kubeconfig),
            "--context",
            context,
        ],
        capture_output=True,
        text=True,
    )


def bind(clusters: Clusters, namespace: str, grants: Iterable[tuple[str, str]]) -> None:
    """RoleBindings in `namespace` of the ci cluster: (user, ClusterRole) pairs."""
    for user, role in grants:
        clusters.kubectl(
            "ci",
            "create",
            "rolebinding",
            f"{user}-{role}",
            f"--clusterrole={role}",
            f"--user={user}",
            "-n",
            namespace,
        )


def add_environment(
    clusters: Clusters, ns: str, name: str, context: str, target_namespace: str, *options: str
) -> None:
    """`conveyor env add` as the platform (admin): Environment `name` in `ns`, deploying to
    `target_namespace` of the local cluster `context`."""
    proc = conveyor_cli(
        clusters,
        "env",
        "add",
        name,
        "--target-kubeconfig",
        str(STATE / "kubeconfig"),
        "--target-context",
        context,
        "--target-namespace",
        target_namespace,
        "-n",
        ns,
        *options,
    )
    assert proc.returncode == 0, proc.stderr


def install(clusters: Clusters) -> None:
    """The CRDs and everything in deploy/ but the operator's Deployment: its namespace, service
    account, RBAC and admission policies (the operator runs here as a process, with that
    service account's token)."""
    clusters.kubectl("ci", "apply", "-f", str(ROOT / "crds"))
    clusters.kubectl("ci", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    # Established comes a moment before the API server stores the kinds (a create answers 503
    # "Resource kind ... not found" until then): wait for a dry-run create to be judged.
    api = client.CustomObjectsApi(clusters.api("ci"))
    for plural, kind in (
        ("pipelines", "Pipeline"),
        ("pipelineruns", "PipelineRun"),
        ("environments", "Environment"),
        ("approvals", "Approval"),
        ("artifactdownloads", "ArtifactDownload"),
    ):
        wait_until(
            functools.partial(_served, api, plural, kind), what=f"{plural} served", timeout=60
        )
    for manifest in sorted((ROOT / "deploy").glob("*.yaml")):
        if manifest.name != "20-operator.yaml":  # the operator runs as a process here
            clusters.kubectl("ci", "apply", "-f", str(manifest))


def _served(api: client.CustomObjectsApi, plural: str, kind: str) -> bool:
    probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "probe"}}
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, "default", plural, probe, dry_run="All")
    except ApiException as e:
        return e.status not in (404, 503)  # judged (e.g. 422: the probe is invalid): served
    return True


def service_account_kubeconfig(clusters: Clusters, path: Path) -> Path:
    core = client.CoreV1Api(clusters.api("ci"))
    token = wait_until(
        lambda: core.create_namespaced_service_account_token(
            OPERATOR_SA,
            OPERATOR_NS,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=86400)
            ),
        ),
        what="a token for the operator's service account",
    ).status.token
    admin = json.loads(clusters.kubeconfig.read_text())
    ci = next(c for c in admin["clusters"] if c["name"] == "ci")
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [ci],
                "users": [{"name": OPERATOR_SA, "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "ci", "user": OPERATOR_SA}}
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    return path


DEMO_OPERATOR_PID = STATE / "pids" / "conveyor-operator.pid"


def stop_demo_operator() -> None:
    """`make demo` leaves its operator running; a second cluster-wide operator would take
    the tests' runs too. Stopped if its PID file still names a Conveyor operator."""
    if not DEMO_OPERATOR_PID.exists():
        return
    pid = int(DEMO_OPERATOR_PID.read_text().split()[0])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"conveyor.cli.main operator" in cmdline:
            os.kill(pid, signal.SIGTERM)
            wait_until(
                lambda: not Path(f"/proc/{pid}").exists(), what="the demo's operator to stop"
            )
    except OSError:
        pass  # gone already


class Operator:
    """`conveyor operator` as a child process, which tests may kill and start again."""

    def __init__(
        self,
        kubeconfig: Path,
        log: Path,
        port: int,
        webhook_port: int,
        metrics_port: int,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig, self.log, self.port = kubeconfig, log, port
        self.webhook_port, self.metrics_port = webhook_port, metrics_port
        self.extra = extra  # more options, e.g. --leader-elect
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor.cli.main",
                "operator",
                "--kubeconfig",
                str(self.kubeconfig),
                "--liveness",
                f"http://127.0.0.1:{self.port}/healthz",
                "--webhook",
                f"127.0.0.1:{self.webhook_port}",
                "--metrics",
                f"127.0.0.1:{self.metrics_port}",
                "--allow-local-repositories",  # the tests' repositories are file:// ones
                "--git-cache",
                str(self.log.parent / "git-cache"),
                *self.extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2"},
        )
        out.close()
        if wait:
            try:
                # Two minutes: a start on a machine loaded by other builds took over one.
                wait_until(self._healthy, timeout=120, what="the operator's liveness endpoint")
            except BaseException:
                # Never leave it running: an operator no fixture knows of acts on every run.
                self.stop()
                raise

    def start_slowly(self) -> None:
        """start(), waiting up to five minutes: image builds beside the tests can load the
        machine past the usual two."""
        self.start(wait=False)
        wait_until(self._healthy, timeout=300, what="the operator's liveness endpoint")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the operator's /metrics (None: not there)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
        return None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or an OOM kill would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- objects
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {
            "kind": "ServiceMonitor",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def job(name: str, stage: str = "test", **fields: Any) -> dict[str, Any]:
    return {"name": name, "stage": stage, "script": [f"echo {name}"], **fields}


def fails(code: int = 1, **annotations: str) -> dict[str, Any]:
    """Job fields making the fake kubelet end its pod with `code`."""
    return {"podAnnotations": {"kwok.conveyor.dev/exit-code": str(code), **annotations}}


def lasts(duration: str) -> dict[str, Any]:
    return {"podAnnotations": {"kwok.conveyor.dev/duration": duration}}


def pipeline(name: str, jobs: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"jobs": jobs, **spec},
    }


def run(name: str, pipeline_name: str, ref: str = "main", **spec: Any) -> dict[str, Any]:
    spec = {"pipelineRef": {"name": pipeline_name}, "revision": {"ref": ref}, **spec}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": spec,
    }


class Conveyor:
    """Create and watch Conveyor objects in one namespace of the ci cluster."""

    def __init__(self, clusters: Clusters, namespace: str) -> None:
        self.clusters, self.ns = clusters, namespace
        self.api = client.CustomObjectsApi(clusters.api("ci"))
        self.batch = client.BatchV1Api(clusters.api("ci"))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = obj["kind"].lower() + "s"
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, obj)

    def get_run(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns", name)

    def runs(self) -> list[dict[str, Any]]:
        return self.api.list_namespaced_custom_object(GROUP, VERSION, self.ns, "pipelineruns")[
            "items"
        ]

    def wait_run(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        lister = functools.partial(
            self.api.list_namespaced_custom_object, GROUP, VERSION, self.ns, "pipelineruns"
        )
        return wait_for_object(lister, name, predicate, timeout=timeout)

    def wait_finished(self, name: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_run(name, lambda r: phase(r) in FINISHED, timeout)

    def jobs(self, run_name: str | None = None) -> list[client.V1Job]:
        selector = (
            f"conveyor.dev/pipelinerun={run_name}" if run_name else "conveyor.dev/pipelinerun"
        )
        return self.batch.list_namespaced_job(self.ns, label_selector=selector).items


def phase(run_obj: dict[str, Any]) -> str | None:
    return (run_obj.get("status") or {}).get("phase")


def succeeded_condition(run_obj: dict[str, Any]) -> dict[str, Any]:
    conditions = (run_obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Succeeded"), {})


def job_status(run_obj: dict[str, Any], name: str) -> dict[str, Any]:
    jobs = (run_obj.get("status") or {}).get("jobs") or []
    return next(j for j in jobs if j["name"] == name)


def audit_entries(predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    out = []
    with (STATE / "audit" / "ci-audit.log").open() as f:
        for line in f:
            entry = json.loads(line)
            if predicate(entry):
                out.append(entry)
    return out


@contextmanager
def operator_with(operator: Operator, *extra: str) -> Iterator[Operator]:
    """The session's operator started again with more options, then as it was."""
    before = operator.extra
    operator.stop()
    operator.extra = (*before, *extra)
    operator.start_slowly()
    try:
        yield operator
    finally:
        operator.stop()
        operator.extra = before
        operator.start_slowly()


@contextmanager
def operator_without(operator: Operator, *options: str) -> Iterator[Operator]:
    """The session's operator started again without some of its flags, then as it was."""
    before = operator.extra
    operator.stop()
    operator.extra = tuple(o for o in before if o not in options)
    operator.start_slowly()
    try:
        yield operator
    finally:
        operator.stop()
        operator.extra = before
        operator.start_slowly()
