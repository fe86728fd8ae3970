"""Real nodes for the local clusters: per cluster one kubelet with its own containerd, runc, CNI
bridge and kube-proxy, in a network namespace of its own, beside kwok's fake nodes; and a local
OCI registry (Debian's docker-registry) that containerd mirrors the public registries to.

Used by hack/localcluster.py (standard library only, like it). Every host-level name carries
the port base, so two checkouts with different CONVEYOR_PORT_BASE values coexist:

    network namespace   held by a `sleep` started with `unshare --net` (no bind mount)
    veth pair           cv<base><c>h (host) <-> eth0 in the namespace
    host address        10.250.<net>.1/32 on lo: the registry, the git server of tests, and a
                        forwarder to each API server listen there, where every node reaches
    cgroups             /conveyor-<base>-<cluster> in every cgroup hierarchy (the kubelet's root)
    runtime state       /run/conveyor/<base>/<cluster> (containerd state, runc root, sockets)
    files               <state dir>/node/<cluster>/ (containerd root, kubelet root, configs)

`teardown()` removes exactly these: the pods' processes and containerd's shims, mounts under
the node's directories, cgroups, the namespace with its interfaces, the host address, the
kubelet's container log links, and the kernel settings the kubelet changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = Path("/usr/lib/cni")
CONTAINER_LOG_LINKS = Path("/var/log/containers")  # the kubelet's fixed path for log symlinks
TAINT_KEY = "conveyor.dev/real-node"
NODE_LABEL = "conveyor.dev/node"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"
# Public registries whose names resolve to the local registry on the nodes.
MIRRORED = ("docker.io", "registry-1.docker.io", "quay.io", "gcr.io", "ghcr.io", "registry.k8s.io")
# Kernel settings the kubelet changes on start (KernelTunableModify); restored on teardown.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


class NodeError(Exception):
    """A failure that the user can act on."""


@dataclass(frozen=True)
class Layout:
    """Names and addresses of one checkout's real nodes, all derived from its port base."""

    port_base: int
    state: Path
    clusters: tuple[str, ...]

    @property
    def net(self) -> int:
        # Third octet of every address of this checkout; port bases 50 apart differ.
        return (self.port_base // 50) % 256

    @property
    def host_ip(self) -> str:
        """The host's address that nodes and pods reach (registry, git server, API servers)."""
        return f"10.250.{self.net}.1"

    @property
    def registry(self) -> str:
        return f"{self.host_ip}:{self.port_base + 60}"

    def index(self, cluster: str) -> int:
        return self.clusters.index(cluster)

    def node_name(self, cluster: str) -> str:
        return f"real-{cluster}"

    def link_host_ip(self, cluster: str) -> str:
        return f"10.250.{self.net}.{4 * self.index(cluster) + 5}"

    def node_ip(self, cluster: str) -> str:
        return f"10.250.{self.net}.{4 * self.index(cluster) + 6}"

    def pod_cidr(self, cluster: str) -> str:
        # Outside kwok's fake pod range (10.244.0.0/16) and the Service range (10.96.0.0/16).
        return f"10.{246 + self.index(cluster)}.{self.net}.0/24"

    def veth(self, cluster: str) -> str:
        return f"cv{self.port_base}{cluster}h"[:15]

    def cgroup(self, cluster: str) -> str:
        return f"/conveyor-{self.port_base}-{cluster}"

    def cni_network(self, cluster: str) -> str:
        return f"conveyor-{self.port_base}-{cluster}"

    def dir(self, cluster: str) -> Path:
        return self.state / "node" / cluster

    def run_dir(self, cluster: str) -> Path:
        # Sockets live here: a short path whatever the state dir (unix sockets allow 107 bytes).
        return Path("/run/conveyor") / str(self.port_base) / cluster

    def containerd_sock(self, cluster: str) -> Path:
        return self.run_dir(cluster) / "containerd.sock"

    def pod_logs(self, cluster: str) -> Path:
        return self.dir(cluster) / "pod-logs"

    def kubelet_root(self, cluster: str) -> Path:
        return self.dir(cluster) / "kubelet"


def run(*argv: str, check: bool = True, netns_pid: int | None = None) -> str:
    if netns_pid is not None:
        argv = ("nsenter", f"--net=/proc/{netns_pid}/ns/net", "--", *argv)
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def cgroup_v1() -> bool:
    """A v1 (or hybrid) host: the kubelet then needs failCgroupV1: false."""
    return not (CGROUP_FS / "cgroup.controllers").exists()


def cgroup_hierarchies() -> list[Path]:
    if not cgroup_v1():
        return [CGROUP_FS]
    return sorted(
        p
        for p in CGROUP_FS.iterdir()
        if p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists()
    )


# ---------------------------------------------------------------------------------------------
# host network


def host_address_up(layout: Layout) -> None:
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", "lo")
    if f" {layout.host_ip}/32 " not in addrs:
        run("ip", "addr", "add", f"{layout.host_ip}/32", "dev", "lo")


def host_address_down(layout: Layout) -> None:
    addrs = run("ip", "-o", "-4", "addr", "show", "dev", "lo", check=False)
    if f" {layout.host_ip}/32 " in addrs:
        run("ip", "addr", "del", f"{layout.host_ip}/32", "dev", "lo", check=False)


def network_up(layout: Layout, cluster: str, netns_pid: int) -> None:
    """The node's namespace: eth0 (a veth to the host) with the node's address, a default
    route to the host, forwarding and bridged traffic through iptables (kube-proxy needs it),
    and on the host a route to the node's pods."""
    veth, peer = layout.veth(cluster), f"{layout.veth(cluster)[:-1]}n"
    link_ip, node_ip = layout.link_host_ip(cluster), layout.node_ip(cluster)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
    run("ip", "link", "set", peer, "netns", str(netns_pid))
    run("ip", "addr", "add", f"{link_ip}/30", "dev", veth)
    run("ip", "link", "set", veth, "up")
    inside: list[tuple[str, ...]] = [
        ("ip", "link", "set", "lo", "up"),
        ("ip", "link", "set", peer, "name", "eth0"),
        ("ip", "addr", "add", f"{node_ip}/30", "dev", "eth0"),
        ("ip", "link", "set", "eth0", "up"),
        ("ip", "route", "add", "default", "via", link_ip),
        ("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"),
        ("sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"),
    ]
    for argv in inside:
        run(*argv, netns_pid=netns_pid)
    run("ip", "route", "replace", layout.pod_cidr(cluster), "via", node_ip)


# ---------------------------------------------------------------------------------------------
# cgroups


def cgroups_up(layout: Layout, cluster: str) -> None:
    for h in cgroup_hierarchies():
        d = h / layout.cgroup(cluster).lstrip("/")
        d.mkdir(exist_ok=True)
        if h.name == "cpuset":  # a new cpuset has no CPUs or memory nodes until given some
            for f in ("cpuset.cpus", "cpuset.mems"):
                if not (d / f).read_text().strip():
                    (d / f).write_text((h / f).read_text())


def cgroup_dirs(layout: Layout, cluster: str) -> list[Path]:
    """Every cgroup under the node's root, in every hierarchy, deepest first."""
    roots = [CGROUP_FS / "unified", *cgroup_hierarchies()]
    found: list[Path] = []
    for h in dict.fromkeys(roots):
        top = h / layout.cgroup(cluster).lstrip("/")
        if top.is_dir():
            found += [Path(dirpath) for dirpath, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(layout: Layout, cluster: str) -> set[int]:
    pids: set[int] = set()
    for d in cgroup_dirs(layout, cluster):
        with contextlib.suppress(OSError):
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
    return pids


# ---------------------------------------------------------------------------------------------
# configuration files


def containerd_config(layout: Layout, cluster: str) -> Path:
    d, run_dir = layout.dir(cluster), layout.run_dir(cluster)
    certs = layout.state / "node" / "certs.d"
    conf_dir = d / "cni"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-conveyor.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": layout.cni_network(cluster),
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": "cni0",  # inside the node's namespace: no clash
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": layout.pod_cidr(cluster)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": str(d / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            },
            indent=1,
        )
    )
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""version = 2
root = "{d / "containerd"}"
state = "{run_dir / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{layout.containerd_sock(cluster)}"

