#!/usr/bin/env python3
"""`make demo`: the article's pipeline end to end on the local clusters.

Starts the clusters, installs Conveyor (CRDs, RBAC, admission policies) and runs its operator as
its own service account, makes a git repository of examples/go-app, declares the Environments
test and prod (prod approved by group `approvers`), starts a run as `developer`, lets it deploy
to test, approves prod as `approver1`, and prints what was deployed where and
the operator's metrics of the run. Run it again at will.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conveyor import (  # noqa: E402 - the same installation the tests use
    DEMO_OPERATOR_PID,
    SERVICE_MONITOR_CRD,
    install,
    service_account_kubeconfig,
    stop_demo_operator,
)
from tests.e2e.gitrepo import GitRepo  # noqa: E402
from tests.e2e.support import STATE, Clusters, wait_until  # noqa: E402

NS = "go-app"  # where the pipeline runs (ci) and where the app goes (test, prod)
CLUSTERS = Clusters(kubeconfig=STATE / "kubeconfig", kubectl_path=STATE / "bin" / "kubectl")
METRICS_PORT = 16490


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def conveyor(context: str, *args: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            *args,
            "--kubeconfig",
            str(CLUSTERS.kubeconfig),
            "--context",
            context,
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"conveyor {' '.join(args)} (as {context}) failed:\n{proc.stderr}")
    return proc.stdout.strip()


def kubectl(context: str, *args: str, stdin: str | None = None, check: bool = True) -> str:
    return CLUSTERS.kubectl(context, *args, stdin=stdin, check=check).stdout


def start_operator() -> None:
    """The operator as a background process, with its service account's token (never admin);
    `make cluster-down` stops it with the clusters."""
    stop_demo_operator()  # an earlier demo's
    work = STATE / "demo"
    kubeconfig = service_account_kubeconfig(CLUSTERS, work / "operator-kubeconfig")
    log = (STATE / "logs" / "demo-operator.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--allow-local-repositories",
            "--git-cache",
            str(work / "git-cache"),
            "--metrics",
            f"127.0.0.1:{METRICS_PORT}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    DEMO_OPERATOR_PID.write_text(f"{proc.pid}\n{sys.executable}\n")


def make_repository() -> tuple[GitRepo, str, str]:
    path = STATE / "demo" / "go-app"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "go-app", path)
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "master")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "go-app: initial import")
    before = repo.head()
    after = repo.commit("server: say hello in the response", {"src/server.go": "\n// hello\n"})
    return repo, before, after


def main() -> int:
    say("starting the local clusters ci, test and prod")
    subprocess.run([sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"], check=True)
    say("installing Conveyor into ci (CRDs, RBAC, admission policies) and starting its operator")
    install(CLUSTERS)
    (STATE / "demo").mkdir(exist_ok=True)
    start_operator()

    say(f"namespace {NS}: who may do what")
    if kubectl("ci", "get", "ns", NS, check=False) == "":
        kubectl("ci", "create", "ns", NS, check=False)
    # README, "Security": the team edits; approvers watch and vote, nothing more.
    grants = [
        ("developer", "edit"),
        ("approver1", "view"),
        ("approver2", "view"),
        ("approver1", "conveyor-approver"),
        ("approver2", "conveyor-approver"),
    ]
    for user, role in grants:
        kubectl(
            "ci",
            "create",
            "rolebinding",
            f"{user}-{role}",
            f"--clusterrole={role}",
            f"--user={user}",
            "-n",
            NS,
            check=False,
        )
    for ctx in ("test", "prod"):  # what the seed's templates expect of a cluster
        kubectl(ctx, "apply", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
        kubectl(ctx, "create", "ns", "monitoring", check=False)

    say("environments test and prod (prod needs one approval from group approvers)")
    for env, extra in (
        ("test", ["--var", "APP_FQDN=go-app.test.local", "--url", "https://go-app.test.local"]),
        (
            "prod",
            [
                "--var",
                "APP_FQDN=go-app.prod.local",
                "--url",
                "https://go-app.prod.local",
                "--approvers",
                "group:approvers",
                "--required-approvals",
                "1",
            ],
        ),
    ):
        conveyor(
            "ci",
            "env",
            "add",
            env,
            "--target-kubeconfig",
            str(CLUSTERS.kubeconfig),
            "--target-context",
            env,
            "--target-namespace",
            NS,
            "-n",
            NS,
            *extra,
        )

    say("a git repository of examples/go-app, with a push that changes src/")
    repo, before, after = make_repository()
    pipeline = yaml.safe_load((ROOT / "examples" / "go-app" / "pipeline.yaml").read_text())
    pipeline["spec"]["source"]["url"] = repo.url
    kubectl("ci", "apply", "-n", NS, "-f", "-", stdin=json.dumps(pipeline))

    say("developer starts a run of the push")
    run = conveyor(
        "ci-as-developer",
        "run",
        "go-app",
        "--ref",
        "master",
        "--sha",
        after,
        "--before",
        before,
        "--push",  # a push: `changes` rules compare the commit with --before (GitLab's push)
        "-n",
        NS,
    )
    print(f"run {run}")
    CLUSTERS.kubectl(
        "ci",
        "wait",
        "--for=jsonpath={.status.phase}=WaitingForApproval",
        f"pipelinerun/{run}",
        "-n",
        NS,
        "--timeout=180s",
    )
    print(conveyor("ci", "get", run, "-n", NS))

    say("approver1 approves the deploy to prod")
    print(conveyor("ci-as-approver1", "approve", run, "-m", "tested on test", "-n", NS))
    wait_until(
        lambda: (
            json.loads(kubectl("ci", "get", "pipelinerun", run, "-n", NS, "-o", "json"))
            .get("status", {})
            .get("phase")
            in ("Succeeded", "Failed")
        ),
        timeout=180,
        what=f"run {run} to finish",
    )
    print(conveyor("ci", "get", run, "-n", NS))
    status = json.loads(kubectl("ci", "get", "pipelinerun", run, "-n", NS, "-o", "json"))["status"]

    say("what was deployed where")
    for d in status.get("deployments", []):
        print(
            f"{d['environment']:5} namespace {d['namespace']}: {d['result']}, "
            f"version {d['version']}, images {', '.join(d['images'])}"
        )
    print(kubectl("prod", "-n", NS, "get", "deploy", "go-app", "-o", "wide"))

    say(f"the operator's metrics (http://127.0.0.1:{METRICS_PORT}/metrics), this namespace")
    wanted = ("conveyor_pipelineruns_finished_total", "conveyor_deployments_total")
    wait_until(
        lambda: len(metric_lines(wanted)) >= 3,  # the run's end, its deploys to test and prod
        timeout=30,
        what="the run in the operator's metrics",
    )
    print("\n".join(metric_lines(wanted)))
    return 0 if status.get("phase") == "Succeeded" else 1


def metric_lines(names: tuple[str, ...]) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return []
    return [
        line for line in text.splitlines() if line.startswith(names) and f'namespace="{NS}"' in line
    ]


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
    sys.exit(code)
