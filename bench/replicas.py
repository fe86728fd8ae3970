"""Replicas and instances: `make bench` runs it after bench/run.py.

- Takeover: two replicas with leader election (`--leader-elect`, a Lease) and 10 two-job runs in
  flight; the leader is killed (SIGKILL), the standby takes over; a third replica starts, the
  new leader is frozen (SIGSTOP), the third takes over. The figure is the time from the signal to
  the Lease naming the new holder (polled every 0.1 s); then the runs must all succeed with every
  Job created once.
- Scale out: two operator instances, each serving its own namespace (`-n`), with the same load
  in each namespace at once, against one instance serving both namespaces: time until every run
  ended, and from the ci cluster's audit log (replicas share one service account; their user
  agents name their process) that each instance wrote only in its own namespace.
Writes its section of docs/benchmarks.md. Figures from one machine, to compare, never assertions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.builds import write_section  # noqa: E402
from bench.run import delete_bench_namespaces, new_namespace  # noqa: E402
from tests.e2e.conftest import _free_port  # noqa: E402
from tests.e2e.conveyor import (  # noqa: E402 - the test harness runs the operator the same way
    OPERATOR_NS,
    OPERATOR_USER,
    Conveyor,
    Operator,
    audit_entries,
    install,
    job,
    lasts,
    phase,
    pipeline,
    run,
    service_account_kubeconfig,
)
from tests.e2e.support import STATE, Clusters, wait_until  # noqa: E402

BEGIN, END = "<!-- replicas:begin -->", "<!-- replicas:end -->"
WRITES = {"create", "update", "patch", "delete"}


def log(message: str) -> None:
    print(f"[bench-replicas] {message}", file=sys.stderr, flush=True)


def operator(kubeconfig: Path, logfile: Path, *extra: str) -> Operator:
    return Operator(
        kubeconfig,
        logfile,
        port=_free_port(),
        webhook_port=_free_port(),
        metrics_port=_free_port(),
        extra=extra,
    )


def holder(clusters: Clusters, lease: str) -> str:
    namespace, name = lease.split("/")
    coordination = client.CoordinationV1Api(clusters.api("ci"))
    try:
        return coordination.read_namespaced_lease(name, namespace).spec.holder_identity or ""
    except client.ApiException:
        return ""


def pid_of(identity: str) -> int:
    return int(identity.split("_")[-2]) if identity.count("_") >= 2 else 0


def wait_holder(clusters: Clusters, lease: str, op: Operator, what: str) -> float:
    """Seconds until the Lease names `op`'s process, polled every 0.1 s."""
    assert op.proc is not None
    began = time.monotonic()
    while pid_of(holder(clusters, lease)) != op.proc.pid:
        if time.monotonic() - began > 120:
            raise AssertionError(f"{what}: no takeover within 120 s")
        time.sleep(0.1)  # the measurement's resolution
    return time.monotonic() - began


def load(conv: Conveyor, prefix: str, runs: int) -> list[str]:
    stages = (("x", "build"), ("y", "test"))
    conv.create(pipeline(prefix, [job(n, s, **lasts("2s")) for n, s in stages], historyLimit=runs))
    names = [f"{prefix}-{i:02d}" for i in range(runs)]
    for name in names:
        conv.create(run(name, prefix))
    return names


def duplicates(conv: Conveyor) -> int:
    per_job = Counter(
        (j.metadata.labels["conveyor.dev/pipelinerun"], j.metadata.annotations["conveyor.dev/job"])
        for j in conv.jobs()
    )
    return sum(n - 1 for n in per_job.values())


def takeover_round(clusters: Clusters, kubeconfig: Path, work: Path, i: int) -> dict[str, Any]:
    ns = new_namespace(clusters, "bench-ha")
    conv = Conveyor(clusters, ns)
    lease = f"{OPERATOR_NS}/bench-{uuid.uuid4().hex[:6]}"
    a, b, c = (
        operator(kubeconfig, work / f"{n}{i}.log", "--leader-elect", "--lease", lease)
        for n in "abc"
    )
    try:
        a.start_slowly()
        wait_holder(clusters, lease, a, "the first leader")
        b.start_slowly()
        names = load(conv, "ha", 10)
        wait_until(lambda: len(conv.jobs()) >= 6, timeout=180, what="the first Jobs")
        a.kill()
        killed = wait_holder(clusters, lease, b, "after SIGKILL")
        c.start_slowly()
        wait_until(lambda: len(conv.jobs()) >= 12, timeout=180, what="more Jobs")
        assert b.proc is not None
        b.proc.send_signal(signal.SIGSTOP)
        frozen = wait_holder(clusters, lease, c, "after SIGSTOP")
        b.proc.send_signal(signal.SIGCONT)
        done = [conv.wait_finished(name, timeout=300) for name in names]
    finally:
        for op in (a, b, c):
            if op.proc is not None and op.proc.poll() is None:
                op.proc.send_signal(signal.SIGCONT)
                op.stop()
    lost = sum(1 for r in done if phase(r) != "Succeeded")
    return {
        "sigkill_s": round(killed, 1),
        "sigstop_s": round(frozen, 1),
        "duplicates": duplicates(conv),
        "lost": lost,
    }