[ttrpc]
  address = "{run_dir / "containerd.ttrpc.sock"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"

# Unused, but containerd 1.6's task service needs it loaded: keep its state in ours.
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "{run_dir / "runc-v1"}"

[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # This VM lacks CAP_SYS_RESOURCE: a sandbox's OOM score of -998 cannot be set.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{conf_dir}"
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{run_dir / "runc"}"

[{cri}.registry]
  config_path = "{certs}"
"""
    path = d / "containerd.toml"
    path.write_text(text)
    return path


def registry_mirrors(layout: Layout) -> None:
    """containerd's hosts.toml per public registry: pull from the local registry, over HTTP,
    and nowhere else."""
    certs = layout.state / "node" / "certs.d"
    url = f"http://{layout.registry}"
    for host in (*MIRRORED, layout.registry):
        d = certs / host
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts.toml").write_text(
            f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve", "push"]\n'
        )


def kubelet_config(layout: Layout, cluster: str, pki: Path, cluster_dns: str | None) -> Path:
    d = layout.dir(cluster)
    for sub in ("pod-logs", "volume-plugins", "kubelet"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    cfg: dict[str, object] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip(cluster),
        "port": 10250,  # in the node's own namespace
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(pki / f"kubelet-{cluster}-{layout.node_ip(cluster)}.crt"),
        "tlsPrivateKeyFile": str(pki / f"kubelet-{cluster}-{layout.node_ip(cluster)}.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_sock(cluster)}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": layout.cgroup(cluster),
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        "podCIDR": layout.pod_cidr(cluster),
        "podLogsDir": str(d / "pod-logs"),
        "volumePluginDir": str(d / "volume-plugins"),
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 50,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        # A shared disk whose use other work changes: no evictions for disk, only memory.
        "evictionHard": {"memory.available": "200Mi"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "logging": {"format": "text"},
    }
    if cgroup_v1():
        cfg["failCgroupV1"] = False
    if cluster_dns:
        cfg["clusterDNS"] = [cluster_dns]
    path = d / "kubelet.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def kube_proxy_config(layout: Layout, cluster: str, kubeconfig: Path) -> Path:
    d = layout.dir(cluster)
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": layout.node_name(cluster),
        "bindAddress": layout.node_ip(cluster),
        # The host checks kube-proxy's health at the node's address.
        "healthzBindAddress": f"{layout.node_ip(cluster)}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": layout.pod_cidr(cluster),
        # conntrack limits are the host's (not per namespace): leave them as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "logging": {"format": "text"},
    }
    path = d / "kube-proxy.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def registry_config(layout: Layout) -> Path:
    d = layout.state / "registry"
    d.mkdir(parents=True, exist_ok=True)
    path = layout.state / "registry.yml"
    path.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {d}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {layout.registry}\n  secret: conveyor-local-{layout.port_base}\n"
    )
    return path


# ---------------------------------------------------------------------------------------------
# kernel settings the kubelet changes


def save_sysctls(layout: Layout) -> None:
    """Remembers the host's values once, before the first kubelet starts."""
    path = layout.state / "node" / "sysctls.json"
    if path.exists():
        return
    values = {}
    for key in KUBELET_SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def restore_sysctls(layout: Layout) -> None:
    path = layout.state / "node" / "sysctls.json"
    if not path.exists():
        return
    for key, value in json.loads(path.read_text()).items():
        try:
            f = Path("/proc/sys") / key
            if f.read_text().strip() != value:
                f.write_text(value)
        except OSError:
            pass
    path.unlink()


# ---------------------------------------------------------------------------------------------
# teardown


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def shim_pids(layout: Layout, cluster: str) -> list[int]:
    """containerd's shims of this node: they name its socket in their command line."""
    sock = str(layout.containerd_sock(cluster))
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            argv = _cmdline(int(p.name))
            if argv and "containerd-shim" in argv[0] and sock in argv:
                found.append(int(p.name))
    return found


def kill_pids(pids: set[int] | list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return check()


def mounts_under(paths: list[Path]) -> list[str]:
    """Mount points at or under any of `paths`, deepest first."""
    prefixes = [str(p.resolve()) if p.exists() else str(p) for p in paths]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == pre or point.startswith(pre + "/") for pre in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda m: m.count("/"), reverse=True)


def stop_containers(layout: Layout, cluster: str) -> None:
    """Kills every container of the node through its containerd (so the shims end and unmount
    the root file systems); needs that containerd still running."""
    sock = str(layout.containerd_sock(cluster))
    if not Path(sock).exists():
        return
    ctr = ["ctr", "--address", sock, "--namespace", "k8s.io"]
    tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=20)
    ids = tasks.stdout.split() if tasks.returncode == 0 else []
    for cid in ids:
        subprocess.run([*ctr, "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)
    for cid in ids:
        subprocess.run([*ctr, "tasks", "delete", "-f", cid], capture_output=True, timeout=20)
    # And their records, so that the next start finds no stale pods to clean up.
    listed = subprocess.run([*ctr, "containers", "ls", "-q"], capture_output=True, text=True)
    if listed.returncode == 0 and listed.stdout.split():
        subprocess.run([*ctr, "containers", "delete", *listed.stdout.split()], capture_output=True)


def teardown_node(layout: Layout, cluster: str) -> list[str]:
    """After kubelet, kube-proxy and containerd stopped (containers first, see
    stop_containers): removes what is left of the node on the host. Returns what it removed."""
    removed: list[str] = []
    shims = shim_pids(layout, cluster)
    if shims:
        kill_pids(shims)
        removed.append(f"{len(shims)} shim(s)")
    left = cgroup_pids(layout, cluster)
    if left:
        kill_pids(left)
        removed.append(f"{len(left)} pod process(es)")
        wait(lambda: not cgroup_pids(layout, cluster), 10)
    points = mounts_under([layout.dir(cluster), layout.run_dir(cluster)])
    for point in points:
        subprocess.run(["umount", "-l", point], capture_output=True)
    if points:
        removed.append(f"{len(points)} mount(s)")
    dirs = cgroup_dirs(layout, cluster)
    for d in dirs:
        # rmdir is how a cgroup is removed; a freshly emptied one can need a moment.
        wait(lambda d=d: _rmdir(d), 5)
    if dirs:
        removed.append(f"{len(dirs)} cgroup(s)")
    # Links of the kubelet's container logs that point into this node's log directory.
    if CONTAINER_LOG_LINKS.is_dir():
        mine = str(layout.pod_logs(cluster))
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(mine + "/"):
                link.unlink()
    # libcni caches results per network name on the host.
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        for f in results.glob(f"{layout.cni_network(cluster)}-*"):
            f.unlink()
    subprocess.run(["rm", "-rf", str(layout.run_dir(cluster))], check=False)
    return removed


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def teardown_links(layout: Layout, cluster: str) -> list[str]:
    """After the namespace's holder has ended: the links and routes left on the host."""
    removed: list[str] = []
    # The namespace went with its holder; its veth pair with it. A leftover host end is ours.
    if Path(f"/sys/class/net/{layout.veth(cluster)}").exists():
        run("ip", "link", "del", layout.veth(cluster), check=False)
        removed.append(f"link {layout.veth(cluster)}")
    run("ip", "route", "del", layout.pod_cidr(cluster), check=False)
    return removed


def teardown_host(layout: Layout) -> None:
    host_address_down(layout)
    restore_sysctls(layout)
    for d in (Path("/run/conveyor") / str(layout.port_base), Path("/run/conveyor")):
        with contextlib.suppress(OSError):
            d.rmdir()
