#!/usr/bin/env python3
"""`make demo`: the article's pipeline end to end on the local clusters, for real.

Starts the clusters (kwok nodes and one real node each), installs Conveyor (CRDs, RBAC,
admission policies) and Clair, runs the operator as its own service account, serves a git
repository of examples/go-app over HTTP, declares the Environments test and prod (prod approved
by group `approvers`), and starts a run as `developer`. On the real nodes: `go test` runs, BuildKit
builds the image and pushes it to the local registry, Clair scans it by digest, the deploy to
test rolls it out pinned by digest; approver1 approves prod, and the demo ends by fetching the
app's page through its Service in the prod cluster. Run it again at will.
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

from tests.e2e import clair  # noqa: E402 - the same installation the tests use
from tests.e2e.conveyor import (  # noqa: E402
    DEMO_OPERATOR_PID,
    SERVICE_MONITOR_CRD,
    install,
    platform_options,
    service_account_kubeconfig,
    stop_demo_operator,
)
from tests.e2e.gitrepo import GitRepo  # noqa: E402
from tests.e2e.realnode import RealNodes, git_http_handler, serve  # noqa: E402
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


def start_operator(real: RealNodes) -> None:
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
            # CI_REGISTRY, the registry mirror, Trivy's database: the local registry
            *platform_options(real),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    DEMO_OPERATOR_PID.write_text(f"{proc.pid}\n{sys.executable}\n")


def make_repository(real: RealNodes) -> tuple[Path, str, str]:
    """examples/go-app as a bare repository the pods clone over HTTP, with two commits. Its
    images are named in the local registry (the example names registry.example.com), and its
    app's pods run on the real nodes."""
    work = STATE / "demo" / "go-app"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "examples" / "go-app", work)
    deployment = work / "templates" / "deployment.yml"
    manifest = yaml.safe_load(deployment.read_text())
    pod = manifest["spec"]["template"]["spec"]
    pod.update(real.placement())
    # The page names the version it serves (the server prints $VERSION).
    pod["containers"][0]["env"] = [{"name": "VERSION", "value": "<VERSION>"}]
    deployment.write_text(
        yaml.safe_dump(manifest, sort_keys=False).replace("registry.example.com", real.registry)
    )
    repo = GitRepo(work)
    repo.git("init", "-q", "-b", "master")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "go-app: initial import")
    before = repo.head()
    after = repo.commit("server: say hello in the response", {"src/server.go": "\n// hello\n"})
    bare = STATE / "demo" / "git" / "go-app.git"
    shutil.rmtree(bare, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare.parent, before, after


def fetch_page(real: RealNodes) -> str:
    """The app's page, fetched by a pod on prod's real node through the Service's DNS name and
    cluster IP (CoreDNS, kube-proxy)."""
    name = "fetch-go-app"
    kubectl("prod", "-n", NS, "delete", "pod", name, "--ignore-not-found", "--wait=true")
    fetch = (
        "exec 3<>/dev/tcp/go-app/80 && printf 'GET / HTTP/1.0\\r\\nHost: go-app\\r\\n\\r\\n' >&3 "
        "&& cat <&3"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "fetch", "image": "debian:bookworm-slim", "command": ["bash", "-c", fetch]}
            ],
            **real.placement(),
        },
    }
    kubectl("prod", "-n", NS, "apply", "-f", "-", stdin=json.dumps(pod))
    CLUSTERS.kubectl(
        "prod",
        "-n",
        NS,
        "wait",
        "--for=jsonpath={.status.phase}=Succeeded",
        f"pod/{name}",
        "--timeout=120s",
    )
    page = kubectl("prod", "-n", NS, "logs", name)
    kubectl("prod", "-n", NS, "delete", "pod", name, "--wait=false")
    return page


def main() -> int:
    real = prepare()
    say("a git repository of examples/go-app served over HTTP, with a push that changes src/")
    root, before, after = make_repository(real)
    with serve(real.host_ip, git_http_handler(root)) as port:
        apply_pipeline(real, port)
        return run_and_approve(real, before, after)


