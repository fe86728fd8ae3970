"""The job script's GitLab semantics, run for real: by bash, dash and busybox sh, as the PID 1 of
a PID namespace (as in a container), signalled the way the kubelet signals it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conveyor.engine.variables.expand import k8s_escape
from conveyor.kube.jobspec import AFTER_SCRIPT_GRACE_SECONDS, SCRIPT_START_ALLOWANCE_SECONDS
from conveyor.kube.observe import observe_job
from conveyor.kube.script import (
    CHECKOUT_SCRIPT,
    TIMEOUT_EXIT_CODE,
    TIMEOUT_MESSAGE_PREFIX,
    job_command,
)
from tests.unit.kube.test_jobspec import build, script_container

SHELLS = ["bash", "dash", "busybox"]


def shell_path(shell: str, tmp_path: Path) -> str:
    if shell == "busybox":
        link = tmp_path / "busybox-sh" / "sh"
        link.parent.mkdir(exist_ok=True)
        if not link.exists():
            link.symlink_to(shutil.which("busybox") or "/bin/busybox")
        return str(link)
    return shutil.which(shell) or f"/bin/{shell}"


def start(tmp_path, shell=None, before=(), script=(), after=(), timeout=None):
    """The container's command as its PID 1; `shell` forces one (else it is detected)."""
    cmd = job_command(before, script, after, timeout)
    if shell is not None:
        path = shell_path(shell, tmp_path)
        cmd = [path, "-c", cmd[4], "conveyor-job", path, *cmd[5:]]
    env = {
        "PATH": "/usr/bin:/bin",
        "CI_PROJECT_DIR": str(tmp_path),
        "CONVEYOR_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *cmd],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(tmp_path, shell=None, **parts):
    proc = start(tmp_path, shell, **parts)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.fixture(autouse=True)
def _needs_pid_namespaces():
    if os.geteuid() != 0 or not shutil.which("unshare"):  # pragma: no cover
        pytest.fail("these tests run the script as a PID 1: root and unshare are needed")
    for tool in ("dash", "busybox"):
        if not shutil.which(tool):  # pragma: no cover
            pytest.fail(f"{tool} is needed (hack/node-deps.sh installs it)")


def test_bash_is_chosen_when_the_image_has_it(tmp_path):
    code, out, _ = run(tmp_path, script=['echo "shell ${BASH_VERSION:+bash}"'])
    assert code == 0 and "shell bash" in out.splitlines()


def test_bash_has_pipefail(tmp_path):
    code, out, _ = run(tmp_path, "bash", script=["false | true", "echo reached"])
    assert code == 1 and "reached" not in out.splitlines()


def test_busybox_sh_has_pipefail_and_dash_has_none(tmp_path):
    assert run(tmp_path, "busybox", script=["false | true", "echo reached"])[0] == 1
    code, out, _ = run(tmp_path, "dash", script=["false | true", "echo reached"])
    assert code == 0 and "reached" in out.splitlines()


@pytest.mark.parametrize("shell", SHELLS)
def test_each_command_is_echoed_and_the_script_fails_fast(tmp_path, shell):
    code, out, _ = run(
        tmp_path,
        shell,
        before=["echo before"],
        script=["echo one", "exit 3", "echo never"],
        after=["echo after $CI_JOB_STATUS"],
    )
    assert code == 3
    assert out.splitlines() == [
        "$ echo before",
        "before",
        "$ echo one",
        "one",
        "$ exit 3",
        "Running after_script",
        "$ echo after $CI_JOB_STATUS",
        "after failed",
    ]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("command", "expected"),
    [("true", 0), ("false", 1), ("exit 3", 3), ("no-such-command", 127), ("kill -9 $$", 137)],
)
def test_exit_codes_reach_the_container(tmp_path, shell, command, expected):
    assert run(tmp_path, shell, script=[command])[0] == expected


@pytest.mark.parametrize("shell", SHELLS)
def test_after_script_runs_in_its_own_shell_in_the_project_dir(tmp_path, shell):
    code, out, _ = run(
        tmp_path,
        shell,
        before=["export GREETING=hi", "cd /"],
        script=["echo $GREETING"],
        after=['echo "${GREETING:-unset} $CI_JOB_STATUS $(pwd)"'],
    )
    assert code == 0
    assert "hi" in out.splitlines()
    assert out.splitlines()[-1] == f"unset success {tmp_path}"


