"""The control plane going away under a running operator: ci's API server restarted, etcd
frozen, the API server refusing requests (429), a target cluster's API server restarted
mid-deploy. Each time every run ends once with the right result, no Job is created twice, no
status is lost, the operator process never restarts, and its log stays short: one line per
cause and interval, no tracebacks."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.conveyor import (
    OPERATOR_NS,
    OPERATOR_SA,
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
from tests.e2e.gitrepo import GitRepo
from tests.e2e.support import ROOT, Clusters, wait_until
from tests.e2e.test_deploy import app, pipeline_with_deploys, reachable

__all__ = ["app"]  # the deploy tests' fixture: the seed's app, Environments test and prod

RUNS = 20
STAGES = ("build", "test", "deploy")
JOBS_PER_RUN = 6


def cluster(command: str, component: str) -> float:
    """hack/localcluster.py COMMAND COMPONENT; returns how long it took."""
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "localcluster.py"), command, component],
        capture_output=True,
        text=True,
        # A restart on this machine loaded by other builds can take minutes: waits of 5.
        env={**os.environ, "CONVEYOR_CLUSTER_TIMEOUT": "300"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.monotonic() - began


class LogWindow:
    """The operator's log lines written since this was made."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, path.stat().st_size

    def lines(self) -> list[str]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace").splitlines()