def writes_by_pid(namespaces: list[str], since: float) -> dict[int, Counter[str]]:
    """Per operator process (from its user agent), its accepted writes per namespace."""
    out: dict[int, Counter[str]] = {}
    for e in audit_entries(
        lambda e: (
            e["verb"] in WRITES
            and e["user"].get("username") == OPERATOR_USER
            and (e.get("objectRef") or {}).get("namespace") in namespaces
            and _epoch(e["requestReceivedTimestamp"]) >= since
        )
    ):
        pid = pid_of((e.get("userAgent") or "").split("(")[-1].rstrip(")"))
        out.setdefault(pid, Counter())[e["objectRef"]["namespace"]] += 1
    return out


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def scale_round(
    clusters: Clusters, kubeconfig: Path, work: Path, runs: int, split: bool
) -> dict[str, Any]:
    """`runs` two-job runs in each of two namespaces at once; two instances (one namespace
    each) or one serving both. Returns the seconds until each namespace's runs all ended."""
    namespaces = [new_namespace(clusters, "bench-shard") for _ in range(2)]
    scopes = (
        [["-n", ns] for ns in namespaces]
        if split
        else [[a for ns in namespaces for a in ("-n", ns)]]
    )
    ops = [operator(kubeconfig, work / f"shard-{split}-{k}.log", *s) for k, s in enumerate(scopes)]
    since = time.time()
    try:
        for op in ops:
            op.start_slowly()
        began = time.monotonic()
        convs = [Conveyor(clusters, ns) for ns in namespaces]
        names = [load(conv, "shard", runs) for conv in convs]
        took = []
        for conv, ns_names in zip(convs, names, strict=True):
            for name in ns_names:
                conv.wait_finished(name, timeout=600)
            took.append(time.monotonic() - began)
    finally:
        for op in ops:
            op.stop()
    writes = writes_by_pid(namespaces, since)
    pids = [op.proc.pid for op in ops if op.proc is not None]
    # Each instance's writes outside its own namespace (none, if the split holds).
    foreign = 0
    if split:
        for op_pid, ns in zip(pids, namespaces, strict=True):
            foreign += sum(n for where, n in writes.get(op_pid, Counter()).items() if where != ns)
    return {
        "each_s": [round(t, 1) for t in took],
        "all_s": round(max(took), 1),
        "writes": {str(p): dict(writes.get(p, Counter())) for p in pids},
        "foreign_writes": foreign,
    }


SECTION = """{begin}
## Replicas: takeover, and instances on disjoint namespaces

`bench/replicas.py` (run by `make bench`), on the kwok nodes. **Takeover**: two replicas with
`--leader-elect` and 10 two-job runs in flight; the leader is killed (SIGKILL) and the time runs
until the Lease names the standby; a third replica starts and the new leader is frozen (SIGSTOP)
until the third holds the Lease (polled every 0.1 s). A standby takes a lease whose record has
not changed for 10 s as it saw it (the last renewal, up to 2 s before the fault) and tries every
2 s, so a takeover takes 8 to 12 s by design; a leader stops acting 7 s after its last renewal.
Every run must end Succeeded with each Job created once. **Scale out**: {runs} two-job runs in
each of two namespaces at once, served by two instances (`-n` one namespace each), then by one
instance serving both; time until each namespace's runs all ended, and each instance's writes
outside its own namespace, from the ci cluster's audit log (by the process its user agent
names).

Last run: {date} on {machine}.

| takeover | median (s) | max (s) |
|---|---|---|
| after the leader's SIGKILL | {kill_median} | {kill_max} |
| after the leader's SIGSTOP (partition) | {stop_median} | {stop_max} |

Over {rounds} rounds: {duplicates} duplicate Jobs, {lost} lost or failed runs.

| {runs} runs per namespace | ns 1 done (s) | ns 2 done (s) | writes outside its ns |
|---|---|---|---|
| two instances, one namespace each | {split_1} | {split_2} | {foreign} |
| one instance, both namespaces | {one_1} | {one_2} | (n/a) |

Samples: `{samples}`
{end}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30, help="runs per namespace, scale out")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    up = subprocess.run([sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"])
    if up.returncode != 0:
        return 1
    clusters = Clusters(kubeconfig=STATE / "kubeconfig", kubectl_path=STATE / "bin" / "kubectl")
    install(clusters)
    delete_bench_namespaces(clusters)
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    kubeconfig = service_account_kubeconfig(clusters, work / "kubeconfig")
    takeovers = []
    for i in range(args.rounds):
        takeovers.append(takeover_round(clusters, kubeconfig, work, i))
        log(f"takeover round {i}: {takeovers[-1]}")
    split = scale_round(clusters, kubeconfig, work, args.runs, split=True)
    log(f"two instances: {split}")
    one = scale_round(clusters, kubeconfig, work, args.runs, split=False)
    log(f"one instance: {one}")
    kills = [t["sigkill_s"] for t in takeovers]
    stops = [t["sigstop_s"] for t in takeovers]
    results: dict[str, Any] = {
        "kill_median": round(statistics.median(kills), 1),
        "kill_max": round(max(kills), 1),
        "stop_median": round(statistics.median(stops), 1),
        "stop_max": round(max(stops), 1),
        "duplicates": sum(t["duplicates"] for t in takeovers),
        "lost": sum(t["lost"] for t in takeovers),
        "rounds": args.rounds,
        "runs": args.runs,
        "split_1": split["each_s"][0],
        "split_2": split["each_s"][1],
        "foreign": split["foreign_writes"],
        "one_1": one["each_s"][0],
        "one_2": one["each_s"][1],
        "samples": {"takeover": takeovers, "two_instances": split, "one_instance": one},
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    write_section(results, args.report, SECTION, BEGIN, END)
    delete_bench_namespaces(clusters)
    log(f"wrote {args.report}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
