"""The runner, proven on the real node: GitLab's checkout, shell, after_script, variables,
timeout, resource limits and `conveyor logs -f`, asserted from what the job's containers printed
and how they ended. Jobs choose the real node with the pipeline's nodeSelector/tolerations."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.conveyor import (
    OPERATOR_USER,
    Conveyor,
    bind,
    conveyor_cli,
    job_status,
    phase,
    pipeline,
    run,
)
from tests.e2e.gitrepo import GitRepo, new_repo
from tests.e2e.realnode import RealNodes, git_http_handler, serve
from tests.e2e.support import Clusters, wait_until

GIT_IMAGE = "alpine/git:2.47.2"  # git in the script container too


def publish(work: GitRepo, root: Path, name: str) -> Path:
    bare = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    return bare


def logs(clusters: Clusters, ns: str, run_name: str, job: str, *extra: str) -> list[str]:
    proc = conveyor_cli(clusters, "logs", run_name, job, "-n", ns, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def finished(conveyor: Conveyor, name: str, timeout: float = 240) -> dict[str, Any]:
    return conveyor.wait_finished(name, timeout=timeout)


# --- checkout ------------------------------------------------------------------------------


def with_submodule(work: GitRepo, path: str, url: str, bare: Path) -> str:
    """Adds the repository `bare` as submodule `path` with the (relative) `url` GitLab
    recommends, and commits; returns the sha."""
    work.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(bare), path)
    work.git("config", "-f", ".gitmodules", f"submodule.{path}.url", url)
    work.git("add", ".gitmodules", path)
    work.git("commit", "-q", "-m", f"submodule {path}")
    return work.head()


def test_checkout_honours_git_strategy_depth_and_submodules(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    deep = new_repo(tmp_path / "deep", {"deep.txt": "deep\n"})
    publish(deep, root, "deep")
    sub = new_repo(tmp_path / "sub", {"sub.txt": "sub\n"})
    with_submodule(sub, "deep", "../deep.git", root / "deep.git")
    publish(sub, root, "sub")
    app = new_repo(tmp_path / "app", {"app.txt": "1\n"})
    for n in range(2, 5):
        app.commit(f"commit {n}", {"app.txt": f"{n}\n"})
    sha = with_submodule(app, "sub", "../sub.git", root / "sub.git")  # the 5th commit
    publish(app, root, "app")

    report = [
        'echo "head=$(git rev-parse HEAD 2>/dev/null || echo none)"',
        'echo "count=$(git rev-list --count HEAD 2>/dev/null || echo none)"',
        'echo "files=$(ls -A | tr "\\n" " ")"',
        'echo "sub=$(cat sub/sub.txt 2>/dev/null || echo absent)"',
        'echo "deep=$(cat sub/deep/deep.txt 2>/dev/null || echo absent)"',
    ]
    jobs = {
        "default": {},
        "fetch-shallow": {"GIT_STRATEGY": "fetch", "GIT_DEPTH": "2"},
        "clone-depth-1": {"GIT_STRATEGY": "clone", "GIT_DEPTH": "1"},
        "none": {"GIT_STRATEGY": "none"},
        "normal": {"GIT_SUBMODULE_STRATEGY": "normal"},
        "recursive": {"GIT_SUBMODULE_STRATEGY": "recursive"},
    }
    conveyor.create(
        pipeline(
            "checkout",
            [
                {
                    "name": name,
                    "stage": "test",
                    "image": GIT_IMAGE,
                    "variables": variables,
                    "script": report,
                }
                for name, variables in jobs.items()
            ],
            source={"url": f"{base}/app.git"},
            **real.placement(),
        )
    )
    conveyor.create(run("checkout-1", "checkout", ref="main"))
    done = finished(conveyor, "checkout-1")
    assert done["status"]["phase"] == "Succeeded", done["status"]

    def facts(job: str) -> dict[str, str]:
        lines = logs(clusters, conveyor.ns, "checkout-1", job, "-c", "script")
        return dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "$")

    full = facts("default")
    assert (full["head"], full["count"]) == (sha, "5")
    assert full["sub"] == "absent" and full["deep"] == "absent"  # submodules: none by default
    assert full["files"].split() == [".git", ".gitmodules", "app.txt", "sub"]
    shallow = facts("fetch-shallow")
    assert (shallow["head"], shallow["count"]) == (sha, "2")
    assert facts("clone-depth-1")["count"] == "1"
    nothing = facts("none")
    assert (nothing["head"], nothing["count"], nothing["files"]) == ("none", "none", "")
    normal = facts("normal")
    assert (normal["sub"], normal["deep"]) == ("sub", "absent")
    recursive = facts("recursive")
    assert (recursive["sub"], recursive["deep"]) == ("sub", "deep")

    checkout = logs(clusters, conveyor.ns, "checkout-1", "fetch-shallow", "-c", "checkout")
    assert "Fetching changes with git depth set to 2..." in checkout
    assert f"checked out main at {sha}" in checkout
    assert "Skipping Git repository setup (GIT_STRATEGY=none)" in logs(
        clusters, conveyor.ns, "checkout-1", "none", "-c", "checkout"
    )
    assert "Updating/initializing submodules recursively..." in logs(
        clusters, conveyor.ns, "checkout-1", "recursive", "-c", "checkout"
    )


def basic_auth_git_handler(root: Path, user: str, password: str) -> type[BaseHTTPRequestHandler]:
    """git's smart HTTP behind basic authentication, as a private GitLab project is; counts the
    requests it refused."""
    backend = git_http_handler(root)
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Private(backend):  # type: ignore[misc, valid-type]
        refused = 0

        def _authorized(self) -> None:
            if self.headers.get("Authorization") == expected:
                backend._backend(self)  # type: ignore[attr-defined]
                return
            type(self).refused += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = _authorized
        do_POST = _authorized

    return Private


def test_checkout_from_a_private_repository_with_a_basic_auth_secret(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes, tmp_path: Path
) -> None:
    root = tmp_path / "private"
    root.mkdir()
    work = new_repo(tmp_path / "work", {"secret-sauce.txt": "private content\n"})
    publish(work, root, "app")
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespaced_secret(
        conveyor.ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "git-creds"},
            "type": "kubernetes.io/basic-auth",
            "stringData": {"username": "ci-bot", "password": "s3cret-pass"},
        },
    )
    # As the README says: a namespace whose pipelines use git credentials lets the operator
    # read them (it reads the source too, to evaluate the run).
    bind(clusters, conveyor.ns, [(OPERATOR_USER, "conveyor-secret-reader")])
    handler = basic_auth_git_handler(root, "ci-bot", "s3cret-pass")
    with serve(real.host_ip, handler) as port:
        url = f"http://{real.host_ip}:{port}/app.git"
        jobs = [{"name": "read", "stage": "test", "image": "busybox:1.36", "script": ["cat *.txt"]}]
        conveyor.create(
            pipeline(
                "private",
                jobs,
                source={"url": url, "credentialsSecret": "git-creds"},
                **real.placement(),
            )
        )
        conveyor.create(run("private-1", "private", ref="main"))
        done = finished(conveyor, "private-1")
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert "private content" in logs(clusters, conveyor.ns, "private-1", "read")
        refused_with = handler.refused  # type: ignore[attr-defined]
        assert refused_with > 0  # the server did ask for credentials

        # Without the Secret the same repository cannot be read.
        conveyor.create(
            pipeline("anonymous", jobs, source={"url": url}, **real.placement()),
        )
        conveyor.create(run("anonymous-1", "anonymous", ref="main"))
        refused = finished(conveyor, "anonymous-1")
    assert refused["status"]["phase"] == "Failed"
    assert "private content" not in str(refused["status"])


# --- the shell -----------------------------------------------------------------------------


def test_shell_echo_fail_fast_pipefail_and_exit_codes(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    which_shell = 'echo "bash=${BASH_VERSION:-none}"'
    jobs = [
        # bash in an image that has it, with pipefail: `false | true` fails the job.
        ("bash-pipefail", "debian:bookworm-slim", [which_shell, "false | true", "echo never"]),
        # sh in busybox (no bash), with busybox's pipefail too.
        ("busybox-sh", "busybox:1.36", [which_shell, "false | true", "echo never"]),
        ("exit-0", "busybox:1.36", ["echo fine"]),
        ("exit-1", "debian:bookworm-slim", ["false", "echo never"]),
        ("exit-3", "busybox:1.36", ["exit 3", "echo never"]),
        ("exit-127", "debian:bookworm-slim", ["no-such-command", "echo never"]),
        ("exit-137", "busybox:1.36", ["kill -9 $$", "echo never"]),
    ]
    conveyor.create(
        pipeline(
            "shells",
            [
                {
                    "name": name,
                    "stage": "test",
                    "image": image,
                    "beforeScript": ["export STEP=before"],
                    "script": script,
                }
                for name, image, script in jobs
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("shells-1", "shells"))
    done = finished(conveyor, "shells-1")
    codes = {name: job_status(done, name).get("exitCode") for name, _, _ in jobs}
    assert codes == {
        "bash-pipefail": 1,
        "busybox-sh": 1,
        "exit-0": 0,
        "exit-1": 1,
        "exit-3": 3,
        "exit-127": 127,
        "exit-137": 137,
    }, done["status"]
    assert done["status"]["phase"] == "Failed"
    # Each command echoed, then its output; nothing after the failing one.
    bash = logs(clusters, conveyor.ns, "shells-1", "bash-pipefail", "-c", "script")
    assert bash[:2] == ["$ export STEP=before", f"$ {which_shell}"]
    assert bash[2].startswith("bash=5."), bash
    assert bash[3:] == ["$ false | true"]
    busybox = logs(clusters, conveyor.ns, "shells-1", "busybox-sh", "-c", "script")
    assert busybox == ["$ export STEP=before", f"$ {which_shell}", "bash=none", "$ false | true"]
    missing = logs(clusters, conveyor.ns, "shells-1", "exit-127")
    assert any("no-such-command: command not found" in line for line in missing), missing


# --- after_script, cancel and timeout --------------------------------------------------------


def test_after_script_gets_ci_job_status_success_and_failed(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    after = ['echo "after: $CI_JOB_STATUS ${SCRIPT_VAR:-not-shared} $(pwd)"', "exit 9"]
    conveyor.create(
        pipeline(
            "after",
            [
                {
                    "name": name,
                    "stage": "test",
                    "image": "debian:bookworm-slim",
                    "script": ["SCRIPT_VAR=set", "cd /", command],
                    "afterScript": after,
                }
                for name, command in (("passes", "true"), ("fails", "exit 4"))
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("after-1", "after"))
    done = finished(conveyor, "after-1")
    # after_script's own failure (exit 9) changes nothing.
    assert job_status(done, "passes")["exitCode"] == 0
    assert job_status(done, "fails")["exitCode"] == 4
    # Its own shell (the script's variables and `cd` are gone), in the project directory.
    passed = logs(clusters, conveyor.ns, "after-1", "passes", "-c", "script")
    assert "after: success not-shared /builds/after" in passed, passed
    failed = logs(clusters, conveyor.ns, "after-1", "fails", "-c", "script")
    assert "after: failed not-shared /builds/after" in failed, failed
    assert failed[-1] == "after_script failed; the job result is unchanged"


def test_cancel_runs_after_script_with_status_canceled(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    conveyor.create(
        pipeline(
            "cancel",
            [
                {
                    "name": "long",
                    "stage": "test",
                    "image": "debian:bookworm-slim",
                    "script": ["echo started", "sleep 600", "echo never"],
                    "afterScript": ['echo "after: $CI_JOB_STATUS"'],
                }
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("cancel-1", "cancel"))
    wait_until(
        lambda: (
            "started"
            in conveyor_cli(
                clusters, "logs", "cancel-1", "long", "-c", "script", "-n", conveyor.ns
            ).stdout.splitlines()
        ),
        timeout=120,
        what="the script to start",
    )
    began = time.monotonic()
    proc = conveyor_cli(clusters, "cancel", "cancel-1", "-n", conveyor.ns)
    assert proc.returncode == 0, proc.stderr
    done = finished(conveyor, "cancel-1", timeout=120)
    assert phase(done) == "Cancelled"
    assert job_status(done, "long")["phase"] == "Cancelled"
    assert time.monotonic() - began < 60  # not the 600 s sleep, nor the grace period's end
    lines = logs(clusters, conveyor.ns, "cancel-1", "long", "-c", "script")
    assert lines[-3:] == [
        "Running after_script",
        '$ echo "after: $CI_JOB_STATUS"',
        "after: canceled",
    ]
    assert "never" not in lines


def test_timeout_kills_the_script_skips_after_script_and_says_so(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    conveyor.create(
        pipeline(
            "slow",
            [
                {
                    "name": "sleeper",
                    "stage": "test",
                    "image": "busybox:1.36",
                    "timeout": "5s",
                    "script": ["echo started", "sleep 600"],
                    "afterScript": ["echo after-script-ran"],
                }
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("slow-1", "slow"))
    done = finished(conveyor, "slow-1", timeout=120)
    sleeper = job_status(done, "sleeper")
    assert (sleeper["phase"], sleeper["reason"]) == ("Failed", "Timeout"), sleeper
    assert sleeper["message"] == "execution took longer than 5 seconds"
    lines = logs(clusters, conveyor.ns, "slow-1", "sleeper", "-c", "script")
    assert "started" in lines
    assert "ERROR: Job failed: execution took longer than 5 seconds" in lines
    assert "after-script-ran" not in lines


# --- variables and limits --------------------------------------------------------------------


def test_variables_reach_the_script_with_gitlab_values(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    work = new_repo(tmp_path / "vars", {"README": "x\n"})
    publish(work, root, "vars")
    sha = work.head()
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespaced_secret(
        conveyor.ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-secrets"},
            "stringData": {"token": "tok-123", "kubeconfig": "apiVersion: v1\nkind: Config\n"},
        },
    )
    script = [
        'echo "sha=$CI_COMMIT_SHA"',
        'echo "short=$CI_COMMIT_SHORT_SHA"',
        'echo "ref=$CI_COMMIT_REF_NAME"',
        'echo "job=$CI_JOB_NAME stage=$CI_JOB_STAGE"',
        'echo "pipeline=$CI_PIPELINE_ID"',
        'echo "dir=$CI_PROJECT_DIR pwd=$(pwd)"',
        'echo "ci=$CI gitlab=$GITLAB_CI"',
        'echo "pipeline_var=$PIPELINE_VAR job_var=$JOB_VAR run_var=$RUN_VAR"',
        'echo "expanded=$EXPANDED"',
        'echo "secret=$API_TOKEN"',
        'echo "file=$KUBECONFIG_FILE"',
        'echo "file_content=$(head -n 1 "$KUBECONFIG_FILE")"',
    ]
    conveyor.create(
        pipeline(
            "vars",
            [
                {
                    "name": "show",
                    "stage": "build",
                    "image": "busybox:1.36",
                    "variables": {"JOB_VAR": "from-job", "OVERRIDDEN": "job"},
                    "secretVariables": [
                        {"name": "API_TOKEN", "secretName": "app-secrets", "key": "token"},
                        {
                            "name": "KUBECONFIG_FILE",
                            "secretName": "app-secrets",
                            "key": "kubeconfig",
                            "file": True,
                        },
                    ],
                    "script": script,
                }
            ],
            stages=["build"],
            variables={
                "PIPELINE_VAR": "from-pipeline",
                "EXPANDED": "$CI_JOB_NAME-$JOB_VAR",
                "RUN_VAR": "pipeline-loses",
            },
            source={"url": f"{base}/vars.git"},
            **real.placement(),
        )
    )
    created = conveyor.create(run("vars-1", "vars", ref="main", variables={"RUN_VAR": "from-run"}))
    done = finished(conveyor, "vars-1")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    lines = logs(clusters, conveyor.ns, "vars-1", "show", "-c", "script")
    out = [line for line in lines if not line.startswith("$ ")]
    assert out == [
        f"sha={sha}",
        f"short={sha[:8]}",
        "ref=main",
        "job=show stage=build",
        f"pipeline={created['metadata']['uid']}",
        "dir=/builds/vars pwd=/builds/vars",
        "ci=true gitlab=true",
        "pipeline_var=from-pipeline job_var=from-job run_var=from-run",
        "expanded=show-from-job",
        "secret=tok-123",
        "file=/conveyor/secret-variables/KUBECONFIG_FILE/KUBECONFIG_FILE",
        "file_content=apiVersion: v1",
    ]


def test_resource_limits_are_applied_to_the_script_container(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    conveyor.create(
        pipeline(
            "limits",
            [
                {
                    "name": "limited",
                    "stage": "test",
                    "image": "busybox:1.36",
                    "resources": {
                        "requests": {"memory": "32Mi", "cpu": "100m"},
                        "limits": {"memory": "64Mi", "cpu": "500m"},
                    },
                    "script": [
                        'echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"',
                        'echo "cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"',
                    ],
                }
            ],
            **real.placement(),
        )
    )
    conveyor.create(run("limits-1", "limits"))
    done = finished(conveyor, "limits-1")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    lines = logs(clusters, conveyor.ns, "limits-1", "limited", "-c", "script")
    assert f"memory={64 * 1024 * 1024}" in lines
    assert "cpu=50000" in lines  # 500m of the default 100000 µs period


# --- conveyor logs -f -------------------------------------------------------------------------


class Gate(BaseHTTPRequestHandler):
    """Answers `open` once the test opens it, `closed` before: the job waits on it, so the
    test decides when the job ends."""

    opened = threading.Event()

    def do_GET(self) -> None:
        body = b"open\n" if self.opened.is_set() else b"closed\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_logs_follow_a_running_job_and_end_with_it(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    class ThisGate(Gate):
        opened = threading.Event()

    with serve(real.host_ip, ThisGate) as port:
        url = f"http://{real.host_ip}:{port}/"
        conveyor.create(
            pipeline(
                "follow",
                [
                    {
                        "name": "talk",
                        "stage": "test",
                        "image": "busybox:1.36",
                        "script": [
                            "echo first-line",
                            f"until wget -q -O - {url} | grep -q open; do sleep 0.2; done",
                            "echo last-line",
                        ],
                    }
                ],
                **real.placement(),
            )
        )
        conveyor.create(run("follow-1", "follow"))
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor.cli.main",
                "logs",
                "-f",
                "follow-1",
                "talk",
                "-c",
                "script",
                "-n",
                conveyor.ns,
                "--kubeconfig",
                str(clusters.kubeconfig),
                "--context",
                "ci",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            seen: list[str] = []
            stdout = follower.stdout
            reader = threading.Thread(
                target=lambda: seen.extend(line.rstrip("\n") for line in stdout), daemon=True
            )
            reader.start()
            wait_until(lambda: "first-line" in seen, timeout=120, what="the first line, followed")
            # The job is still running (it waits on the gate): the line came while it ran.
            assert phase(conveyor.get_run("follow-1")) == "Running"
            assert "last-line" not in seen
            ThisGate.opened.set()
            follower.wait(timeout=120)  # ends by itself when the job ends
            reader.join(timeout=10)
        finally:
            if follower.poll() is None:
                follower.kill()
    assert follower.returncode == 0, follower.stderr.read() if follower.stderr else ""
    assert seen[-1] == "last-line", seen
    assert phase(finished(conveyor, "follow-1")) == "Succeeded"


# --- services --------------------------------------------------------------------------------


def test_a_service_with_a_healthcheck_port_is_listening_when_the_script_starts(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    """A web server that takes seconds to listen, reached by its alias from the script: the
    script starts once it listens (HEALTHCHECK_TCP_PORT), as in GitLab; without the variable
    the same script meets a refused connection. A service that never listens delays the script
    by the operator's wait (30 s) and leaves GitLab's warning in the job's log."""
    slow_web = {
        "name": "python:3.11-slim",
        "alias": "web",
        "entrypoint": ["sh", "-c", "sleep 8; exec python3 -m http.server 8080"],
    }
    fetch = ["wget -q -O- http://web:8080/ >/dev/null", "echo served"]
    jobs = [
        {
            "name": "waited",
            "stage": "test",
            "image": "busybox:1.36",
            "services": [{**slow_web, "variables": {"HEALTHCHECK_TCP_PORT": "8080"}}],
            "script": fetch,
        },
        {
            "name": "not-waited",
            "stage": "test",
            "image": "busybox:1.36",
            "services": [slow_web],
            "script": fetch,
        },
        {
            "name": "never-listens",
            "stage": "test",
            "image": "busybox:1.36",
            "services": [
                {
                    "name": "busybox:1.36",
                    "alias": "mute",
                    "entrypoint": ["sleep", "3600"],
                    "variables": {"HEALTHCHECK_TCP_PORT": "9999"},
                }
            ],
            "script": ["echo ran anyway"],
        },
    ]
    conveyor.create(pipeline("services", jobs, **real.placement()))
    conveyor.create(run("services-1", "services"))
    done = finished(conveyor, "services-1")
    phases = {j["name"]: j["phase"] for j in done["status"]["jobs"]}
    assert phases == {"waited": "Succeeded", "not-waited": "Failed", "never-listens": "Succeeded"}

    waited = logs(clusters, conveyor.ns, "services-1", "waited")
    assert "Waiting for services to be up and running (timeout 30 seconds)..." in waited
    assert "Service web is listening on port 8080" in waited
    assert waited.index("Service web is listening on port 8080") < waited.index("served")
    not_waited = logs(clusters, conveyor.ns, "services-1", "not-waited")
    assert "served" not in not_waited
    assert not any("Waiting for services" in line for line in not_waited)
    mute = logs(clusters, conveyor.ns, "services-1", "never-listens")
    assert "*** WARNING: Service mute probably didn't start properly." in mute, mute
    assert mute.index("*** WARNING: Service mute probably didn't start properly.") < mute.index(
        "ran anyway"
    )