def test_after_script_failure_does_not_change_the_result(tmp_path):
    code, _, err = run(tmp_path, script=["true"], after=["false", "touch after-reached"])
    assert code == 0
    assert not (tmp_path / "after-reached").exists()  # after_script is fail-fast too
    assert "after_script failed" in err


def test_commands_with_quotes_and_multiple_lines(tmp_path):
    code, out, _ = run(
        tmp_path, script=["echo 'it''s' \"$((1+2))\"", "if true; then\n  echo ok\nfi"]
    )
    assert code == 0
    assert "its 3" in out and "ok" in out


def _wait_for_line(proc, line, timeout=30.0):
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        got = proc.stdout.readline()
        if not got:
            break
        seen.append(got.rstrip("\n"))
        if seen[-1] == line:
            return seen
    raise AssertionError(f"{line!r} never printed: {seen}")


def _pid1(proc) -> int:
    """The namespace's PID 1 (unshare's child), which the kubelet's SIGTERM reaches."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return int(children[0])


@pytest.mark.parametrize("shell", SHELLS)
def test_sigterm_is_a_cancel_after_script_runs_with_status_canceled(tmp_path, shell):
    proc = start(
        tmp_path,
        shell,
        script=["echo started", "sleep 600", "echo never"],
        after=["echo after $CI_JOB_STATUS"],
    )
    _wait_for_line(proc, "started")
    began = time.monotonic()
    os.kill(_pid1(proc), signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    # The sleep is stopped at once (not waited for), then after_script runs.
    assert time.monotonic() - began < 5
    assert proc.returncode == 143
    assert out.splitlines()[-2:] == ["$ echo after $CI_JOB_STATUS", "after canceled"]
    assert "never" not in out


@pytest.mark.parametrize("shell", SHELLS)
def test_the_timeout_stops_the_script_and_skips_after_script(tmp_path, shell):
    began = time.monotonic()
    code, out, err = run(
        tmp_path,
        shell,
        script=["echo started", "sleep 600"],
        after=["echo after $CI_JOB_STATUS"],
        timeout=2,
    )
    assert 2 <= time.monotonic() - began < 10
    assert code == TIMEOUT_EXIT_CODE
    assert "after" not in out
    assert "ERROR: Job failed: execution took longer than 2 seconds" in err
    message = (tmp_path / "termination-log").read_text()
    assert message == f"{TIMEOUT_MESSAGE_PREFIX} execution took longer than 2 seconds"


def test_a_script_that_ends_in_time_leaves_no_timer_behind(tmp_path):
    began = time.monotonic()
    assert run(tmp_path, script=["echo quick"], timeout=600)[0] == 0
    assert time.monotonic() - began < 10


# --- in the Job -----------------------------------------------------------------------------


def test_the_container_runs_the_escaped_command():
    container = script_container(build({"beforeScript": ["a"], "afterScript": ["c $$"]}))
    expected = job_command(["a"], ["make test"], ["c $$"], 3600)
    assert container["command"] == [k8s_escape(part) for part in expected]
    assert "c $$$$" in container["command"][6]  # Kubernetes turns it back into `c $$`


def test_after_script_gets_a_grace_period_and_the_deadline_is_a_backstop():
    job = build({"afterScript": ["cleanup"], "timeout": "10m"})
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == (
        AFTER_SCRIPT_GRACE_SECONDS
    )
    assert job["spec"]["activeDeadlineSeconds"] == 600 + SCRIPT_START_ALLOWANCE_SECONDS
    assert "terminationGracePeriodSeconds" not in build()["spec"]["template"]["spec"]


def test_a_script_stopped_at_its_timeout_is_observed_as_a_timeout():
    job = build()
    job["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    pod = {
        "status": {
            "containerStatuses": [
                {
                    "name": "script",
                    "state": {
                        "terminated": {
                            "exitCode": TIMEOUT_EXIT_CODE,
                            "message": f"{TIMEOUT_MESSAGE_PREFIX} execution took longer than 5 "
                            "seconds",
                        }
                    },
                }
            ]
        }
    }
    observed = observe_job(job, [pod])
    assert observed is not None
    assert (observed.reason, observed.exit_code) == ("DeadlineExceeded", None)
    assert observed.message == "execution took longer than 5 seconds"
    # The same exit code without the supervisor's message is the script's own.
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = "bye"
    observed = observe_job(job, [pod])
    assert observed is not None and observed.exit_code == TIMEOUT_EXIT_CODE


# --- the checkout -----------------------------------------------------------------------------


def _git(cwd, *args):
    return subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _checkout(tmp_path, origin, ref="main", sha="", **git_vars):
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path),
        "CONVEYOR_SOURCE_URL": f"file://{origin}",
        "CONVEYOR_CHECKOUT_REF": ref,
        "CONVEYOR_CHECKOUT_SHA": sha,
        "CI_PROJECT_DIR": str(tmp_path / "builds" / "app"),
        **git_vars,
    }
    shutil.rmtree(tmp_path / "builds", ignore_errors=True)
    (tmp_path / "builds").mkdir()
    return subprocess.run(
        ["/bin/sh", "-c", CHECKOUT_SCRIPT],
        env=env,
        cwd=tmp_path / "builds",
        capture_output=True,
        text=True,
    )


@pytest.fixture
def origin(tmp_path):
    repo = tmp_path / "origin"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for n in range(4):
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"commit {n}")
    return repo


def test_checkout_depth_and_strategies(tmp_path, origin):
    sha = _git(origin, "rev-parse", "HEAD")
    project = tmp_path / "builds" / "app"
    result = _checkout(tmp_path, origin, sha=sha)
    assert result.returncode == 0, result.stderr
    assert _git(project, "rev-list", "--count", "HEAD") == "4"
    assert f"checked out main at {sha}" in result.stdout
    result = _checkout(tmp_path, origin, sha=sha, GIT_STRATEGY="fetch", GIT_DEPTH="2")
    assert result.returncode == 0, result.stderr
    assert _git(project, "rev-list", "--count", "HEAD") == "2"
    assert "Fetching changes with git depth set to 2..." in result.stdout
    result = _checkout(tmp_path, origin, sha=sha, GIT_STRATEGY="none")
    assert result.returncode == 0 and list(project.iterdir()) == []


def test_checkout_of_a_commit_the_branch_has_moved_past(tmp_path, origin):
    old = _git(origin, "rev-parse", "HEAD~2")
    _git(origin, "checkout", "-q", "-b", "other")
    _git(origin, "reset", "-q", "--hard", old)
    _git(origin, "checkout", "-q", "main")
    _git(origin, "reset", "-q", "--hard", "HEAD~3")  # main no longer contains `old`
    result = _checkout(tmp_path, origin, sha=old)
    assert result.returncode == 0, result.stderr
    assert _git(tmp_path / "builds" / "app", "rev-parse", "HEAD") == old


def test_the_checkout_lists_what_git_tracks_when_asked(tmp_path, origin):
    """For `untracked: true` the checkout writes `git ls-files -z` outside the project
    directory (the job's image may have no git); GIT_STRATEGY none: an empty list."""
    (origin / ".gitignore").write_text("build/\n")
    (origin / "src").mkdir()
    (origin / "src" / "a b.go").write_text("x")
    _git(origin, "add", ".")
    _git(origin, "commit", "-q", "-m", "files")
    tracked = tmp_path / "tracked"
    result = _checkout(tmp_path, origin, CONVEYOR_TRACKED_FILE=str(tracked))
    assert result.returncode == 0, result.stderr
    assert tracked.read_bytes() == b".gitignore\0src/a b.go\0"
    tracked.unlink()
    assert _checkout(tmp_path, origin).returncode == 0
    assert not tracked.exists()  # not asked: not written
    result = _checkout(tmp_path, origin, CONVEYOR_TRACKED_FILE=str(tracked), GIT_STRATEGY="none")
    assert result.returncode == 0 and tracked.read_bytes() == b""


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"GIT_STRATEGY": "copy"}, "unknown GIT_STRATEGY 'copy'"),
        ({"GIT_SUBMODULE_STRATEGY": "all"}, "unknown GIT_SUBMODULE_STRATEGY 'all'"),
        ({"GIT_DEPTH": "ten"}, "GIT_DEPTH must be a number, not 'ten'"),
    ],
)
def test_checkout_refuses_values_gitlab_does_not_know(tmp_path, origin, variables, error):
    result = _checkout(tmp_path, origin, **variables)
    assert result.returncode == 1 and error in result.stderr


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("script", [["echo quick"], ["false | true"], ["exit 3"]])
def test_the_timer_ends_without_a_word(tmp_path, shell, script):
    """The timer the supervisor stops is reaped in silence: bash would otherwise report it
    `Killed` in the job's log."""
    for _ in range(5):  # the report depended on timing
        _, _, err = run(tmp_path, shell, script=script, timeout=600)
        assert "Killed" not in err and "Terminated" not in err, err
