"""`conveyor logs`: job logs read from the job pods through the API server (kwok's server
stands in for the kubelet and answers with hack/kwok/logs/<container>.log)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from tests.e2e.conveyor import Conveyor, conveyor_cli, fails, job, lasts, pipeline, run
from tests.e2e.gitrepo import new_repo
from tests.e2e.support import ROOT, Clusters, wait_until

CHECKOUT_LOG = (ROOT / "hack" / "kwok" / "logs" / "checkout.log").read_text()
SCRIPT_LOG = (ROOT / "hack" / "kwok" / "logs" / "script.log").read_text()


def text_of(cri_log: str) -> list[str]:
    """The lines a reader sees of a CRI-format log file: `<time> <stream> <tag> <text>`."""
    return [line.split(" ", 3)[3] for line in cri_log.splitlines()]


def as_developer(clusters: Clusters, *args: str) -> subprocess.CompletedProcess:
    return conveyor_cli(clusters, "logs", *args, context="ci-as-developer")


def test_a_jobs_log_is_its_checkout_then_its_script(
    conveyor: Conveyor, clusters: Clusters, tmp_path: Path
) -> None:
    repo = new_repo(tmp_path, {"README": "hello\n"}, branch="master")
    clusters.kubectl(
        "ci", "create", "rolebinding", "dev-view", "--clusterrole=view", "--user=developer",
        "-n", conveyor.ns,
    )  # fmt: skip
    conveyor.create(
        pipeline(
            "lg",
            [
                job("build", "build"),
                job("unit", "test", retry={"max": 1}, **fails(1)),
                job("release", "test", when="manual"),
            ],
            stages=["build", "test"],
            source={"url": repo.url},  # jobs check it out: a checkout container
        )
    )
    conveyor.create(run("lg-1", "lg", ref="master"))
    conveyor.wait_finished("lg-1")
    ns = ("-n", conveyor.ns)

    # Viewers may read logs (the built-in `view` role has pods/log).
    build = wait_until(
        lambda: (p := as_developer(clusters, "lg-1", "build", *ns)).returncode == 0 and p,
        what="developer allowed to read logs",
    )
    checkout, script = text_of(CHECKOUT_LOG), text_of(SCRIPT_LOG)
    assert build.stdout.splitlines() == ["--- checkout ---", *checkout, "--- script ---", *script]

    last = as_developer(clusters, "lg-1", "build", "-c", "script", "--tail", "1", *ns)
    assert last.returncode == 0 and last.stdout.splitlines() == script[-1:]

    # Every job, each under a header; one that never ran says so.
    everything = as_developer(clusters, "lg-1", *ns)
    assert everything.returncode == 0, everything.stderr
    lines = everything.stdout.splitlines()
    assert "==> build (attempt 1, Succeeded) <==" in lines
    assert "==> unit (attempt 2, Failed) <==" in lines
    assert "==> release (attempt 1, Manual) <==" in lines
    assert "(job release has not run: it is Manual)" in lines

    # The first, retried attempt of unit still has its pod.
    first = as_developer(clusters, "lg-1", "unit", "--attempt", "1", *ns)
    assert first.returncode == 0 and script[0] in first.stdout

    unknown = as_developer(clusters, "lg-1", "lint", *ns)
    assert unknown.returncode == 2
    assert "run lg-1 has no job 'lint' (its jobs: build, unit, release)" in unknown.stderr
    manual = as_developer(clusters, "lg-1", "release", *ns)
    assert manual.returncode == 1 and "job release has not run: it is Manual" in manual.stderr
    missing = as_developer(clusters, "lg-1", "build", "-c", "db", *ns)
    assert missing.returncode == 1 and "has no container 'db'" in missing.stderr


def test_follow_waits_for_the_job_to_start(conveyor: Conveyor, clusters: Clusters) -> None:
    # `first` lasts long enough for the command to start first even on a loaded machine.
    conveyor.create(pipeline("fl", [job("first", "build", **lasts("20s")), job("second", "test")]))
    conveyor.create(run("fl-1", "fl"))
    # `second` has no pod yet: --follow waits for it, then streams its log.
    follower = subprocess.Popen(
        [
            sys.executable, "-m", "conveyor.cli.main", "logs", "fl-1", "second", "-f",
            "-c", "script", "-n", conveyor.ns,
            "--kubeconfig", str(clusters.kubeconfig), "--context", "ci",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    # kwok's server keeps a followed log open after the container ended (a kubelet closes it):
    # read until the script's lines are in, then stop.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: (
                [line.rstrip("\n") for line in lines] == text_of(SCRIPT_LOG)
                or follower.poll() is not None
            ),
            timeout=120,
            what="the followed log",
        )
    finally:
        follower.kill()
        _, err = follower.communicate()
    assert [line.rstrip("\n") for line in lines] == text_of(SCRIPT_LOG), err
    assert "waiting for job second of run fl-1 to start" in err
    assert conveyor.wait_finished("fl-1")["status"]["phase"] == "Succeeded"
