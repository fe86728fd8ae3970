"""Shell scripts run by job pods: the job's script with GitLab's semantics, and the checkout.

GitLab runs `before_script` + `script` in one shell that stops at the first failing command and
echoes each command first; `after_script` runs afterwards in a separate shell whatever happened,
and its failure does not change the job's result. The exit code of the job is the script's.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

EXIT_CODE_VAR = "CONVEYOR_EXIT_CODE"


def _echo_and_run(commands: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for command in commands:
        lines.append(f"printf '%s\\n' {shlex.quote('$ ' + command)}")
        lines.append(command)
    return lines


def render_job_script(
    before_script: Sequence[str], script: Sequence[str], after_script: Sequence[str]
) -> str:
    """The text given to `/bin/sh -c` in the job's script container."""
    # Each part runs in a subshell with `set -e` as a plain statement: in an `a || b` or `if`
    # context the shell would silently ignore `set -e`, so the status is read from `$?` instead.
    lines = [
        "# Rendered by Conveyor: before_script + script fail fast; after_script always runs.",
        "(",
    ]
    lines.append("set -e")
    lines += _echo_and_run([*before_script, *script])
    lines += [")", f"{EXIT_CODE_VAR}=$?"]
    if after_script:
        lines += [
            f'if [ "${EXIT_CODE_VAR}" -eq 0 ]; then CI_JOB_STATUS=success; '
            "else CI_JOB_STATUS=failed; fi",
            "export CI_JOB_STATUS",
            "(",
            "set -e",
            'cd "${CI_PROJECT_DIR:-.}"',
        ]
        lines += _echo_and_run(after_script)
        lines += [
            ")",
            'if [ "$?" -ne 0 ]; then',
            "  printf '%s\\n' 'after_script failed; the job result is unchanged' >&2",
            "fi",
        ]
    lines.append(f'exit "${EXIT_CODE_VAR}"')
    return "\n".join(lines) + "\n"


# Inputs come from env vars (never interpolated into the text), so URLs and refs cannot inject
# shell code.
CHECKOUT_SCRIPT = """\
set -eu
git clone --quiet --no-checkout -- "$CONVEYOR_SOURCE_URL" "$CI_PROJECT_DIR"
cd "$CI_PROJECT_DIR"
if [ -n "${CONVEYOR_CHECKOUT_SHA:-}" ]; then
  git checkout --quiet --detach "$CONVEYOR_CHECKOUT_SHA"
elif git rev-parse --verify --quiet "refs/remotes/origin/$CONVEYOR_CHECKOUT_REF" >/dev/null; then
  git checkout --quiet --detach "refs/remotes/origin/$CONVEYOR_CHECKOUT_REF"
else
  git checkout --quiet --detach "refs/tags/$CONVEYOR_CHECKOUT_REF"
fi
printf 'checked out %s at %s\\n' "$CONVEYOR_CHECKOUT_REF" "$(git rev-parse HEAD)"
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
