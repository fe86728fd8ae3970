"""The local control plane itself: what every other end-to-end test stands on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.support import ROOT, STATE, Clusters, wait_for_object, wait_until

K8S_VERSION = "v1.37.2"


def job_manifest(name: str, annotations: dict[str, str] | None = None) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations or {}),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="busybox:1.36")],
                ),
            ),
        ),
    )


def job_condition(job: client.V1Job, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in job.status.conditions or [])


def finished_pod(clusters: Clusters, namespace: str, job: str) -> client.V1Pod:
    core = client.CoreV1Api(clusters.api("ci"))
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def run_job(
    clusters: Clusters, namespace: str, name: str, annotations: dict[str, str] | None = None
) -> client.V1Job:
    """Creates a Job and waits until it has finished, either way."""
    batch = client.BatchV1Api(clusters.api("ci"))
    batch.create_namespaced_job(namespace, job_manifest(name, annotations))
    return wait_for_object(
        batch.list_namespaced_job,
        name,
        lambda j: job_condition(j, "Complete") or job_condition(j, "Failed"),
        namespace=namespace,
        timeout=60,
    )


def test_job_completes(clusters: Clusters, namespace: str) -> None:
    job = run_job(clusters, namespace, "ok")
    assert job_condition(job, "Complete")
    pod = finished_pod(clusters, namespace, "ok")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_job_fails_with_chosen_exit_code(clusters: Clusters, namespace: str) -> None:
    job = run_job(clusters, namespace, "bad", {"kwok.conveyor.dev/exit-code": "3"})
    assert job_condition(job, "Failed")
    pod = finished_pod(clusters, namespace, "bad")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_termination_message_is_readable(clusters: Clusters, namespace: str) -> None:
    message = '{"digest": "sha256:0123abcd"}'
    run_job(clusters, namespace, "msg", {"kwok.conveyor.dev/message": message})
    pod = finished_pod(clusters, namespace, "msg")
    assert pod.status.container_statuses[0].state.terminated.message == message


def test_pod_stays_running_for_chosen_duration(clusters: Clusters, namespace: str) -> None:
    run_job(clusters, namespace, "slow", {"kwok.conveyor.dev/duration": "3s"})
    terminated = finished_pod(clusters, namespace, "slow").status.container_statuses[0]
    ran = terminated.state.terminated.finished_at - terminated.state.terminated.started_at
    assert ran >= timedelta(seconds=2), ran


def test_deployment_becomes_available_in_prod(clusters: Clusters, target_namespace: str) -> None:
    apps = client.AppsV1Api(clusters.api("prod"))
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        target_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="web", image="nginx")]
                    ),
                ),
            ),
        ),
    )
    dep = wait_for_object(
        apps.list_namespaced_deployment,
        "web",
        lambda d: any(
            c.type == "Available" and c.status == "True" for c in d.status.conditions or []
        ),
        namespace=target_namespace,
        timeout=60,
    )
    assert dep.status.ready_replicas == 2


def test_fake_nodes_are_listed(clusters: Clusters) -> None:
    # Beside them is a real node (tests/e2e/test_real_node.py); kwok's are labelled type=kwok.
    out = clusters.kubectl("ci", "get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    assert out == ["node/kwok-ci-0", "node/kwok-ci-1"]


def test_versions_are_the_built_release(clusters: Clusters) -> None:
    versions = clusters.kubectl_json("ci", "version")
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION


@pytest.mark.parametrize(
    ("user", "groups"),
    [
        ("developer", ["developers"]),
        ("approver1", ["approvers"]),
        ("approver2", ["approvers"]),
        ("outsider", []),
    ],
)
def test_each_context_authenticates_as_its_user(
    clusters: Clusters, user: str, groups: list[str]
) -> None:
    info = clusters.kubectl_json(f"ci-as-{user}", "auth", "whoami")["status"]["userInfo"]
    assert info["username"] == user
    assert set(groups) <= set(info["groups"])
    assert "system:masters" not in info["groups"]


def test_unknown_user_is_refused(clusters: Clusters, tmp_path: Path) -> None:
    # A certificate from a CA the clusters do not trust.
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            crt,
            "-subj",
            "/CN=mallory/O=system:masters",
            "-days",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    cfg = json.loads((STATE / "kubeconfig").read_text())
    cfg["users"] = [
        {"name": "mallory", "user": {"client-certificate": str(crt), "client-key": str(key)}}
    ]
    cfg["contexts"] = [{"name": "m", "context": {"cluster": "ci", "user": "mallory"}}]
    cfg["current-context"] = "m"
    kc = tmp_path / "kubeconfig"
    kc.write_text(json.dumps(cfg))
    proc = subprocess.run(
        [str(clusters.kubectl_path), "--kubeconfig", str(kc), "get", "namespaces"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Unauthorized" in proc.stderr or "must be logged in" in proc.stderr, proc.stderr


def test_developer_acts_only_where_a_rolebinding_allows(clusters: Clusters, namespace: str) -> None:
    dev = client.CoreV1Api(clusters.api("ci-as-developer"))
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"})
    with pytest.raises(ApiException) as refused:
        dev.create_namespaced_config_map(namespace, cm)
    assert refused.value.status == 403

    client.RbacAuthorizationV1Api(clusters.api("ci")).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="developer-edit"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"
            ),
            subjects=[
                client.RbacV1Subject(
                    kind="User", name="developer", api_group="rbac.authorization.k8s.io"
                )
            ],
        ),
    )
    # The authorizer's cache sees the new binding within moments.
    wait_until(lambda: dev.create_namespaced_config_map(namespace, cm), what="developer allowed")
    assert dev.read_namespaced_config_map("x", namespace).data == {"a": "b"}
    # ... and still nowhere else.
    with pytest.raises(ApiException) as elsewhere:
        dev.list_namespaced_config_map("default")
    assert elsewhere.value.status == 403


def test_audit_log_records_requests_by_user(clusters: Clusters, namespace: str) -> None:
    marker = f"audit-probe-{namespace}"
    clusters.kubectl("ci-as-outsider", "get", "configmap", marker, "-n", namespace, check=False)
    log = STATE / "audit" / "ci-audit.log"

    def recorded() -> dict | None:
        for line in log.read_text().splitlines():
            if marker in line:
                entry = json.loads(line)
                if entry["user"]["username"] == "outsider":
                    return entry
        return None

    entry = wait_until(recorded, what="an audit entry for outsider's request")
    assert entry["verb"] == "get"
    assert entry["objectRef"]["name"] == marker
    assert entry["responseStatus"]["code"] == 403


def test_cluster_up_is_idempotent(clusters: Clusters) -> None:
    before = {p.name: p.read_text() for p in (STATE / "pids").glob("*.pid")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "already up" in proc.stdout
    assert {p.name: p.read_text() for p in (STATE / "pids").glob("*.pid")} == before


def free_port_base() -> int:
    """A CONVEYOR_PORT_BASE whose ports are all free, below the ephemeral range (where the
    suite's own client connections come and go)."""
    for base in range(20000, 30000, 50):
        ports = [base, base + 1, *range(base + 43, base + 46), *range(base + 50, base + 53)]
        ports += [base + 60, base + 61]  # the registry, the artifact store
        if all(_port_free(p) for p in ports):
            return base
    raise AssertionError("no free port range for a second cluster")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_cluster_up_names_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(tmp_path), "CONVEYOR_PORT_BASE": str(port)}
        proc = subprocess.run(
            [sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"],
            capture_output=True,
            text=True,
            env=env,
        )
    assert proc.returncode == 1
    assert f"port(s) {port}" in proc.stderr and "in use" in proc.stderr


def test_cluster_up_shows_the_log_of_a_component_that_dies(tmp_path: Path) -> None:
    base = free_port_base()  # ports for a second, doomed cluster
    (tmp_path / "etcd").write_text("not a directory")  # etcd cannot use its data dir
    env = {**os.environ, "CONVEYOR_CLUSTER_DIR": str(tmp_path), "CONVEYOR_PORT_BASE": str(base)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "etcd exited during start" in proc.stderr
    assert "last lines of" in proc.stderr
    assert not list((tmp_path / "pids").glob("*.pid"))  # nothing left running


def _host_state(base: int, state: Path) -> dict[str, list[str]]:
    """What a checkout's real nodes put on the host, found by the names they carry."""
    procs = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (p / "cgroup").read_text()
        except OSError:
            continue
        if str(state) in cmdline or f"/run/conveyor/{base}/" in cmdline:
            procs.append(f"{p.name} {cmdline[:120]}")
        elif f"/conveyor-{base}-" in cgroups:
            procs.append(f"{p.name} (in a node's cgroup) {cmdline[:120]}")
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith((str(state), f"/run/conveyor/{base}"))
    ]
    cgroups = [str(d) for d in Path("/sys/fs/cgroup").glob(f"*/conveyor-{base}-*") if d.is_dir()]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in subprocess.run(
            ["ip", "-o", "link"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        if line.split(":")[1].strip().startswith(f"cv{base}")
    ]
    lo = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    host_ip = f"10.250.{(base // 50) % 256}.1/32"  # as hack/realnode.py derives it
    addresses = [w for w in lo.split() if w == host_ip]
    run_dirs = [str(p) for p in Path(f"/run/conveyor/{base}").glob("*")]
    return {
        "processes": procs,
        "mounts": mounts,
        "cgroups": cgroups,
        "links": links,
        "addresses": addresses,
        "run dirs": run_dirs,
    }


def test_cluster_down_leaves_nothing_of_a_real_node_behind() -> None:
    """A second set of clusters (own state dir and ports, a real node on ci only) runs a pod on
    its real node; `down` must leave no process, mount, cgroup, interface or address behind."""
    base = free_port_base()
    # A short state folder: the kubelet's sockets live under it, and a Unix socket's path has
    # at most 107 bytes (pytest's tmp_path under a test worker is too deep for them).
    state = Path(tempfile.mkdtemp(prefix="cv-", dir="/tmp"))
    env = {
        **os.environ,
        "CONVEYOR_CLUSTER_DIR": str(state),
        "CONVEYOR_PORT_BASE": str(base),
        "CONVEYOR_REAL_NODES": "ci",
    }
    script = [sys.executable, str(ROOT / "hack" / "localcluster.py")]
    before = _host_state(base, state)
    assert not any(before.values()), before
    try:
        up = subprocess.run([*script, "up"], capture_output=True, text=True, env=env, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        kubectl = [
            str(state / "bin" / "kubectl"),
            "--kubeconfig",
            str(state / "kubeconfig"),
            "--context",
            "ci",
        ]
        overrides = json.dumps(
            {
                "spec": {
                    "nodeSelector": {"conveyor.dev/node": "real"},
                    "tolerations": [{"key": "conveyor.dev/real-node", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 600,  # down must not wait for it
                }
            }
        )
        subprocess.run(
            [*kubectl, "run", "sleeper", "--image=busybox:1.36", "--restart=Never",
             f"--overrides={overrides}", "--", "sleep", "3600"],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s"],
            check=True,
            capture_output=True,
        )
        during = _host_state(base, state)
        # The checks below look for the right names: all of them exist while it runs.
        for kind in ("processes", "mounts", "cgroups", "links", "addresses", "run dirs"):
            assert during[kind], (kind, during)
        assert any("(in a node's cgroup)" in p for p in during["processes"]), during
    finally:
        down = subprocess.run([*script, "down"], capture_output=True, text=True, env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    after = _host_state(base, state)
    shutil.rmtree(state, ignore_errors=True)
    assert not any(after.values()), after


def _cluster(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "hack" / "localcluster.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _bindable(port: int) -> bool:
    """As a server binds (SO_REUSEADDR, as Go's listeners do): the client side's TIME_WAIT
    connections to the port do not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pids(state: Path = STATE) -> dict[str, str]:
    return {p.stem: p.read_text() for p in (state / "pids").glob("*.pid")}


def test_one_component_stops_and_starts_with_its_data(clusters: Clusters, namespace: str) -> None:
    """ci's API server and etcd, each stopped and started alone: the other components run on,
    what was stored is still there, and a stop returns with the ports free."""
    core = client.CoreV1Api(clusters.api("ci"))
    marker = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept"), data={"k": "v"})
    core.create_namespaced_config_map(namespace, marker)
    for component, port in (("kube-apiserver-ci", 43), ("etcd", 0)):
        before = _pids()
        stop = _cluster("stop", component)
        assert stop.returncode == 0, stop.stderr
        assert f"stopped {component}" in stop.stdout
        assert _bindable(int(os.environ.get("CONVEYOR_PORT_BASE", "16400")) + port)
        status = _cluster("status")
        assert status.returncode == 1 and f"{component} " in status.stdout
        assert f"{component:32} not running" in status.stdout
        others = {k: v for k, v in before.items() if k != component}
        assert {k: v for k, v in _pids().items() if k != component} == others
        start = _cluster("start", component)
        assert start.returncode == 0, start.stdout + start.stderr
        assert _cluster("status").returncode == 0
        assert _pids().keys() == before.keys() and _pids()[component] != before[component]
        # The API server answers again with what etcd kept (clients reconnect on their own).
        got = wait_until(
            lambda: core.read_namespaced_config_map("kept", namespace),
            what="the ConfigMap after the restart",
            timeout=60,
        )
        assert got.data == {"k": "v"}


def test_a_paused_etcd_stalls_the_api_server_until_resumed(clusters: Clusters) -> None:
    pause = _cluster("pause", "etcd")
    assert pause.returncode == 0, pause.stderr
    try:
        assert "PAUSED" in _cluster("status").stdout
        wait_until(
            lambda: clusters.kubectl("ci", "get", "--raw", "/readyz", check=False).returncode != 0,
            what="ci's API server to be not ready while etcd is paused",
            timeout=60,
        )
        refused = _cluster("up")  # nothing to start: it says why instead of waiting in vain
        assert refused.returncode == 1 and "paused: etcd" in refused.stderr, refused.stderr
    finally:
        resume = _cluster("resume", "etcd")
    assert resume.returncode == 0, resume.stderr
    wait_until(
        lambda: _cluster("status").returncode == 0, what="the clusters ready again", timeout=60
    )


def test_up_after_a_crash_restarts_only_what_died_and_reset_wipes(tmp_path: Path) -> None:
    """A second set of clusters (kwok nodes only): the scheduler and etcd killed, `up` starts
    those two again and the data is kept; `reset` then wipes it."""
    base = free_port_base()
    env = {
        **os.environ,
        "CONVEYOR_CLUSTER_DIR": str(tmp_path),
        "CONVEYOR_PORT_BASE": str(base),
        "CONVEYOR_REAL_NODES": "",
    }
    kubectl = [str(tmp_path / "bin" / "kubectl"), "--kubeconfig", str(tmp_path / "kubeconfig")]
    try:
        up = _cluster("up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        subprocess.run([*kubectl, "--context", "test", "create", "ns", "kept"], check=True)
        before = _pids(tmp_path)
        for name in ("kube-scheduler-test", "etcd"):
            os.kill(int(before[name].split()[0]), 9)  # a crash: no cleanup
        wait_until(lambda: _cluster("status", env=env).returncode == 1, what="the crash seen")
        again = _cluster("up", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "restarted etcd, kube-scheduler-test" in again.stdout
        after = _pids(tmp_path)
        changed = {k for k in before if after[k] != before[k]}
        assert changed == {"etcd", "kube-scheduler-test"}
        get = [*kubectl, "--context", "test", "get", "ns", "kept"]
        assert subprocess.run(get, capture_output=True).returncode == 0
        reset = _cluster("reset", env=env)
        assert reset.returncode == 0 and "wiped" in reset.stdout, reset.stderr
        assert not (tmp_path / "etcd").exists()
        fresh = _cluster("up", env=env)
        assert fresh.returncode == 0 and "clusters up" in fresh.stdout, fresh.stderr
        gone = subprocess.run(get, capture_output=True, text=True)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    finally:
        down = _cluster("down", env=env)
    assert down.returncode == 0, down.stderr
    assert all(_bindable(p) for p in (base, base + 1, base + 43, base + 44, base + 45))