def prepare() -> RealNodes:
    """The clusters, Conveyor, Clair, the namespace's grants and the Environments test and
    prod: everything but the repository and the run."""
    say("starting the local clusters ci, test and prod (kwok nodes and a real node each)")
    subprocess.run([sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"], check=True)
    real = RealNodes.load()
    if not real.nodes or not real.registry:
        raise SystemExit("the demo runs on the real nodes: unset CONVEYOR_REAL_NODES=")
    say("installing Conveyor into ci (CRDs, RBAC, admission policies) and starting its operator")
    install(CLUSTERS)
    (STATE / "demo").mkdir(exist_ok=True)
    start_operator(real)
    say("installing Clair (and its PostgreSQL) into ci, its advisories from the local feed")
    feed = STATE / "demo" / "feed"
    shutil.rmtree(feed, ignore_errors=True)
    feed.mkdir(parents=True)
    clair.install(CLUSTERS, real, feed)

    say(f"namespace {NS}: who may do what")
    if kubectl("ci", "get", "ns", NS, check=False) == "":
        kubectl("ci", "create", "ns", NS, check=False)
    # Rootless BuildKit needs seccomp and AppArmor unconfined: Pod Security `privileged`.
    kubectl("ci", "label", "--overwrite", "ns", NS, "pod-security.kubernetes.io/enforce=privileged")
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

    return real


def apply_pipeline(real: RealNodes, port: int) -> None:
    """examples/go-app's Pipeline, reading the repository served at `port`, its jobs on ci's
    real node, its image in the local registry."""
    pipeline = yaml.safe_load((ROOT / "examples" / "go-app" / "pipeline.yaml").read_text())
    pipeline["spec"]["source"]["url"] = f"http://{real.host_ip}:{port}/go-app.git"
    pipeline["spec"].update(real.placement())
    build = next(j for j in pipeline["spec"]["jobs"] if j["name"] == "build")["build"]
    build["image"] = build["image"].replace("registry.example.com", real.registry)
    kubectl("ci", "apply", "-n", NS, "-f", "-", stdin=json.dumps(pipeline))


def start_push_run(before: str, after: str) -> str:
    """The run of a push to master, started as `developer`; its name."""
    return conveyor(
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


def run_and_approve(real: RealNodes, before: str, after: str) -> int:
    say("developer starts a run of the push")
    run = start_push_run(before, after)
    print(f"run {run}")
    wait_until(
        lambda: run_phase(run) in ("WaitingForApproval", "Succeeded", "Failed"),
        timeout=1200,  # go test, the build and the scan, cold: minutes
        what=f"run {run} to wait for prod's approval",
    )
    print(conveyor("ci", "get", run, "-n", NS))
    for job in ("test", "build", "container-scan"):
        say(f"the {job} job's log (conveyor logs {run} {job})")
        print(conveyor("ci", "logs", run, job, "-c", "script", "-n", NS))
    if run_phase(run) != "WaitingForApproval":
        print(f"run {run} ended before prod: {run_phase(run)}")
        return 1

    say("approver1 approves the deploy to prod")
    print(conveyor("ci-as-approver1", "approve", run, "-m", "tested on test", "-n", NS))
    wait_until(
        lambda: run_phase(run) in ("Succeeded", "Failed"),
        timeout=600,
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
    print(kubectl("prod", "-n", NS, "get", "deploy,pods", "-l", "app=go-app", "-o", "wide"))

    say("the app's page, fetched through its Service in the prod cluster")
    print(fetch_page(real))

    say(f"the operator's metrics (http://127.0.0.1:{METRICS_PORT}/metrics), this namespace")
    wanted = ("conveyor_pipelineruns_finished_total", "conveyor_deployments_total")
    wait_until(
        lambda: len(metric_lines(wanted)) >= 3,  # the run's end, its deploys to test and prod
        timeout=30,
        what="the run in the operator's metrics",
    )
    print("\n".join(metric_lines(wanted)))
    return 0 if status.get("phase") == "Succeeded" else 1


def run_phase(run: str) -> str | None:
    obj = json.loads(kubectl("ci", "get", "pipelinerun", run, "-n", NS, "-o", "json"))
    return obj.get("status", {}).get("phase")


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
