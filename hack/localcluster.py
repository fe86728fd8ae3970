#!/usr/bin/env python3
"""Local Kubernetes clusters for Conveyor's tests and demo: ci, test and prod.

One etcd (a key prefix per cluster), and per cluster a kube-apiserver (RBAC, client-certificate
users), kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods run without
containers). Beside the fake nodes, each cluster of CONVEYOR_REAL_NODES has one real node (a
kubelet with its own containerd, runc, CNI bridge and kube-proxy in a network namespace of its
own; see hack/realnode.py), and a local OCI registry holds the images built by hack/images/.
The control plane binds to loopback; state lives in .cluster/ in the repository.

    python hack/localcluster.py up       # idempotent; after a crash, restarts what died
    python hack/localcluster.py down     # stops exactly what `up` started, by PID
    python hack/localcluster.py status
    python hack/localcluster.py reset    # down, and the clusters' data (etcd) wiped
    python hack/localcluster.py stop kube-apiserver-ci   # one component; etcd's data stays
    python hack/localcluster.py start kube-apiserver-ci
    python hack/localcluster.py pause etcd               # SIGSTOP; `resume` sends SIGCONT

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import realnode

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("CONVEYOR_CLUSTER_DIR", ROOT / ".cluster"))
PORT_BASE = int(os.environ.get("CONVEYOR_PORT_BASE", "16400"))
CLUSTERS = ("ci", "test", "prod")
USERS = {  # user -> groups, as client certificates (CN = user, O = group)
    "developer": ["developers"],
    "approver1": ["approvers"],
    "approver2": ["approvers"],
    "outsider": [],
}
NODES_PER_CLUSTER = 2
# Clusters that get a real node beside their kwok nodes ("" for none).
REAL_NODES = tuple(
    c for c in os.environ.get("CONVEYOR_REAL_NODES", ",".join(CLUSTERS)).split(",") if c
)
LAYOUT = realnode.Layout(port_base=PORT_BASE, state=STATE, clusters=CLUSTERS)
READY_TIMEOUT = float(os.environ.get("CONVEYOR_CLUSTER_TIMEOUT", "120"))


class ClusterError(Exception):
    """A failure that the user can act on; printed without a traceback."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int

    @staticmethod
    def apiserver(cluster: str) -> int:
        return PORT_BASE + 43 + CLUSTERS.index(cluster)

    @staticmethod
    def kubelet(cluster: str) -> int:
        """kwok's server, the kubelet of every fake node of a cluster: it serves pod logs."""
        return PORT_BASE + 50 + CLUSTERS.index(cluster)


PORTS = Ports(etcd_client=PORT_BASE + 0, etcd_peer=PORT_BASE + 1)


def all_ports() -> list[int]:
    return [PORTS.etcd_client, PORTS.etcd_peer] + [
        port for c in CLUSTERS for port in (Ports.apiserver(c), Ports.kubelet(c))
    ]


# ---------------------------------------------------------------------------------------------
# paths


def pki() -> Path:
    return STATE / "pki"


def logs() -> Path:
    return STATE / "logs"


def pids() -> Path:
    return STATE / "pids"


def component_kubeconfig(cluster: str, user: str) -> Path:
    return STATE / "kubeconfigs" / f"{cluster}-{user}.json"


def audit_log() -> Path:
    return STATE / "audit" / "ci-audit.log"


# ---------------------------------------------------------------------------------------------
# binaries


def build_binaries() -> Path:
    """Builds (or finds in the cache) the control plane binaries; returns their folder."""
    script = ROOT / "hack" / "build-control-plane.sh"
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ClusterError("building the control plane failed (see the messages above)")
    bindir = Path(proc.stdout.strip().splitlines()[-1])
    link = STATE / "bin"
    link.mkdir(parents=True, exist_ok=True)
    for exe in bindir.iterdir():
        target = link / exe.name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to(exe)
    return bindir


# ---------------------------------------------------------------------------------------------
# PKI: one CA, a serving certificate, a service-account key pair, client certificates


def openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def make_cert(name: str, subject: str, *, server: bool = False, sans: str | None = None) -> None:
    d = pki()
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    if crt.exists() and key.exists():
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = d / f"{name}.ext"
    if server:
        sans = sans or (
            "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local"
        )
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"
        )
    else:
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n"
        )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(d / "ca.crt"),
        "-CAkey",
        str(d / "ca.key"),
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(crt),
    )
    csr.unlink()
    ext.unlink()


def client_identities() -> dict[str, str]:
    """Certificate name -> subject for every client certificate."""
    ids = {
        "admin": "/CN=admin/O=system:masters",
        "kube-controller-manager": "/CN=system:kube-controller-manager",
        "kube-scheduler": "/CN=system:kube-scheduler",
        "kwok": "/CN=kwok/O=system:masters",
        # The API servers' identity towards kubelets (logs, exec), which authorize by webhook.
        "kube-apiserver-kubelet-client": "/CN=kube-apiserver-kubelet-client/O=system:masters",
        "kube-proxy": "/CN=system:kube-proxy",
        "coredns": "/CN=system:coredns",
    }
    for cluster in CLUSTERS:  # the Node authorizer knows a kubelet by this name and group
        ids[f"kubelet-client-{cluster}"] = (
            f"/CN=system:node:{LAYOUT.node_name(cluster)}/O=system:nodes"
        )
    for user, groups in USERS.items():
        ids[user] = f"/CN={user}" + "".join(f"/O={g}" for g in groups)
    return ids


