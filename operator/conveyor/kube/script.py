"""Shell scripts run by job pods: the job's script with GitLab's semantics, and the checkout.

What GitLab's runner does, and so what the rendered script does:
- the shell is bash when the image has one (looked for where GitLab's runner looks), else
  `/bin/sh`; bash runs with `set -eo pipefail`, sh with `set -e` (and `pipefail` where that sh
  has it, as busybox's does);
- `before_script` + `script` run in one shell that echoes each command (`$ cmd`) and stops at the
  first that fails; the job's exit code is that shell's;
- `after_script` runs afterwards in a shell of its own, in the project directory, with
  `CI_JOB_STATUS` (`success`, `failed`, or `canceled` when the job was cancelled: GitLab 17 runs
  it then too); its failure does not change the job's result;
- the job's `timeout` is enforced here, as GitLab's runner enforces it: at the timeout the
  script is killed, after_script is skipped (GitLab 17 skips it on a timeout unless the runner
  is given RUNNER_SCRIPT_TIMEOUT) and the job fails, saying so.

A supervisor (the container's PID 1) runs the script as a child. A SIGTERM is a cancel: the
operator stops a job's pod (kube/stop.py) and the kubelet sends SIGTERM, then waits the pod's
`terminationGracePeriodSeconds`, in which after_script runs. A shell that is PID 1 would ignore
the SIGTERM; the trap is what makes it count.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# The termination message of a script the supervisor stopped at the job's timeout; the operator
# reads it as GitLab's `job_execution_timeout` (kube/observe.py).
TIMEOUT_MESSAGE_PREFIX = "conveyor: job execution timeout:"
# The exit code of a job stopped at its timeout (the code `timeout(1)` uses).
TIMEOUT_EXIT_CODE = 124
# The termination message of an artifacts transfer that failed (the transfer binary writes it);
# the operator reads it as the job's reason (kube/observe.py).
ARTIFACTS_MESSAGE_PREFIX = "conveyor: artifacts:"
# Set in job pods that use artifacts or caches: the transfer binary's path (kube/jobspec.py).
TRANSFER_VARIABLE = "CONVEYOR_TRANSFER"
# How long the script's processes get to end after SIGTERM before SIGKILL.
STOP_SECONDS = 5

# Where GitLab's runner looks for a shell, in its order (its "detect shell" script).
BASH_PATHS = ("/usr/local/bin/bash", "/usr/bin/bash", "/bin/bash")

# Run by /bin/sh: picks the shell and hands it the supervisor. $1 supervisor, $2 script,
# $3 after_script (empty: none), $4 timeout in seconds (empty: none).
DETECT_SHELL = (
    "for s in "
    + " ".join(BASH_PATHS)
    + '; do if [ -x "$s" ]; then exec "$s" -c "$1" conveyor-job "$s" "$2" "$3" "$4"; fi; done\n'
    'exec /bin/sh -c "$1" conveyor-job /bin/sh "$2" "$3" "$4"\n'
)

# The shell options GitLab's scripts start with: bash has pipefail; a sh may (busybox) or may
# not (dash, where a failing `set` would end the shell: it is tried in a subshell first).
SHELL_OPTIONS = "set -e\nif (set -o pipefail) 2>/dev/null; then set -o pipefail; fi\n"

SUPERVISOR = f"""\
shell=$1 main=$2 after=$3 timeout=$4 stop= pid= watchdog=
# A child that has ended but is not reaped yet (a zombie) is not alive.
alive() {{
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${{s##*) }}
  [ "${{s%% *}}" != Z ]
}}
stop_script() {{
  stop=$1
  if [ "$$" = 1 ]; then kill -TERM -1 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
  i=0
  while alive "$pid" && [ "$i" -lt {STOP_SECONDS * 10} ]; do
    sleep 0.1; i=$((i + 1))
  done
  if [ "$$" = 1 ]; then kill -KILL -1 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
}}
trap 'stop_script canceled' TERM INT
trap 'stop_script timeout' USR1
"$shell" -c "$main" conveyor-script &
pid=$!
if [ -n "$timeout" ]; then
  (trap - TERM INT USR1; sleep "$timeout"; kill -USR1 $$) >/dev/null 2>&1 &
  watchdog=$!
fi
code=0
wait "$pid" 2>/dev/null || code=$?
while kill -0 "$pid" 2>/dev/null; do code=0; wait "$pid" 2>/dev/null || code=$?; done
trap : TERM INT USR1
# Reaped at once, its report silenced: bash would print the timer `Killed` into the log.
if [ -n "$watchdog" ] && [ "$stop" != timeout ]; then
  {{ kill -KILL "$watchdog"; wait "$watchdog"; }} 2>/dev/null
fi
if [ "$stop" = timeout ]; then
  message="execution took longer than $timeout seconds"
  printf '%s\\n' "ERROR: Job failed: $message" >&2
  printf '%s %s' '{TIMEOUT_MESSAGE_PREFIX}' "$message" \\
    > "${{CONVEYOR_TERMINATION_LOG:-/dev/termination-log}}" 2>/dev/null
  exit {TIMEOUT_EXIT_CODE}
fi
if [ -n "$after" ]; then
  if [ "$stop" = canceled ]; then CI_JOB_STATUS=canceled
  elif [ "$code" -eq 0 ]; then CI_JOB_STATUS=success
  else CI_JOB_STATUS=failed; fi
  export CI_JOB_STATUS
  printf '%s\\n' "Running after_script"
  if ! "$shell" -c "$after" conveyor-after-script; then
    printf '%s\\n' 'after_script failed; the job result is unchanged' >&2
  fi
fi
# Artifacts and caches go up after after_script, as GitLab's runner does (not when cancelled);
# a failed upload fails a job that had succeeded (its message says why).
if [ -n "${{{TRANSFER_VARIABLE}:-}}" ] && [ "$stop" != canceled ]; then
  if [ "$code" -eq 0 ]; then result=success; else result=failed; fi
  if ! "${{{TRANSFER_VARIABLE}}}" upload "$result"; then
    if [ "$code" -eq 0 ]; then code=1; fi
  fi
fi
exit "$code"
"""


def _echo_and_run(commands: Sequence[str]) -> str:
    lines: list[str] = []
    for command in commands:
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
        lines.append(command)
    return "".join(line + "\n" for line in lines)


def render_main(before_script: Sequence[str], script: Sequence[str]) -> str:
    """before_script + script: one shell, fail-fast, each command echoed."""
    return SHELL_OPTIONS + _echo_and_run([*before_script, *script])


def render_after(after_script: Sequence[str]) -> str:
    """after_script in its own shell, starting in the project directory; empty for none."""
    if not after_script:
        return ""
    return SHELL_OPTIONS + 'cd "${CI_PROJECT_DIR:-.}"\n' + _echo_and_run(after_script)


def job_command(
    before_script: Sequence[str],
    script: Sequence[str],
    after_script: Sequence[str],
    timeout_seconds: int | None,
) -> list[str]:
    """The script container's command, before Kubernetes' `$(VAR)` escaping."""
    return [
        "/bin/sh",
        "-c",
        DETECT_SHELL,
        "conveyor-job",
        SUPERVISOR,
        render_main(before_script, script),
        render_after(after_script),
        str(timeout_seconds) if timeout_seconds else "",
    ]


# Inputs come from env vars (never interpolated into the text), so URLs and refs cannot inject
# shell code. GitLab's GIT_STRATEGY (clone, fetch, none or empty), GIT_DEPTH and
# GIT_SUBMODULE_STRATEGY (none, normal, recursive) are honoured; every pod starts from an empty
# directory, so fetch has no working copy to reuse and does what clone does (as with GitLab's
# Kubernetes executor); none and empty leave the project directory empty. `umask 0000`, as
# GitLab's helper does for the Kubernetes executor: the checkout runs as root, and a job image
# that runs as another user must still write in the project directory.
CHECKOUT_SCRIPT = """\
set -eu
umask 0000
strategy=${GIT_STRATEGY:-clone} depth=${GIT_DEPTH:-} submodules=${GIT_SUBMODULE_STRATEGY:-none}
case "$strategy" in
  none|empty)
    mkdir -p "$CI_PROJECT_DIR"
    echo "Skipping Git repository setup (GIT_STRATEGY=$strategy)"
    # No repository: git tracks nothing, every file is untracked.
    if [ -n "${CONVEYOR_TRACKED_FILE:-}" ]; then : > "$CONVEYOR_TRACKED_FILE"; fi
    exit 0 ;;
  clone|fetch) ;;
  *) echo "unknown GIT_STRATEGY '$strategy' (clone, fetch, none or empty)" >&2; exit 1 ;;
