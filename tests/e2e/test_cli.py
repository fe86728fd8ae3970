"""The `conveyor` command against a real API server and operator (issue 14): what it refuses at
once, cancel that keeps logs and says who, retry in the same run, rerun, the output formats,
describe, a whole run's logs followed, get --watch, and version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import yaml

from tests.e2e.conveyor import (
    Conveyor,
    bind,
    conveyor_cli,
    fails,
    job,
    job_status,
    lasts,
    phase,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.support import ROOT, Clusters, wait_until

SCRIPT_LOG = (ROOT / "hack" / "kwok" / "logs" / "script.log").read_text()


def cli(clusters: Clusters, ns: str, *args: str, context: str = "ci-as-developer"):
    return conveyor_cli(clusters, *args, "-n", ns, context=context)


def developer(clusters: Clusters, ns: str) -> None:
    bind(clusters, ns, [("developer", "edit")])
    # RBAC is cached by the API server for a moment: wait until it lets the developer in.
    wait_until(lambda: cli(clusters, ns, "get").returncode == 0, what="developer may use Conveyor")


def test_follow_of_a_job_the_run_does_not_have_fails_at_once(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    developer(clusters, conveyor.ns)
    conveyor.create(pipeline("basic", [job("build", "build"), job("unit")]))
    conveyor.create(run("basic-1", "basic"))
    began = time.monotonic()
    proc = cli(clusters, conveyor.ns, "logs", "basic-1", "test", "-f")
    assert time.monotonic() - began < 20  # it used to wait an hour
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("has no job 'test' (its jobs: build, unit)")


def test_a_run_of_a_missing_pipeline_is_warned_and_wait_fails(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    developer(clusters, conveyor.ns)
    proc = cli(clusters, conveyor.ns, "run", "nope", "--ref", "main")
    assert proc.returncode == 0  # GitOps: a run may come before its Pipeline
    name = proc.stdout.strip()
    assert name.startswith("nope-")
    assert f"pipeline 'nope' does not exist in namespace {conveyor.ns}" in proc.stderr
    assert "waits Pending until it is created" in proc.stderr
    waited = cli(clusters, conveyor.ns, "run", "nope", "--ref", "main", "--wait")
    assert waited.returncode == 1 and "nothing was created" in waited.stderr
    assert len(conveyor.runs()) == 1
    # With the Pipeline, --wait waits and says how the run ended.
    conveyor.create(pipeline("ok", [job("build", "build")]))
    done = cli(clusters, conveyor.ns, "run", "ok", "--ref", "main", "--wait")
    assert done.returncode == 0, done.stderr
    assert ": Succeeded" in done.stderr.splitlines()[-1]
    conveyor.create(pipeline("bad", [job("build", "build", **fails(3))]))
    failed = cli(clusters, conveyor.ns, "run", "bad", "--ref", "main", "--wait")
    assert failed.returncode == 1 and "Failed" in failed.stderr


def test_cancel_stops_jobs_keeps_their_logs_and_says_who(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    developer(clusters, conveyor.ns)
    conveyor.create(pipeline("slow", [job("build", "build", **lasts("300s")), job("unit")]))
    name = cli(clusters, conveyor.ns, "run", "slow", "--ref", "main").stdout.strip()
    conveyor.wait_run(name, lambda r: job_status(r, "build").get("phase") == "Running")
    cancel = cli(clusters, conveyor.ns, "cancel", name)
    assert cancel.returncode == 0, cancel.stderr
    done = conveyor.wait_finished(name)
    assert phase(done) == "Cancelled"
    assert succeeded_condition(done)["message"] == "the run was cancelled by developer"
    assert done["metadata"]["annotations"]["conveyor.dev/cancelled-by"] == "developer"
    # The Job and its pod stay, the pod ended by its deadline, not deleted.
    jobs = conveyor.jobs(name)
    assert len(jobs) == 1
    pods = json.loads(
        clusters.kubectl(
            "ci", "get", "pods", "-n", conveyor.ns, "-l",
            f"batch.kubernetes.io/job-name={jobs[0].metadata.name}", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert [p["status"]["phase"] for p in pods] == ["Failed"]
    assert pods[0]["status"].get("reason") == "DeadlineExceeded"
    logs = cli(clusters, conveyor.ns, "logs", name, "build", "-c", "script")
    assert logs.returncode == 0, logs.stderr
    assert SCRIPT_LOG.splitlines()[0].split(" ", 3)[3] in logs.stdout
    events = json.loads(
        clusters.kubectl(
            "ci", "get", "events", "-n", conveyor.ns,
            "--field-selector", f"involvedObject.name={name},reason=RunCancelled", "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    assert events and "cancelled by developer" in events[0]["message"]
    # Nobody writes the annotation themselves.
    forged = clusters.kubectl(
        "ci-as-developer", "annotate", "pipelinerun", name, "-n", conveyor.ns,
        "--overwrite", "conveyor.dev/cancelled-by=someone-else", check=False,
    )  # fmt: skip
    assert forged.returncode != 0 and "records who cancelled the run" in forged.stderr


def test_retry_runs_a_failed_job_again_in_the_same_run(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    developer(clusters, conveyor.ns)
    conveyor.create(
        pipeline("rt", [job("build", "build"), job("unit", **fails(2)), job("ship", "deploy")])
    )
    conveyor.create(run("rt-1", "rt"))
    first = conveyor.wait_finished("rt-1")
    assert phase(first) == "Failed"
    assert job_status(first, "ship")["phase"] == "Skipped"
    refused = cli(clusters, conveyor.ns, "retry", "rt-1", "build")
    assert refused.returncode == 1 and "has not failed (it is Succeeded)" in refused.stderr
    proc = cli(clusters, conveyor.ns, "retry", "rt-1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "rt-1: unit retried (attempt 2)"
    again = conveyor.wait_run(
        "rt-1", lambda r: phase(r) == "Failed" and job_status(r, "unit").get("attempt") == 2
    )
    assert job_status(again, "build")["attempt"] == 1  # what succeeded is kept
    unit_jobs = [
        j for j in conveyor.jobs("rt-1") if j.metadata.annotations["conveyor.dev/job"] == "unit"
    ]
    assert sorted(j.metadata.annotations["conveyor.dev/attempt"] for j in unit_jobs) == ["1", "2"]
    reasons = {
        e["reason"]
        for e in json.loads(
            clusters.kubectl(
                "ci", "get", "events", "-n", conveyor.ns,
                "--field-selector", "involvedObject.name=rt-1", "-o", "json",
            ).stdout
        )["items"]
    }  # fmt: skip
    assert {"RunRetried", "JobRetried"} <= reasons
    # Asked again for the same attempt: nothing new; for attempt 2: attempt 3.
    assert cli(clusters, conveyor.ns, "retry", "rt-1", "unit").stdout.strip() == (
        "rt-1: unit retried (attempt 3)"
    )
    conveyor.wait_run("rt-1", lambda r: job_status(r, "unit").get("attempt") == 3)


def test_get_outputs_describe_and_rerun(conveyor: Conveyor, clusters: Clusters) -> None:
    developer(clusters, conveyor.ns)
    conveyor.create(pipeline("fmt", [job("build", "build"), job("unit", **fails(4))]))
    conveyor.create(run("fmt-1", "fmt", variables={"X": "1"}))
    conveyor.wait_finished("fmt-1")
    ns = conveyor.ns
    table = cli(clusters, ns, "get")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:6] == [
        "NAME", "PIPELINE", "REF", "SHA", "STATUS", "WAITING",
    ]  # fmt: skip
    assert cli(clusters, ns, "get", "-o", "name").stdout.split() == [
        "pipelinerun.conveyor.dev/fmt-1"
    ]
    listed = json.loads(cli(clusters, ns, "get", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["fmt-1"]
    one = yaml.safe_load(cli(clusters, ns, "get", "fmt-1", "-o", "yaml").stdout)
    assert one["status"]["phase"] == "Failed"
    wide = cli(clusters, ns, "get", "fmt-1", "-o", "wide").stdout
    assert "ENVIRONMENT" in wide and "MESSAGE" in wide
    # -A needs the right to list runs cluster-wide: the developer has not, the admin has.
    assert cli(clusters, ns, "get", "-A").returncode == 1
    every = conveyor_cli(clusters, "get", "-A")
    assert every.returncode == 0 and any(
        line.split()[:2] == [ns, "fmt-1"] for line in every.stdout.splitlines()
    )
    described = cli(clusters, ns, "describe", "fmt-1")
    assert described.returncode == 0, described.stderr
    assert re.search(r"^Started by: +\S+$", described.stdout, re.M)
    assert "unit (attempt 1, exit code 4)" in described.stdout
    assert "JobFailed" in described.stdout
    rerun = cli(clusters, ns, "rerun", "fmt-1")
    assert rerun.returncode == 0, rerun.stderr
    new = conveyor.get_run(rerun.stdout.strip())
    old = conveyor.get_run("fmt-1")
    assert new["metadata"]["annotations"]["conveyor.dev/rerun-of"] == "fmt-1"
    assert new["metadata"]["annotations"]["conveyor.dev/initiator"] == "developer"
    assert new["spec"]["variables"] == {"X": "1"}
    # The commit the run built when it had one (a pipeline without a repository has none).
    built = (old["status"].get("evaluation") or {}).get("sha")
    assert new["spec"]["revision"] == {
        **old["spec"]["revision"],
        **({"sha": built} if built else {}),
    }


def test_logs_follow_a_whole_run_and_get_watches_it(conveyor: Conveyor, clusters: Clusters) -> None:
    developer(clusters, conveyor.ns)
    conveyor.create(
        pipeline("wf", [job("first", "build", **lasts("10s")), job("second", **lasts("5s"))])
    )
    conveyor.create(run("wf-1", "wf"))
    py = [sys.executable, "-m", "conveyor.cli.main"]
    where = ["-n", conveyor.ns, "--kubeconfig", str(clusters.kubeconfig)]
    where += ["--context", "ci-as-developer"]
    watcher = subprocess.Popen(
        [*py, "get", "wf-1", "--watch", *where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    follower = subprocess.Popen(
        [*py, "logs", "wf-1", "-f", "-c", "script", *where],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = follower.communicate(timeout=120)
        shown, _ = watcher.communicate(timeout=60)
    finally:
        follower.kill()
        watcher.kill()
    assert follower.returncode == 0, err
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert [h.split(" (")[0] for h in headers] == ["==> first", "==> second"], out
    assert out.count(SCRIPT_LOG.splitlines()[0].split(" ", 3)[3]) == 2
    assert watcher.returncode == 0
    # The table was printed as the run went, and last when it had ended.
    assert shown.count("Run:      wf-1") >= 2
    assert shown.rstrip().split("Run:      wf-1")[-1].startswith("   Succeeded")


def test_version_reads_the_operators_deployment(conveyor: Conveyor, clusters: Clusters) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "conveyor-operator",
            "labels": {
                "app.kubernetes.io/name": "conveyor",
                "app.kubernetes.io/component": "operator",
            },
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "op"}},
            "template": {
                "metadata": {"labels": {"app": "op"}},
                "spec": {"containers": [{"name": "operator", "image": "r.example/conveyor:9.8.7"}]},
            },
        },
    }
    clusters.kubectl("ci", "apply", "-n", conveyor.ns, "-f", "-", stdin=json.dumps(deployment))
    proc = conveyor_cli(clusters, "version", "--operator-namespace", conveyor.ns)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1] == "operator: 9.8.7"
    bind(clusters, conveyor.ns, [("outsider", "edit")])
    unknown = conveyor_cli(
        clusters, "version", "--operator-namespace", "conveyor-system", context="ci-as-outsider"
    )
    assert unknown.returncode == 0 and unknown.stdout.splitlines()[1].startswith(
        "operator: unknown ("
    )
