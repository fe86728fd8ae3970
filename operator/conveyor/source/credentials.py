"""Git credentials from a Secret's data, and the environment that hands them to one git process.

Secrets never reach a URL, argv, a log or an error message: HTTP(S) credentials travel as an
`http.<origin>.extraHeader` set through GIT_CONFIG_* variables of that git process only; an SSH key
is written 0600 into a private temporary directory that is removed when the call ends.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conveyor.source.errors import INVALID, SourceUnavailable
from conveyor.source.urls import SCHEMES, GitUrl

SecretData = Mapping[str, str | bytes]
DEFAULT_TOKEN_USERNAME = "oauth2"  # GitLab accepts any username with a token; this is its own


@dataclass(frozen=True, repr=False)
class GitCredentials:
    username: str | None = None
    password: str | None = None  # password or token
    ssh_private_key: str | None = None
    known_hosts: str | None = None
    username_is_secret: bool = False  # a token given as URL username (https://TOKEN@host)

    def __repr__(self) -> str:
        return "GitCredentials(<redacted>)"

    @property
    def is_basic(self) -> bool:
        return self.username is not None

    @property
    def is_ssh(self) -> bool:
        return self.ssh_private_key is not None

    def secrets(self) -> tuple[str, ...]:
        """Every string that must not appear in output (for scrubbing git's stderr)."""
        found: list[str] = []
        if self.password:
            found.append(self.password)
        if self.username and self.username_is_secret:
            found.append(self.username)
        if self.is_basic:
            found.append(self._basic_token())
        if self.ssh_private_key:
            found += [ln.strip() for ln in self.ssh_private_key.splitlines() if len(ln) >= 16]
        return tuple(found)

    def fingerprint(self) -> str:
        """Canonical text of the credentials, only ever hashed (into the cache key)."""
        return "\0".join(
            [
                self.username or "",
                self.password or "",
                self.ssh_private_key or "",
                self.known_hosts or "",
            ]
        )

    def _basic_token(self) -> str:
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return base64.b64encode(raw).decode("ascii")


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def parse_credentials(data: SecretData | None, url: GitUrl | None = None) -> GitCredentials:
    """Credentials from a decoded Secret's data: `token` (+ optional `username`, default
    oauth2), `username` + `password`, or `ssh-privatekey` + `known_hosts`. Without data, the
    URL's own userinfo (if any) is used. Raises SourceUnavailable (reason Invalid) otherwise."""
    where = f"repository {url.display}: " if url else ""
    try:
        values = {k: _text(v) for k, v in (data or {}).items()}
    except UnicodeDecodeError as err:
        raise SourceUnavailable(f"{where}credentials are not UTF-8 text", INVALID) from err
    if "ssh-privatekey" in values:
        if not values.get("known_hosts", "").strip():
            # Strict host key checking needs the host's key; refuse rather than trust on first use.
            raise SourceUnavailable(f"{where}ssh-privatekey needs known_hosts", INVALID)
        return GitCredentials(
            ssh_private_key=values["ssh-privatekey"], known_hosts=values["known_hosts"]
        )
    if "token" in values:
        username = values.get("username") or DEFAULT_TOKEN_USERNAME
        return GitCredentials(username=username, password=values["token"])
    if "password" in values:
        if not values.get("username"):
            raise SourceUnavailable(f"{where}password without username", INVALID)
        return GitCredentials(username=values["username"], password=values["password"])
    if values:
        raise SourceUnavailable(
            f"{where}no git credentials in the Secret (expected token, username and password, "
            "or ssh-privatekey and known_hosts)",
            INVALID,
        )
    if url is not None and url.userinfo_username is not None:
        return GitCredentials(
            username=url.userinfo_username,
            password=url.userinfo_password or "",
            username_is_secret=url.userinfo_password is None,
        )
    return GitCredentials()


def _base_env(allowed_schemes: frozenset[str]) -> dict[str, str]:
    # Inherited GIT_* variables (GIT_DIR, GIT_TRACE_CURL, ...) could redirect git or log headers.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_"))}
    env |= {
        "LC_ALL": "C",  # English messages: errors are classified by their text
        "LANGUAGE": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",  # empty: no prompt program at all (not even SSH_ASKPASS)
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ":".join(sorted(allowed_schemes & SCHEMES)),
    }
    return env


def _config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def local_env(git_dir: Path) -> dict[str, str]:
    """Environment of a git command on a cached repository (no network)."""
    env = _base_env(SCHEMES) | {"GIT_DIR": str(git_dir)}
    return env | _config_env([("gc.autoDetach", "false")])  # gc stays inside lock and timeout


@contextmanager
def remote_env(
    url: GitUrl,
    credentials: GitCredentials,
    allowed_schemes: frozenset[str] = SCHEMES,
    git_dir: Path | None = None,
) -> Iterator[tuple[dict[str, str], Path]]:
    """(environment, private working directory) for one git command that talks to `url`.
    The directory (0700) holds the SSH key and known_hosts, and is removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="conveyor-git-"))  # mkdtemp creates it 0700
    try:
        env = _base_env(allowed_schemes)
        # No repository discovery above the private directory.
        env["GIT_CEILING_DIRECTORIES"] = str(workdir.parent)
        if git_dir is not None:
            env["GIT_DIR"] = str(git_dir)
        config = [
            ("credential.helper", ""),  # no helper may store or supply credentials
        ]
        if credentials.is_basic and url.origin:
            header = f"Authorization: Basic {credentials._basic_token()}"
            config.append((f"http.{url.origin}.extraHeader", header))
        env |= _config_env(config)
        env["GIT_SSH_COMMAND"] = _ssh_command(credentials, workdir)
        env["GIT_SSH_VARIANT"] = "ssh"
        yield env, workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ssh_command(credentials: GitCredentials, workdir: Path) -> str:
    # No agent, no user ssh config, no prompts; host keys are always checked.
    args = ["ssh", "-F", os.devnull, "-o", "BatchMode=yes", "-o", "IdentityAgent=none"]
    args += ["-o", "StrictHostKeyChecking=yes"]
    if credentials.ssh_private_key is not None and credentials.known_hosts is not None:
        key = _private_file(workdir / "id", credentials.ssh_private_key)
        hosts = _private_file(workdir / "known_hosts", credentials.known_hosts)
        args += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        args += ["-o", f"UserKnownHostsFile={hosts}", "-o", f"GlobalKnownHostsFile={os.devnull}"]
    return shlex.join(args)


def _private_file(path: Path, text: str) -> Path:
    if not text.endswith("\n"):
        text += "\n"  # OpenSSH rejects a key without its final newline (Secrets often lack it)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