def assert_quiet(log: LogWindow, seconds: float) -> None:
    """No traceback, and at most a few lines per 30-second interval the fault lasted: each
    cause is said once per interval (plus Kopf's watch restarts, one per resource kind)."""
    lines = log.lines()
    assert not [line for line in lines if "Traceback" in line], "\n".join(lines[-60:])
    bound = 12 * (1 + int(seconds // 30)) + 10
    assert len(lines) <= bound, f"{len(lines)} lines > {bound}:\n" + "\n".join(lines[-60:])


def first_write_after(namespace: str, since: float) -> float:
    """Seconds from `since` (epoch) to the operator's first accepted write in `namespace`
    afterwards, from the audit log: how long it took to act again once the fault ended."""
    stamps = [
        _epoch(e["requestReceivedTimestamp"])
        for e in audit_entries(
            lambda e: (
                e["verb"] in ("create", "patch", "update")
                and e["user"].get("username") == OPERATOR_USER
                and (e.get("objectRef") or {}).get("namespace") == namespace
                and (e.get("responseStatus") or {}).get("code") in (200, 201)
            )
        )
    ]
    return min((t for t in stamps if t > since), default=float("nan")) - since


def six_jobs(name: str, runs: int) -> dict:
    jobs = [job(f"{s}-{i}", s, **lasts("2s")) for s in STAGES for i in (1, 2)]
    return pipeline(name, jobs, historyLimit=runs)  # keep every run, and so its Jobs


def creates_of_jobs(namespace: str) -> list[tuple[str | None, int | None]]:
    """Every create of a Job in `namespace` by the operator, as the API server recorded it."""
    return [
        (e["objectRef"].get("name"), (e.get("responseStatus") or {}).get("code"))
        for e in audit_entries(
            lambda e: (
                e["verb"] == "create"
                and e["user"].get("username") == OPERATOR_USER
                and (e.get("objectRef") or {}).get("resource") == "jobs"
                and (e.get("objectRef") or {}).get("namespace") == namespace
            )
        )
    ]


def assert_each_job_once(conveyor: Conveyor, runs: int, jobs_per_run: int) -> None:
    jobs = conveyor.jobs()
    per_job = Counter(
        (j.metadata.labels["conveyor.dev/pipelinerun"], j.metadata.annotations["conveyor.dev/job"])
        for j in jobs
    )
    assert len(per_job) == runs * jobs_per_run and set(per_job.values()) == {1}
    assert {j.metadata.annotations["conveyor.dev/attempt"] for j in jobs} == {"1"}
    # The API server's record: each Job created (201) once; a retry finds it (409). A request
    # cut off by the restart before its body was read is recorded without a name.
    creates = creates_of_jobs(conveyor.ns)
    assert 201 not in [code for name, code in creates if name is None]
    created = Counter(name for name, code in creates if code == 201)
    assert set(created) <= {j.metadata.name for j in jobs}
    assert all(n == 1 for n in created.values()), created.most_common(3)


def assert_status_kept(conveyor: Conveyor, names: list[str], jobs_per_run: int) -> None:
    """No status lost: each run's status has every job, finished, with its times, and the
    operator's last status write of each run was accepted."""
    for name in names:
        status = conveyor.get_run(name)["status"]
        assert len(status["jobs"]) == jobs_per_run, status["jobs"]
        for j in status["jobs"]:
            assert j["phase"] == "Succeeded" and j["attempt"] == 1, j
            assert j.get("startTime") and j.get("completionTime"), j
    last: dict[str, int | None] = {}
    for e in audit_entries(
        lambda e: (
            e["verb"] == "patch"
            and e["user"].get("username") == OPERATOR_USER
            and (e.get("objectRef") or {}).get("resource") == "pipelineruns"
            and (e.get("objectRef") or {}).get("subresource") == "status"
            and (e.get("objectRef") or {}).get("namespace") == conveyor.ns
        )
    ):
        last[e["objectRef"]["name"]] = (e.get("responseStatus") or {}).get("code")
    assert set(last) == set(names)
    assert set(last.values()) == {200}, last


@contextmanager
def same_process(operator: Operator) -> Iterator[None]:
    assert operator.proc is not None
    pid = operator.proc.pid
    yield
    assert operator.proc.pid == pid and operator.proc.poll() is None, "the operator restarted"


def test_runs_survive_two_restarts_of_ci_api_server(conveyor: Conveyor, operator: Operator) -> None:
    conveyor.create(six_jobs("six", RUNS))
    names = [f"six-{i:02d}" for i in range(RUNS)]
    log = LogWindow(operator.log)
    began = time.monotonic()
    back: list[float] = []
    with same_process(operator):
        for name in names:
            conveyor.create(run(name, "six"))
        # Restart at two points of progress (Jobs created so far out of 120).
        for threshold in (20, 70):
            wait_until(
                lambda t=threshold: len(conveyor.jobs()) >= t,
                timeout=180,
                what=f"{threshold} Jobs created",
            )
            down = time.monotonic()
            cluster("stop", "kube-apiserver-ci")
            # Down for a while (the fault's length, not a synchronisation): Jobs finish
            # meanwhile, unseen by the operator.
            time.sleep(10)
            back.append(time.time())  # from its start: the operator acts before /readyz
            cluster("start", "kube-apiserver-ci")
            print(f"ci's API server away for {time.monotonic() - down:.1f} s")
        done = [conveyor.wait_finished(name, timeout=300) for name in names]
        print(f"20 six-job runs through two restarts: {time.monotonic() - began:.1f} s")
    for t in back:
        print(f"first write {first_write_after(conveyor.ns, t):.1f} s after the restart began")
    assert [phase(r) for r in done] == ["Succeeded"] * RUNS
    assert_each_job_once(conveyor, RUNS, JOBS_PER_RUN)
    assert_status_kept(conveyor, names, JOBS_PER_RUN)
    assert_quiet(log, time.monotonic() - began)


def runs_through(
    conveyor: Conveyor, operator: Operator, runs: int, fault: Callable[[], None], prefix: str
) -> tuple[list[str], float]:
    """`runs` six-job runs with `fault` applied once a third of their Jobs exist; returns the
    names, once all finished, and the seconds from the fault's start to the last run's end."""
    conveyor.create(six_jobs(prefix, runs))
    names = [f"{prefix}-{i:02d}" for i in range(runs)]
    log = LogWindow(operator.log)
    began = time.monotonic()
    with same_process(operator):
        for name in names:
            conveyor.create(run(name, prefix))
        wait_until(
            lambda: len(conveyor.jobs()) >= runs * JOBS_PER_RUN // 3,
            timeout=180,
            what="a third of the Jobs created",
        )
        faulted = time.monotonic()
        fault()
        ended = time.time()
        done = [conveyor.wait_finished(name, timeout=300) for name in names]
        took = time.monotonic() - faulted
    print(f"first write {first_write_after(conveyor.ns, ended):.1f} s after the fault ended")
    assert [phase(r) for r in done] == ["Succeeded"] * runs
    assert_each_job_once(conveyor, runs, JOBS_PER_RUN)
    assert_status_kept(conveyor, names, JOBS_PER_RUN)
    assert_quiet(log, time.monotonic() - began)
    return names, took


def test_runs_survive_etcd_paused_for_twenty_seconds(
    conveyor: Conveyor, operator: Operator
) -> None:
    def pause_etcd() -> None:
        cluster("pause", "etcd")
        try:
            time.sleep(20)  # the fault's length: etcd frozen, as a hung disk would leave it
        finally:
            cluster("resume", "etcd")

    _, took = runs_through(conveyor, operator, 10, pause_etcd, "frozen")
    print(f"10 six-job runs ended {took:.1f} s after etcd was paused for 20 s")


# API Priority and Fairness: the operator's requests in a priority level of no seats, which
# rejects (429, with Retry-After) whatever it cannot serve at once.
REFUSE_OPERATOR = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration",
            "metadata": {"name": "e2e-refuse-operator"},
            "spec": {
                "type": "Limited",
                "limited": {
                    "nominalConcurrencyShares": 0,
                    "lendablePercent": 0,
                    "borrowingLimitPercent": 0,
                    "limitResponse": {"type": "Reject"},
                },
            },
        },
        {
            "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema",
            "metadata": {"name": "e2e-refuse-operator"},
            "spec": {
                "priorityLevelConfiguration": {"name": "e2e-refuse-operator"},
                "matchingPrecedence": 500,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [
                    {
                        "subjects": [
                            {
                                "kind": "ServiceAccount",
                                "serviceAccount": {
                                    "namespace": OPERATOR_NS,
                                    "name": OPERATOR_SA,
                                },
                            }
                        ],
                        "resourceRules": [
                            {
                                "verbs": ["*"],
                                "apiGroups": ["*"],
                                "resources": ["*"],
                                "namespaces": ["*"],
                                "clusterScope": True,
                            }
                        ],
                    }
                ],
            },
        },
    ],
}