def ensure_pki() -> None:
    d = pki()
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "ca.crt").exists():
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "ca.key"))
        openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            str(d / "ca.key"),
            "-subj",
            "/CN=conveyor-local-ca",
            "-days",
            "3650",
            "-sha256",
            "-out",
            str(d / "ca.crt"),
        )
    if not (d / "sa.key").exists():
        openssl("genrsa", "-out", str(d / "sa.key"), "2048")
        openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))
    make_cert("apiserver", "/CN=kube-apiserver", server=True)
    for cluster in CLUSTERS:  # a kubelet's serving certificate names its node's address
        ip = LAYOUT.node_ip(cluster)
        make_cert(
            f"kubelet-{cluster}-{ip}",
            f"/CN={LAYOUT.node_name(cluster)}",
            server=True,
            sans=f"IP:{ip},DNS:{LAYOUT.node_name(cluster)}",
        )
    for name, subject in client_identities().items():
        make_cert(name, subject)


# ---------------------------------------------------------------------------------------------
# kubeconfigs (JSON is valid kubeconfig; data embedded so a file can be copied anywhere)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(
    contexts: dict[str, tuple[str, str]], current: str, *, host: str = "127.0.0.1"
) -> dict:
    """contexts: context name -> (cluster, certificate name). `host`: the address the API
    server is reached at (real nodes reach it through a forwarder on the host address)."""
    clusters = sorted({c for c, _ in contexts.values()})
    users = sorted({u for _, u in contexts.values()})
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": c,
                "cluster": {
                    "server": f"https://{host}:{Ports.apiserver(c)}",
                    "certificate-authority-data": b64(pki() / "ca.crt"),
                    # The serving certificate names localhost, not the forwarder's address.
                    **({"tls-server-name": "localhost"} if host != "127.0.0.1" else {}),
                },
            }
            for c in clusters
        ],
        "users": [
            {
                "name": u,
                "user": {
                    "client-certificate-data": b64(pki() / f"{u}.crt"),
                    "client-key-data": b64(pki() / f"{u}.key"),
                },
            }
            for u in users
        ],
        "contexts": [
            {"name": name, "context": {"cluster": c, "user": u}}
            for name, (c, u) in contexts.items()
        ],
        "current-context": current,
    }


def write_kubeconfigs() -> None:
    (STATE / "kubeconfigs").mkdir(parents=True, exist_ok=True)
    for cluster in CLUSTERS:
        for user in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
            cfg = kubeconfig({cluster: (cluster, user)}, cluster)
            component_kubeconfig(cluster, user).write_text(json.dumps(cfg, indent=1))
        for user in (f"kubelet-client-{cluster}", "kube-proxy", "coredns"):
            cfg = kubeconfig({cluster: (cluster, user)}, cluster, host=LAYOUT.host_ip)
            component_kubeconfig(cluster, user).write_text(json.dumps(cfg, indent=1))
    contexts: dict[str, tuple[str, str]] = {c: (c, "admin") for c in CLUSTERS}
    for user in USERS:
        contexts[f"ci-as-{user}"] = ("ci", user)
    path = STATE / "kubeconfig"
    path.write_text(json.dumps(kubeconfig(contexts, "ci"), indent=1))
    path.chmod(0o600)


# ---------------------------------------------------------------------------------------------
# processes


def pidfile(name: str) -> Path:
    return pids() / f"{name}.pid"


def alive(name: str) -> int | None:
    """The PID of component `name` if it still runs the binary we started, else None."""
    try:
        pid_s, exe = pidfile(name).read_text().split("\n", 1)
        pid = int(pid_s)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        zombie = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, ValueError, IndexError):
        return None
    if zombie:
        return None
    # A PID can be reused after a crash: only ours if it runs the binary we started.
    return pid if cmdline == exe.strip() else None


# Processes started by this invocation: their exit status is exact, unlike a look at /proc.
CHILDREN: dict[str, subprocess.Popen[bytes]] = {}


def exited(name: str) -> int | None:
    """The exit code of a component this invocation started and that has ended, else None."""
    proc = CHILDREN.get(name)
    return proc.poll() if proc is not None else None


def start(
    name: str, argv: list[str], env: dict[str, str] | None = None, exe: str | None = None
) -> None:
    """Starts a component. `exe`: the program the process ends up running, when argv starts
    with a launcher that execs it (nsenter, unshare)."""
    logs().mkdir(parents=True, exist_ok=True)
    pids().mkdir(parents=True, exist_ok=True)
    log = open(logs() / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the shell that ran `make cluster-up`
        env={**os.environ, **(env or {})},
        cwd=STATE,
    )
    log.close()
    CHILDREN[name] = proc
    pidfile(name).write_text(f"{proc.pid}\n{exe or argv[0]}\n")