esac
case "$submodules" in
  none|normal|recursive) ;;
  *) echo "unknown GIT_SUBMODULE_STRATEGY '$submodules' (none, normal or recursive)" >&2
     exit 1 ;;
esac
case "$depth" in
  ''|0) depth= ;;
  *[!0-9]*) echo "GIT_DEPTH must be a number, not '$depth'" >&2; exit 1 ;;
esac
ref=$CONVEYOR_CHECKOUT_REF
if [ -n "$depth" ]; then
  echo "Fetching changes with git depth set to $depth..."
  set -- --depth "$depth"
else
  echo "Fetching changes..."
  set --
fi
git init --quiet "$CI_PROJECT_DIR"
cd "$CI_PROJECT_DIR"
git remote add origin "$CONVEYOR_SOURCE_URL"
echo "Created fresh repository."
git fetch --quiet --prune --no-tags "$@" origin \\
  "+refs/heads/$ref:refs/remotes/origin/$ref" 2>/dev/null \\
  || git fetch --quiet --prune --no-tags "$@" origin "+refs/tags/$ref:refs/tags/$ref"
if [ -n "${CONVEYOR_CHECKOUT_SHA:-}" ]; then
  target=$CONVEYOR_CHECKOUT_SHA
elif git rev-parse --verify --quiet "refs/remotes/origin/$ref" >/dev/null; then
  target=refs/remotes/origin/$ref