def test_runs_survive_the_api_server_refusing_the_operator_with_429(
    conveyor: Conveyor, operator: Operator, clusters: Clusters
) -> None:
    since = time.time()

    def refuse() -> None:
        manifest = json.dumps(REFUSE_OPERATOR)
        clusters.kubectl("ci", "apply", "--validate=false", "-f", "-", stdin=manifest)
        try:
            time.sleep(20)  # the fault's length: every request of the operator refused
        finally:
            clusters.kubectl("ci", "delete", "-f", "-", stdin=manifest)

    _, took = runs_through(conveyor, operator, 10, refuse, "refused")
    print(f"10 six-job runs ended {took:.1f} s after 20 s of 429s")
    refused = audit_entries(
        lambda e: (
            e["user"].get("username") == OPERATOR_USER
            and (e.get("responseStatus") or {}).get("code") == 429
            and _epoch(e["requestReceivedTimestamp"]) > since
        )
    )
    assert refused, "the API server refused none of the operator's requests"


def test_a_deploy_survives_its_target_api_server_restarting(
    conveyor: Conveyor, operator: Operator, app: GitRepo, clusters: Clusters
) -> None:
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["jobs"] = pipe["spec"]["jobs"][:2]  # build and the test deploy
    conveyor.create(pipe)
    log = LogWindow(operator.log)
    began = time.monotonic()
    with same_process(operator):
        conveyor.create(run("restarted", "go-app", ref="master"))
        conveyor.wait_run(
            "restarted",
            lambda r: any(
                j["name"] == "k8s-deploy-test" and j["phase"] == "Running"
                for j in (r.get("status") or {}).get("jobs") or []
            ),
            timeout=120,
        )
        cluster("stop", "kube-apiserver-test")
        time.sleep(10)  # the fault's length: the target away mid-deploy
        cluster("start", "kube-apiserver-test")
        back = time.monotonic()
        done = conveyor.wait_finished("restarted", timeout=300)
    print(f"the run ended {time.monotonic() - back:.1f} s after the target was back")
    print(f"the deploy ended {time.monotonic() - began:.1f} s after it started")
    assert phase(done) == "Succeeded"
    deployments = done["status"]["deployments"]
    assert [(d["environment"], d["result"]) for d in deployments] == [("test", "Succeeded")]
    assert reachable(done).get("status", "True") == "True"
    assert [j["attempt"] for j in done["status"]["jobs"]] == [1, 1]
    assert_quiet(log, time.monotonic() - began)


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
