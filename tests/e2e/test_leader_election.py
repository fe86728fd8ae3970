"""Two operator replicas with leader election: one acts, the standby takes over when the leader
dies (SIGKILL) or freezes (SIGSTOP), and a frozen former leader never writes again."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

from kubernetes import client

from tests.e2e.conftest import _free_port
from tests.e2e.conveyor import (
    OPERATOR_NS,
    OPERATOR_USER,
    Conveyor,
    Operator,
    audit_entries,
    job,
    lasts,
    phase,
    pipeline,
    run,
)
from tests.e2e.support import Clusters, wait_until

RUNS = 10
WRITES = {"create", "update", "patch", "delete"}


def replica(operator: Operator, log: Path, lease: str) -> Operator:
    return Operator(
        operator.kubeconfig,
        log,
        port=_free_port(),
        webhook_port=_free_port(),
        metrics_port=_free_port(),
        extra=("--leader-elect", "--lease", lease),
    )


def holder(clusters: Clusters, lease: str) -> str:
    namespace, name = lease.split("/")
    try:
        found = client.CoordinationV1Api(clusters.api("ci")).read_namespaced_lease(name, namespace)
    except client.ApiException:
        return ""
    return found.spec.holder_identity or ""


def pid_of(identity: str) -> int:
    return int(identity.split("_")[-2])


def test_the_standby_takes_over_and_a_fenced_leader_never_writes(
    conveyor: Conveyor, operator: Operator, clusters: Clusters, tmp_path: Path
) -> None:
    operator.stop()  # the session's operator would act beside the replicas
    lease = f"{OPERATOR_NS}/e2e-{conveyor.ns}"
    a, b, c = (replica(operator, tmp_path / f"{n}.log", lease) for n in "abc")
    try:
        a.start()
        wait_until(lambda: holder(clusters, lease), what="a leader", timeout=30)
        assert pid_of(holder(clusters, lease)) == a.proc.pid  # type: ignore[union-attr]
        b.start()  # a standby answers its liveness probe too
        conveyor.create(
            pipeline(
                "ha",
                [job(n, s, **lasts("2s")) for n, s in (("x", "build"), ("y", "test"))],
                historyLimit=RUNS,
            )
        )
        names = [f"ha-{i:02d}" for i in range(RUNS)]
        for name in names:
            conveyor.create(run(name, "ha"))
        wait_until(lambda: len(conveyor.jobs()) >= 6, what="the first Jobs", timeout=120)

        killed = time.monotonic()
        a.kill()
        wait_until(
            lambda: pid_of(holder(clusters, lease) or "_0_") == b.proc.pid,  # type: ignore[union-attr]
            what="the standby to take over",
            timeout=30,
        )
        print(f"takeover after SIGKILL: {time.monotonic() - killed:.1f} s")
        c.start()
        wait_until(lambda: len(conveyor.jobs()) >= 12, what="more Jobs", timeout=120)

        assert b.proc is not None
        b.proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        wait_until(
            lambda: pid_of(holder(clusters, lease) or "_0_") == c.proc.pid,  # type: ignore[union-attr]
            what="the third replica to take over from the frozen leader",
            timeout=30,
        )
        print(f"takeover after SIGSTOP: {time.monotonic() - frozen:.1f} s")
        took_over = time.time()
        b.proc.send_signal(signal.SIGCONT)
        # The thawed former leader finds it lost the lease and stops before any write.
        wait_until(lambda: b.proc.poll() is not None, what="the former leader to stop", timeout=30)
        assert b.proc.returncode == 3

        done = [conveyor.wait_finished(name, timeout=240) for name in names]
        assert [phase(r) for r in done] == ["Succeeded"] * RUNS
    finally:
        for replica_ in (a, b, c):
            if replica_.proc is not None and replica_.proc.poll() is None:
                replica_.proc.send_signal(signal.SIGCONT)
                replica_.stop()
        operator.start()

    # The API server's record: every Job created once, and not one write from the frozen
    # leader after the takeover.
    per_job = Counter(
        (j.metadata.labels["conveyor.dev/pipelinerun"], j.metadata.annotations["conveyor.dev/job"])
        for j in conveyor.jobs()
    )
    assert len(per_job) == RUNS * 2 and set(per_job.values()) == {1}
    thawed = audit_entries(
        lambda e: (
            e["verb"] in WRITES
            and e["user"].get("username") == OPERATOR_USER
            and f"_{b.proc.pid}_" in (e.get("userAgent") or "")  # type: ignore[union-attr]
            and _epoch(e["requestReceivedTimestamp"]) > took_over
        )
    )
    assert thawed == []


def _epoch(stamp: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
