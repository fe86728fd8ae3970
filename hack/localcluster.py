#!/usr/bin/env python3
"""Local Kubernetes clusters for Conveyor's tests and demo: ci, test and prod.

One etcd (a key prefix per cluster), and per cluster a kube-apiserver (RBAC, client-certificate
users), kube-controller-manager, kube-scheduler and kwok (fake nodes whose pods run without
containers). Everything binds to loopback; state lives in .cluster/ in the repository.

    python hack/localcluster.py up       # idempotent
    python hack/localcluster.py down     # stops exactly what `up` started, by PID
    python hack/localcluster.py status

Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import base64
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


def make_cert(name: str, subject: str, *, server: bool = False) -> None:
    d = pki()
    key, csr, crt = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    if crt.exists() and key.exists():
        return
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext = d / f"{name}.ext"
    if server:
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
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
    }
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
    for name, subject in client_identities().items():
        make_cert(name, subject)


# ---------------------------------------------------------------------------------------------
# kubeconfigs (JSON is valid kubeconfig; data embedded so a file can be copied anywhere)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(contexts: dict[str, tuple[str, str]], current: str) -> dict:
    """contexts: context name -> (cluster, certificate name)."""
    clusters = sorted({c for c, _ in contexts.values()})
    users = sorted({u for _, u in contexts.values()})
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": c,
                "cluster": {
                    "server": f"https://127.0.0.1:{Ports.apiserver(c)}",
                    "certificate-authority-data": b64(pki() / "ca.crt"),
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


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
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
    pidfile(name).write_text(f"{proc.pid}\n{argv[0]}\n")


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


def stop_all() -> list[str]:
    stopped = []
    if not pids().exists():
        return stopped
    names = [p.stem for p in pids().glob("*.pid")]
    # Stop clients before servers so they do not spam their logs with connection errors.
    order = sorted(names, key=lambda n: 2 if n == "etcd" else n.startswith("kube-apiserver"))
    for name in order:
        pid = alive(name)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            stopped.append((name, pid))
    deadline = time.monotonic() + 15
    for name, pid in stopped:
        while alive(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(name) is not None:
            os.kill(pid, signal.SIGKILL)
    for name in names:
        pidfile(name).unlink(missing_ok=True)
    return [n for n, _ in stopped]


# ---------------------------------------------------------------------------------------------
# health checks


def https_ok(cluster: str, path: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki() / "ca.crt"))
    ctx.load_cert_chain(str(pki() / "admin.crt"), str(pki() / "admin.key"))
    url = f"https://127.0.0.1:{Ports.apiserver(cluster)}{path}"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
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


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
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


def start_etcd(bindir: Path) -> None:
    data = STATE / "etcd"
    shutil.rmtree(data, ignore_errors=True)  # each `up` starts from empty clusters
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


def start_controllers(bindir: Path, cluster: str) -> None:
    p = pki()
    common = ["--leader-elect=false", "--kube-api-qps=5000", "--kube-api-burst=10000"]
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
    start(
        f"kube-scheduler-{cluster}",
        [
            str(bindir / "kube-scheduler"),
            f"--kubeconfig={component_kubeconfig(cluster, 'kube-scheduler')}",
            "--secure-port=0",
            *common,
        ],
    )
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
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}"
            "{' '}{.spec.taints}{'\\n'}{end}",
        )
        rows = [r for r in out.splitlines() if r.strip()]
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
    return names


def is_up() -> bool:
    return all(alive(n) is not None for n in component_names()) and all(
        https_ok(c, "/readyz") for c in CLUSTERS
    )


def up() -> None:
    if is_up():
        print(f"clusters already up ({', '.join(CLUSTERS)}); kubeconfig: {STATE / 'kubeconfig'}")
        return
    if stop_all():  # a partial cluster from an earlier run: start clean
        print("stopped the remains of an earlier start")
    t0 = time.monotonic()
    busy = [p for p in all_ports() if not port_free(p)]
    if busy:
        raise ClusterError(
            f"port(s) {', '.join(map(str, busy))} on 127.0.0.1 are in use by another program; "
            f"free them or choose other ports with CONVEYOR_PORT_BASE (now {PORT_BASE})"
        )
    bindir = build_binaries()
    ensure_pki()
    write_kubeconfigs()
    try:
        start_components(bindir)
    except BaseException:
        stop_all()  # leave no half-started cluster behind; the logs stay in .cluster/logs
        raise
    print(
        f"clusters up in {time.monotonic() - t0:.1f}s: {', '.join(CLUSTERS)} "
        f"(kubeconfig {STATE / 'kubeconfig'}, kubectl {STATE / 'bin' / 'kubectl'})"
    )


def start_components(bindir: Path) -> None:
    start_etcd(bindir)
    for c in CLUSTERS:
        start_apiserver(bindir, c)
    for c in CLUSTERS:
        wait_for(f"kube-apiserver-{c}", lambda c=c: https_ok(c, "/readyz"), "/readyz")
    for c in CLUSTERS:
        start_controllers(bindir, c)
    with ThreadPoolExecutor(len(CLUSTERS)) as pool:
        list(pool.map(create_nodes, CLUSTERS))


def down() -> None:
    stopped = stop_all()
    print(f"stopped {len(stopped)} process(es)" + (f": {', '.join(stopped)}" if stopped else ""))


def status() -> int:
    ok = True
    for name in component_names():
        pid = alive(name)
        ok &= pid is not None
        print(f"{name:32} {'running, pid ' + str(pid) if pid else 'not running'}")
    for c in CLUSTERS:
        ready = https_ok(c, "/readyz")
        ok &= ready
        print(f"cluster {c:24} {'ready' if ready else 'not ready'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args()
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        else:
            return status()
    except ClusterError as e:
        print(f"localcluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