def log_tail(name: str, lines: int = 25) -> str:
    try:
        text = (logs() / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def died(name: str, code: int | None) -> ClusterError:
    return ClusterError(
        f"{name} exited during start (exit code {code}); last lines of "
        f"{logs() / (name + '.log')}:\n{log_tail(name)}"
    )


def wait_for(name: str, check, what: str, timeout: float = READY_TIMEOUT) -> None:
    """Polls `check` until true; fails early, with the log tail, if the component died."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if check():
            return
        code = exited(name)
        if code is not None:
            raise died(name, code)
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ClusterError(
        f"{name}: {what} not reached within {timeout:.0f}s; last lines of its log:\n"
        f"{log_tail(name)}"
    )


def _stop(names: list[str]) -> list[str]:
    """SIGTERM to each running component of `names`, SIGKILL after 15 s; pidfiles removed."""
    stopped = []
    # Stop clients before servers so they do not spam their logs with connection errors.
    order = sorted(names, key=lambda n: 2 if n == "etcd" else n.startswith("kube-apiserver"))
    for name in order:
        pid = alive(name)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)  # a paused process would never see the SIGTERM
            stopped.append((name, pid))
    deadline = time.monotonic() + 15
    for name, pid in stopped:
        while alive(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(name) is not None:
            os.kill(pid, signal.SIGKILL)
    for name in names:
        pidfile(name).unlink(missing_ok=True)
    wait_ports_free([n for n, _ in stopped])
    return [n for n, _ in stopped]


def component_ports(name: str) -> list[tuple[str, int]]:
    """The (address, port) pairs component `name` listens on, where a restart binds again."""
    if name == "etcd":
        return [("127.0.0.1", PORTS.etcd_client), ("127.0.0.1", PORTS.etcd_peer)]
    if name == "registry":
        host, port = LAYOUT.registry.rsplit(":", 1)
        return [(host, int(port))]
    if name == "store":
        return [(LAYOUT.host_ip, PORT_BASE + 61)]
    for prefix, port_of in (("kube-apiserver-", Ports.apiserver), ("kwok-", Ports.kubelet)):
        if name.startswith(prefix) and name[len(prefix) :] in CLUSTERS:
            return [("127.0.0.1", port_of(name[len(prefix) :]))]
    return []


def wait_ports_free(names: list[str], timeout: float = 15) -> None:
    """Until the ports of the stopped components are free: an exited process's sockets can
    outlive it for a moment, and a start right after would fail to bind."""
    ports = [p for n in names for p in component_ports(n)]
    deadline = time.monotonic() + timeout
    while busy := [p for p in ports if not port_free(p[1], p[0])]:
        if time.monotonic() > deadline:
            raise ClusterError(
                "port(s) still in use after their component stopped: "
                + ", ".join(f"{h}:{p}" for h, p in busy)
            )
        time.sleep(0.05)


def _started() -> list[str]:
    return [p.stem for p in pids().glob("*.pid")] if pids().exists() else []


def stop_all() -> list[str]:
    """Stops everything `up` started, and removes what the real nodes left on the host."""
    names = _started()
    # Real nodes first: their agents, then their containers through containerd (so that the
    # shims end and unmount), then containerd; then whatever is left of them on the host.
    stopped = _stop([n for n in names if n.startswith(("kubelet-", "kube-proxy-", "coredns-"))])
    for c in CLUSTERS:
        if alive(f"containerd-{c}") is not None:
            realnode.stop_containers(LAYOUT, c)
    stopped += _stop([n for n in names if n.startswith("containerd-")])
    for c in CLUSTERS:
        for what in realnode.teardown_node(LAYOUT, c):
            print(f"{c}: removed {what} left by its real node")
    stopped += _stop(_started())
    for c in CLUSTERS:
        realnode.teardown_links(LAYOUT, c)
    realnode.teardown_host(LAYOUT)
    return stopped


def real_node_names(cluster: str) -> list[str]:
    return [
        f"{n}-{cluster}"
        for n in ("netns", "apiserver-proxy", "containerd", "kubelet", "kube-proxy", "coredns")
    ]


def stop_real_node(cluster: str) -> list[str]:
    """Stops one cluster's real node (what is left of it) and removes its traces, as stop_all
    does for all of them; the host address and the other nodes stay."""
    names = real_node_names(cluster)
    stopped = _stop([n for n in names if n.startswith(("kubelet-", "kube-proxy-", "coredns-"))])
    if alive(f"containerd-{cluster}") is not None:
        realnode.stop_containers(LAYOUT, cluster)
    stopped += _stop([f"containerd-{cluster}"])
    for what in realnode.teardown_node(LAYOUT, cluster):
        print(f"{cluster}: removed {what} left by its real node")
    stopped += _stop(names)
    realnode.teardown_links(LAYOUT, cluster)
    return stopped


# ---------------------------------------------------------------------------------------------
# health checks


def https_ok(cluster: str, path: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki() / "ca.crt"))
    ctx.load_cert_chain(str(pki() / "admin.crt"), str(pki() / "admin.key"))
    url = f"https://127.0.0.1:{Ports.apiserver(cluster)}{path}"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def etcd_ok() -> bool:
    try:
        url = f"http://127.0.0.1:{PORTS.etcd_client}/health"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return b'"health":"true"' in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            # The host address is gone with the real nodes: nothing can hold its ports.
            return e.errno == 99  # EADDRNOTAVAIL
    return True


def kubectl(cluster: str, *args: str, stdin: str | None = None) -> str:
    argv = [str(STATE / "bin" / "kubectl"), "--kubeconfig", str(STATE / "kubeconfig")]
    proc = subprocess.run(
        [*argv, "--context", cluster, *args], input=stdin, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise ClusterError(f"kubectl --context {cluster} {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------
# components


def etcd_data() -> Path:
    return STATE / "etcd"


def start_etcd(bindir: Path) -> None:
    data = etcd_data()  # kept across restarts and `down`; `reset` wipes it
    peer = f"http://127.0.0.1:{PORTS.etcd_peer}"
    client = f"http://127.0.0.1:{PORTS.etcd_client}"
    start(
        "etcd",
        [
            str(bindir / "etcd"),
            "--name=local",
            f"--data-dir={data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}",
            "--unsafe-no-fsync=true",  # test clusters: speed over durability
            "--auto-compaction-retention=1",
            "--quota-backend-bytes=8589934592",
            "--log-level=warn",
        ],
    )
    wait_for("etcd", etcd_ok, "health")


def start_apiserver(bindir: Path, cluster: str) -> None:
    p = pki()
    argv = [
        str(bindir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{PORTS.etcd_client}",
        f"--etcd-prefix=/{cluster}",
        "--bind-address=127.0.0.1",
        f"--secure-port={Ports.apiserver(cluster)}",
        "--advertise-address=127.0.0.1",  # hosts without a default route
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--authorization-mode=Node,RBAC",
        "--anonymous-auth=false",
        "--allow-privileged=true",
        # Pod logs come from kwok's server (the fake nodes' kubelet) at the node's InternalIP,
        # whose serving certificate our CA signed.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={p / 'ca.crt'}",
        f"--kubelet-client-certificate={p / 'kube-apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'kube-apiserver-kubelet-client.key'}",
        "--v=0",
    ]
    if cluster == "ci":
        policy = STATE / "audit" / "policy.yaml"
        policy.parent.mkdir(parents=True, exist_ok=True)
        # Every request of people, the operator and the tests; none of the cluster's own
        # components (the Job controller, scheduler, kwok): they are most of the traffic, and
        # writing their records would load the API server the benchmark measures against.
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\n"
            "omitStages: [RequestReceived]\nrules:\n"
            "- level: None\n"
            "  users: ['system:kube-scheduler', 'system:kube-controller-manager', 'kwok',"
            " 'system:apiserver']\n"
            "- level: None\n"
            "  userGroups: ['system:serviceaccounts:kube-system', 'system:nodes']\n"
            "- level: Metadata\n"
        )
        argv += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log()}",
            "--audit-log-maxsize=1024",
            "--audit-log-maxbackup=1",
        ]
    start(f"kube-apiserver-{cluster}", argv)


CONTROLLER_COMMON = ["--leader-elect=false", "--kube-api-qps=5000", "--kube-api-burst=10000"]


def start_controllers(bindir: Path, cluster: str) -> None:
    start_controller_manager(bindir, cluster)
    start_scheduler(bindir, cluster)
    start_kwok(bindir, cluster)


def start_controller_manager(bindir: Path, cluster: str) -> None:
    p = pki()
    common = CONTROLLER_COMMON
    start(
        f"kube-controller-manager-{cluster}",
        [
            str(bindir / "kube-controller-manager"),
            f"--kubeconfig={component_kubeconfig(cluster, 'kube-controller-manager')}",
            "--secure-port=0",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            # kwok renews node leases every few tens of seconds; do not mark nodes NotReady.
            "--node-monitor-grace-period=3m20s",
            "--concurrent-job-syncs=20",
            *common,
        ],
    )


def start_scheduler(bindir: Path, cluster: str) -> None:
    common = CONTROLLER_COMMON
    start(
        f"kube-scheduler-{cluster}",
        [
            str(bindir / "kube-scheduler"),
            f"--kubeconfig={component_kubeconfig(cluster, 'kube-scheduler')}",
            "--secure-port=0",
            *common,
        ],
    )


def start_kwok(bindir: Path, cluster: str) -> None:
    p = pki()
    home = STATE / "kwok-home"  # kwok reads ~/.kwok/kwok.yaml: keep it isolated
    home.mkdir(parents=True, exist_ok=True)
    start(
        f"kwok-{cluster}",
        [
            str(bindir / "kwok"),
            f"--kubeconfig={component_kubeconfig(cluster, 'kwok')}",
            f"--config={ROOT / 'hack' / 'kwok' / 'stages.yaml'}",
            f"--config={pod_logs_config()}",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            # Its server is every fake node's kubelet endpoint: the API server reads logs there.
            f"--server-address=127.0.0.1:{Ports.kubelet(cluster)}",
            f"--node-port={Ports.kubelet(cluster)}",
            "--node-ip=127.0.0.1",
            "--node-name=localhost",
            f"--tls-cert-file={p / 'apiserver.crt'}",  # SANs 127.0.0.1, localhost
            f"--tls-private-key-file={p / 'apiserver.key'}",
            "--node-lease-duration-seconds=200",
            "--cidr=10.244.0.0/16",
        ],
        env={"HOME": str(home)},
    )


def pod_logs_config() -> Path:
    """kwok's ClusterLogs: no container runs, so every pod's containers answer with the log
    file of their name under hack/kwok/logs/ (CRI format), or default.log. kwok resolves
    paths against its working directory: they are written absolute, here."""
    logs = ROOT / "hack" / "kwok" / "logs"
    named = sorted(f.stem for f in logs.glob("*.log") if f.stem != "default")
    entries = [{"containers": [name], "logsFile": str(logs / f"{name}.log")} for name in named]
    entries.append({"logsFile": str(logs / "default.log")})
    config = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "every-pod"},
        "spec": {"logs": entries},
    }
    path = STATE / "kwok-logs.yaml"
    path.write_text(json.dumps(config))
    return path


def node_manifest(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "250"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "250"},
        },
    }


def create_nodes(cluster: str) -> None:
    items = [node_manifest(f"kwok-{cluster}-{i}") for i in range(NODES_PER_CLUSTER)]
    kubectl(
        cluster,
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )

    def ready() -> bool:
        out = kubectl(
            cluster,
            "get",
            "nodes",
            "-l",
            "type=kwok",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}"
            "{' '}{.spec.taints}{'\\n'}{end}",
        )
        rows = [r for r in out.splitlines() if r.strip()]  # the kwok nodes only (-l type=kwok)
        # Ready, and the controller-manager has lifted the not-ready taint.
        return len(rows) == NODES_PER_CLUSTER and all(
            r.startswith("True") and "not-ready" not in r for r in rows
        )

    wait_for(f"kwok-{cluster}", ready, "nodes Ready and schedulable")

    def default_sa() -> bool:
        try:
            kubectl(cluster, "-n", "default", "get", "serviceaccount", "default")
            return True
        except ClusterError:
            return False

    wait_for(f"kube-controller-manager-{cluster}", default_sa, "serviceaccount default/default")


# ---------------------------------------------------------------------------------------------
# real nodes and the registry (hack/realnode.py has the host-level pieces)


def program(name: str) -> str:
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise ClusterError(f"{name} is not installed: `make node-deps` installs what nodes need")
    return path


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def write_real_nodes_info() -> None:
    """What tests and tools need to know of the real nodes: STATE/real-nodes.json."""
    info = {
        "hostIP": LAYOUT.host_ip,  # where pods reach the host (its servers must bind there)
        "registry": LAYOUT.registry if REAL_NODES else None,
        "nodes": {
            c: {
                "name": LAYOUT.node_name(c),
                "ip": LAYOUT.node_ip(c),
                "podCIDR": LAYOUT.pod_cidr(c),
                "containerd": str(LAYOUT.containerd_sock(c)),
            }
            for c in REAL_NODES
        },
        "nodeSelector": {realnode.NODE_LABEL: "real"},
        "tolerations": [
            {
                "key": realnode.TAINT_KEY,
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        ],
    }
    (STATE / "real-nodes.json").write_text(json.dumps(info, indent=1))


def start_registry() -> None:
    realnode.host_address_up(LAYOUT)
    config = realnode.registry_config(LAYOUT)
    start("registry", [program("docker-registry"), "serve", str(config)])
    wait_for("registry", lambda: http_ok(f"http://{LAYOUT.registry}/v2/"), "/v2/")


# The artifact store: versitygw (hack/build-versitygw.sh), a real S3 server over a directory of
# STATE, on the host address so that job pods (presigned URLs) and the operator both reach it.
STORE_BUCKET = "conveyor"


def store_endpoint() -> str:
    return f"http://{LAYOUT.host_ip}:{PORT_BASE + 61}"


def store_file() -> Path:
    """Endpoint, bucket and root credentials of the local store (0600: tests and the demo make
    the operator's Secret from it)."""
    return STATE / "store.json"


def build_store() -> Path:
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "build-versitygw.sh")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise ClusterError(f"building the artifact store (versitygw) failed:\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "bin" / "versitygw"


def start_store(binary: Path) -> None:
    sys.path.insert(0, str(ROOT / "operator"))
    from conveyor.store import sigv4  # standard library only, as this script

    info_path = store_file()
    if info_path.exists():
        info = json.loads(info_path.read_text())
    else:
        info = {
            "endpoint": store_endpoint(),
            "bucket": STORE_BUCKET,
            "region": "us-east-1",
            "accessKey": "conveyor-" + os.urandom(6).hex(),
            "secretKey": base64.urlsafe_b64encode(os.urandom(30)).decode(),
        }
        info_path.touch(mode=0o600)
        info_path.write_text(json.dumps(info, indent=1))
    data = STATE / "store-data"
    data.mkdir(exist_ok=True)
    host = info["endpoint"].split("://", 1)[1]
    # Credentials in the environment, not the command line (ps shows that to every user).
    start(
        "store",
        [str(binary), "--port", host, "--quiet", "posix", str(data)],
        env={"ROOT_ACCESS_KEY_ID": info["accessKey"], "ROOT_SECRET_ACCESS_KEY": info["secretKey"]},
    )
    creds = sigv4.Credentials(info["accessKey"], info["secretKey"])

    def bucket_made() -> bool:
        headers = sigv4.sign_headers(
            method="PUT",
            host=host,
            path=f"/{info['bucket']}",
            query=None,
            headers={},
            payload_sha256=sigv4.EMPTY_SHA256,
            credentials=creds,
            region=info["region"],
            now=datetime.datetime.now(datetime.UTC),
        )
        req = urllib.request.Request(
            f"{info['endpoint']}/{info['bucket']}", data=b"", method="PUT", headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status == 200
        except urllib.error.HTTPError as e:
            return e.code == 409  # it exists already (a restart over the same data)
        except (urllib.error.URLError, OSError):
            return False

    wait_for("store", bucket_made, f"bucket {info['bucket']} at {info['endpoint']}")


def images(*push: str) -> None:
    """Builds (or finds in the cache) the images of hack/images/; with push, also pushes them
    under their public names; containerd on the nodes mirrors those registries to this one."""
    logs().mkdir(parents=True, exist_ok=True)
    argv = ["bash", str(ROOT / "hack" / "images" / "build.sh"), *push]
    with open(logs() / "images.log", "ab") as log:
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ClusterError(
            f"building or pushing the images failed; last lines of {logs() / 'images.log'}:\n"
            f"{log_tail('images')}"
        )


def push_images() -> None:
    images("--push", LAYOUT.registry)
    # Trivy's vulnerability database, built from the tests' feed (hack/vulnfeed/), where the
    # platform's scan jobs get it (the operator's --scanner-db-repository).
    with open(logs() / "images.log", "ab") as log:
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "hack" / "vulnfeed" / "trivydb.py"),
                "push",
                LAYOUT.registry,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    if proc.returncode != 0:
        raise ClusterError(
            f"building or pushing Trivy's database failed; last lines of "
            f"{logs() / 'images.log'}:\n{log_tail('images')}"
        )


def netns_pid(cluster: str) -> int:
    pid = alive(f"netns-{cluster}")
    if pid is None:
        raise ClusterError(f"the network namespace of {cluster}'s real node is gone")
    return pid


def start_real_node(bindir: Path, cluster: str) -> None:
    """One kubelet, containerd and kube-proxy in a network namespace of the cluster's own."""
    holder = f"netns-{cluster}"
    sleep = program("sleep")
    # The namespace lives as long as this process: nothing to unmount when it ends.
    start(holder, [program("unshare"), "--net", "--", sleep, "infinity"], exe=sleep)
    wait_for(holder, lambda: alive(holder) is not None, "a network namespace", timeout=10)
    pid = netns_pid(cluster)
    if os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        raise ClusterError(f"{holder}: unshare --net did not make a network namespace")
    try:
        realnode.network_up(LAYOUT, cluster, pid)
        realnode.cgroups_up(LAYOUT, cluster)
    except realnode.NodeError as e:
        raise ClusterError(f"{cluster}'s real node: {e}") from e
    port = Ports.apiserver(cluster)
    socat = program("socat")
    start(
        f"apiserver-proxy-{cluster}",
        # The API server binds loopback; the node reaches it through the host address.
        [socat, f"TCP-LISTEN:{port},bind={LAYOUT.host_ip},fork,reuseaddr", f"TCP:127.0.0.1:{port}"],
        exe=socat,
    )
    inside = [program("nsenter"), f"--net=/proc/{pid}/ns/net", "--"]
    containerd = program("containerd")
    sock = LAYOUT.containerd_sock(cluster)
    start(
        f"containerd-{cluster}",
        [*inside, containerd, "--config", str(realnode.containerd_config(LAYOUT, cluster))],
        exe=containerd,
    )

    def containerd_ok() -> bool:
        if not sock.exists():
            return False
        ctr = [program("ctr"), "--address", str(sock), "version"]
        return subprocess.run(ctr, capture_output=True, timeout=10).returncode == 0

    wait_for(f"containerd-{cluster}", containerd_ok, "its socket")
    node = LAYOUT.node_name(cluster)
    kubelet = str(bindir / "kubelet")
    start(
        f"kubelet-{cluster}",
        [
            *inside,
            kubelet,
            f"--config={realnode.kubelet_config(LAYOUT, cluster, pki(), LAYOUT.node_ip(cluster))}",
            f"--kubeconfig={component_kubeconfig(cluster, f'kubelet-client-{cluster}')}",
            f"--root-dir={LAYOUT.kubelet_root(cluster)}",
            f"--cert-dir={LAYOUT.dir(cluster) / 'kubelet-pki'}",  # it does not follow root-dir
            f"--hostname-override={node}",
            f"--node-ip={LAYOUT.node_ip(cluster)}",
            f"--node-labels={realnode.NODE_LABEL}=real",
            "--v=1",
        ],
        exe=kubelet,
    )
    proxy = str(bindir / "kube-proxy")
    start(
        f"kube-proxy-{cluster}",
        [
            *inside,
            proxy,
            "--config="
            + str(
                realnode.kube_proxy_config(
                    LAYOUT, cluster, component_kubeconfig(cluster, "kube-proxy")
                )
            ),
        ],
        exe=proxy,
    )

    def node_ready() -> bool:
        try:
            out = kubectl(
                cluster,
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}{' '}{.spec.taints}",
            )
        except ClusterError:
            return False
        # Ready, and the controller-manager has lifted the not-ready taint.
        return out.startswith("True") and "not-ready" not in out

    wait_for(f"kubelet-{cluster}", node_ready, f"node {node} Ready")
    # The API server reconciles no endpoints here (--endpoint-reconciler-type=none): pods reach
    # it at kubernetes.default through the forwarder on the host address.
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(api_endpoints(cluster)))
    start_coredns(bindir, cluster, inside)
    healthz = f"http://{LAYOUT.node_ip(cluster)}:10256/healthz"
    wait_for(f"kube-proxy-{cluster}", lambda: http_ok(healthz), "healthz")


