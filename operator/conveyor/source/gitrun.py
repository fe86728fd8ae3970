"""Running one git process: a timeout that kills its whole process group, and error
classification into SourceUnavailable.

Why not GitPython's `kill_after_timeout`: it finds children with `pgrep`/`ps`, which slim images
lack; a surviving `git-remote-https` or `ssh` child then keeps the pipes open past the timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.source.errors import (
    AUTH_FAILED,
    GIT_FAILED,
    HOST_KEY,
    TIMEOUT,
    UNREACHABLE,
    SourceUnavailable,
    stderr_detail,
)

_log = logging.getLogger(__name__)

# Lower-cased fragments of git/curl/ssh stderr, checked in this order.
_HOST_KEY = ("host key verification failed", "remote host identification has changed")
_AUTH = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "permission denied (publickey",
    "http basic: access denied",
    "invalid username or password",
    "returned error: 401",
    "returned error: 403",
)
_UNREACHABLE = (
    "does not appear to be a git repository",
    "repository not found",
    "returned error: 404",
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "couldn't connect",
    "connection timed out",
    "network is unreachable",
    "no route to host",
    "unable to access",
    "could not read from remote repository",
    "not found",
)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_git(
    args: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
) -> GitResult:
    """Run `git *args` (argv holds no secret: callers pass them in `env`)."""
    proc = subprocess.Popen(
        ["git", *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # own process group, so a timeout kills helpers too
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        timed_out = True
    return GitResult(proc.returncode, out, err.decode("utf-8", "replace"), timed_out)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, signal.SIGKILL)


def classify(result: GitResult) -> str:
    """The reason code of a failed git call, from its stderr."""
    if result.timed_out:
        return TIMEOUT
    text = result.stderr.lower()
    for reason, fragments in ((HOST_KEY, _HOST_KEY), (AUTH_FAILED, _AUTH)):
        if any(f in text for f in fragments):
            return reason
    if any(f in text for f in _UNREACHABLE):
        return UNREACHABLE
    return GIT_FAILED


_WORDS = {
    TIMEOUT: "timed out",
    HOST_KEY: "host key verification failed",
    AUTH_FAILED: "authentication failed",
    UNREACHABLE: "unreachable",
    GIT_FAILED: "git failed",
}


def failure(
    result: GitResult, display: str, action: str, timeout: float, secrets: Iterable[str] = ()
) -> SourceUnavailable:
    """The error for a failed call: `repository <url>: <what> (<action>): <git's line>`."""
    reason = classify(result)
    if reason == TIMEOUT:
        detail = f"no answer within {timeout:g}s"
    else:
        detail = stderr_detail(result.stderr, secrets) or f"exit code {result.returncode}"
    message = f"repository {display}: {_WORDS[reason]} ({action}): {detail}"
    _log.debug("%s", message)  # already scrubbed
    return SourceUnavailable(message, reason)