else
  target=refs/tags/$ref
fi
if ! git cat-file -e "$target^{commit}" 2>/dev/null; then
  # The commit is not on the ref's history as fetched (the ref moved on): every branch and tag.
  git fetch --quiet --no-tags "$@" origin "+refs/heads/*:refs/remotes/origin/*" \
    "+refs/tags/*:refs/tags/*"
fi
git checkout --quiet --force --detach "$target"
printf 'checked out %s at %s\\n' "$ref" "$(git rev-parse HEAD)"
if [ "$submodules" = none ]; then
  echo "Skipping Git submodules setup"
else
  set --
  if [ "$submodules" = recursive ]; then set -- --recursive; fi
  sub_depth=${GIT_SUBMODULE_DEPTH:-$depth}
  echo "Updating/initializing submodules${1:+ recursively}..."
  git submodule sync "$@"
  if [ -n "$sub_depth" ] && [ "$sub_depth" != 0 ]; then set -- "$@" --depth "$sub_depth"; fi
  git submodule update --init "$@"
fi
if [ -n "${CONVEYOR_TRACKED_FILE:-}" ]; then
  # What git tracks, for `untracked: true`: the job's image may have no git (a submodule is one
  # entry, so nothing under it is untracked, as with git ls-files --others).
  git ls-files -z > "$CONVEYOR_TRACKED_FILE"
fi
"""

CREDENTIALS_DIR = "/conveyor/git-credentials"

# Used as git's credential.helper when the source has a credentials Secret (basic-auth keys).
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'echo "username=$(cat {CREDENTIALS_DIR}/username)"; '
    f'echo "password=$(cat {CREDENTIALS_DIR}/password)"; }}; f'
)
SSH_COMMAND = (
    f"ssh -i {CREDENTIALS_DIR}/ssh-privatekey -o StrictHostKeyChecking=accept-new "
    "-o UserKnownHostsFile=/tmp/known_hosts"
)