def api_endpoints(cluster: str) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "localcluster.conveyor.dev",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [LAYOUT.host_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": Ports.apiserver(cluster), "protocol": "TCP"}],
    }


COREDNS_RBAC = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
            ],
        },
    ],
}


def start_coredns(bindir: Path, cluster: str, inside: list[str]) -> None:
    """The cluster's DNS (cluster.local): CoreDNS in the node's namespace on the node's
    address, which the kubelet gives pods as their nameserver."""
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps(COREDNS_RBAC))
    ip = LAYOUT.node_ip(cluster)
    corefile = LAYOUT.dir(cluster) / "Corefile"
    corefile.write_text(
        f"""cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {ip}
    errors
    ready {ip}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {component_kubeconfig(cluster, "coredns")} {cluster}
        pods insecure
        ttl 5
    }}
    cache 5
}}
# Pods reach nothing outside this machine: other names do not exist for them.
.:53 {{
    bind {ip}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
    )
    coredns = str(bindir / "coredns")
    start(f"coredns-{cluster}", [*inside, coredns, "-conf", str(corefile)], exe=coredns)
    wait_for(f"coredns-{cluster}", lambda: http_ok(f"http://{ip}:8181/ready"), "/ready")


# ---------------------------------------------------------------------------------------------
# commands


def component_names() -> list[str]:
    names = ["etcd"]
    for c in CLUSTERS:
        names += [
            f"kube-apiserver-{c}",
            f"kube-controller-manager-{c}",
            f"kube-scheduler-{c}",
            f"kwok-{c}",
        ]
    if REAL_NODES:
        names += ["registry", "store"]
    for c in REAL_NODES:
        names += [
            f"netns-{c}",
            f"apiserver-proxy-{c}",
            f"containerd-{c}",
            f"kubelet-{c}",
            f"kube-proxy-{c}",
            f"coredns-{c}",
        ]
    return names


def is_up() -> bool:
    return all(alive(n) is not None for n in component_names()) and all(
        https_ok(c, "/readyz") for c in CLUSTERS
    )


def up() -> None:
    """Starts what is not running: everything on a first start (or after `down`), only what
    died after a crash. etcd's data stays (`reset` wipes it)."""
    if is_up():
        print(f"clusters already up ({', '.join(CLUSTERS)}); kubeconfig: {STATE / 'kubeconfig'}")
        return
    frozen = [n for n in component_names() if (pid := alive(n)) is not None and paused(pid)]
    if frozen:  # what a start would wait on in vain; stopping everything would be worse
        raise ClusterError(f"paused: {', '.join(frozen)}; `resume` them first")
    t0 = time.monotonic()
    running = [n for n in component_names() if alive(n) is not None]
    # Loopback ports of what is to start: with nothing running, all of them.
    to_start = [n for n in component_names() if n not in running]
    ports = (
        all_ports()
        if not running
        else [port for n in to_start for host, port in component_ports(n) if host == "127.0.0.1"]
    )
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise ClusterError(
            f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use by another program; "
            f"free them or choose other ports with CONVEYOR_PORT_BASE (now {PORT_BASE})"
        )
    bindir = build_binaries()
    store = None
    if REAL_NODES:
        # Cold, this takes minutes: before any component starts, so no start waits on it.
        images()
        store = build_store()
    ensure_pki()
    write_kubeconfigs()
    try:
        start_components(bindir, store)
    except BaseException:
        stop_all()  # leave no half-started cluster behind; the logs stay in .cluster/logs
        raise
    what = f"restarted {', '.join(to_start)}" if running else "clusters up"
    print(
        f"{what} in {time.monotonic() - t0:.1f}s: {', '.join(CLUSTERS)} "
        f"(kubeconfig {STATE / 'kubeconfig'}, kubectl {STATE / 'bin' / 'kubectl'})"
    )


def start_components(bindir: Path, store: Path | None = None) -> None:
    """Starts, in dependency order, each component that is not running."""
    if alive("etcd") is None:
        start_etcd(bindir)
    for c in CLUSTERS:
        if alive(f"kube-apiserver-{c}") is None:
            start_apiserver(bindir, c)
    for c in CLUSTERS:
        wait_for(f"kube-apiserver-{c}", lambda c=c: https_ok(c, "/readyz"), "/readyz")
    for c in CLUSTERS:
        for name, starter in CONTROLLERS.items():
            if alive(f"{name}-{c}") is None:
                starter(bindir, c)
    write_real_nodes_info()
    registry_started = False
    if REAL_NODES:
        realnode.registry_mirrors(LAYOUT)
        realnode.save_sysctls(LAYOUT)  # the kubelet changes some; down restores them
        if alive("registry") is None:
            start_registry()
            registry_started = True
        if store is not None and alive("store") is None:
            start_store(store)

    def nodes(cluster: str) -> None:
        create_nodes(cluster)
        if cluster in REAL_NODES and any(alive(n) is None for n in real_node_names(cluster)):
            stop_real_node(cluster)  # what is left of it: a node restarts whole
            start_real_node(bindir, cluster)

    with ThreadPoolExecutor(len(CLUSTERS) + 1) as pool:
        # The images (built above) are pushed while the nodes start.
        images = pool.submit(push_images) if registry_started else None
        list(pool.map(nodes, CLUSTERS))
        if images is not None:
            images.result()


CONTROLLERS = {
    "kube-controller-manager": start_controller_manager,
    "kube-scheduler": start_scheduler,
    "kwok": start_kwok,
}


def control_components() -> list[str]:
    """What `stop`, `start`, `pause` and `resume` act on."""
    return ["etcd"] + [f"{n}-{c}" for c in CLUSTERS for n in ("kube-apiserver", *CONTROLLERS)]


def installed_binaries() -> Path:
    """The folder of the binaries `up` started (STATE/bin links there), else a build."""
    link = STATE / "bin" / "etcd"
    return Path(os.readlink(link)).parent if link.is_symlink() else build_binaries()


def start_one(name: str) -> None:
    """Starts one control plane component that is not running, against the data it had."""
    if alive(name) is not None:
        print(f"{name} is already running, pid {alive(name)}")
        return
    busy = [f"{h}:{p}" for h, p in component_ports(name) if not port_free(p, h)]
    if busy:
        raise ClusterError(f"{name}: port(s) {', '.join(busy)} in use by another program")
    bindir = installed_binaries()
    t0 = time.monotonic()
    if name == "etcd":
        start_etcd(bindir)  # waits for its health
        for c in CLUSTERS:  # and for the API servers, which reconnect on their own
            if alive(f"kube-apiserver-{c}") is not None:
                wait_for(f"kube-apiserver-{c}", lambda c=c: https_ok(c, "/readyz"), "/readyz")
    else:
        kind, cluster = name.rsplit("-", 1)
        if kind == "kube-apiserver":
            start_apiserver(bindir, cluster)
            wait_for(name, lambda: https_ok(cluster, "/readyz"), "/readyz")
        else:
            CONTROLLERS[kind](bindir, cluster)
            if kind == "kwok":
                wait_for(name, lambda: not port_free(Ports.kubelet(cluster)), "its server")
    print(f"started {name} in {time.monotonic() - t0:.1f}s, pid {alive(name)}")


def stop_one(name: str) -> None:
    """Stops one control plane component (SIGTERM, SIGKILL after 15 s), until its ports are
    free; the others and etcd's data stay."""
    stopped = _stop([name])
    print(f"stopped {name}" if stopped else f"{name} was not running")


def signal_one(name: str, sig: signal.Signals) -> None:
    pid = alive(name)
    if pid is None:
        raise ClusterError(f"{name} is not running")
    os.kill(pid, sig)
    print(f"{'paused' if sig == signal.SIGSTOP else 'resumed'} {name} (pid {pid})")


def paused(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


def reset() -> None:
    """down, then the clusters' data wiped: the next `up` starts from empty clusters."""
    stopped = stop_all()
    shutil.rmtree(etcd_data(), ignore_errors=True)
    print(f"stopped {len(stopped)} process(es) and wiped etcd's data ({etcd_data()})")


def down() -> None:
    stopped = stop_all()
    print(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))


def status() -> int:
    ok = True
    for name in component_names():
        pid = alive(name)
        ok &= pid is not None and not paused(pid)
        state = "not running" if not pid else f"{'PAUSED' if paused(pid) else 'running'}, pid {pid}"
        print(f"{name:32} {state}")
    for c in CLUSTERS:
        ready = https_ok(c, "/readyz")
        ok &= ready
        print(f"cluster {c:24} {'ready' if ready else 'not ready'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["up", "down", "status", "reset", "stop", "start", "pause", "resume"]
    )
    parser.add_argument(
        "component",
        nargs="?",
        help="for stop, start, pause, resume: etcd, or kube-apiserver-CLUSTER, "
        "kube-controller-manager-CLUSTER, kube-scheduler-CLUSTER, kwok-CLUSTER",
    )
    args = parser.parse_args()
    one = args.command in ("stop", "start", "pause", "resume")
    if one and args.component not in control_components():
        parser.error(f"{args.command} needs one of: {', '.join(control_components())}")
    if not one and args.component:
        parser.error(f"{args.command} takes no component")
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "reset":
            reset()
        elif args.command == "stop":
            stop_one(args.component)
        elif args.command == "start":
            start_one(args.component)
        elif args.command in ("pause", "resume"):
            signal_one(
                args.component, signal.SIGSTOP if args.command == "pause" else signal.SIGCONT
            )
        else:
            return status()
    except ClusterError as e:
        print(f"localcluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
