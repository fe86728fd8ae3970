"""Credentials reach git, and never an error message, a log record, argv or the cache's disk."""

from __future__ import annotations

import base64
import logging
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conveyor.source import RepoCache, SourceUnavailable, parse_credentials, parse_url
from conveyor.source import errors as reasons
from conveyor.source.credentials import remote_env
from conveyor.source.errors import scrub, strip_userinfo
from tests.unit.source.test_source import Origin

TOKEN = "glpat-S3cr3tT0kenValue"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


def all_text(err: BaseException) -> str:
    return " ".join([str(err), repr(err), *map(str, err.args)])


def disk_text(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


# -- a git smart-HTTP server (git http-backend) that wants Basic auth -----------------------


class GitHTTP(BaseHTTPRequestHandler):
    project_root: Path
    expected: str  # the Authorization header value that is accepted

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def serve(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "REMOTE_USER": "user",
            "REMOTE_ADDR": "127.0.0.1",
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = out.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_origin(tmp_path: Path) -> Iterator[tuple[str, Origin]]:
    origin = Origin(tmp_path / "srv" / "repo")
    origin.commit({"a.txt": "1"}, "first")
    handler = type(
        "Handler",
        (GitHTTP,),
        {
            "project_root": tmp_path / "srv",
            "expected": "Basic " + base64.b64encode(f"oauth2:{TOKEN}".encode()).decode(),
        },
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo/.git", origin
    server.shutdown()
    server.server_close()


def test_token_over_http_reaches_git_out_of_band(
    http_origin: tuple[str, Origin], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, origin = http_origin
    cache = RepoCache(tmp_path / "cache")
    assert cache.resolve(url, {"token": TOKEN}, "main") == origin.head()
    assert cache.branch_heads(url, {"token": TOKEN}) == {"main": origin.head()}
    # The same token given as URL userinfo works too, and is not written anywhere either.
    userinfo_url = url.replace("http://", f"http://oauth2:{TOKEN}@")
    assert cache.resolve(userinfo_url, None, "main") == origin.head()
    assert TOKEN.encode() not in disk_text(tmp_path / "cache")
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("credentials", [None, {"token": "wrong"}, {"token": TOKEN + "x"}])
def test_bad_http_credentials_fail_as_authentication_without_leaking(
    http_origin: tuple[str, Origin],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    credentials: dict[str, str] | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, _ = http_origin
    cache = RepoCache(tmp_path / "cache")
    for query in (
        lambda: cache.resolve(url, credentials, "main"),
        lambda: cache.branch_heads(url, credentials),
    ):
        with pytest.raises(SourceUnavailable) as err:
            query()
        assert err.value.reason == reasons.AUTH_FAILED
        assert f"repository {url}: authentication failed" in str(err.value)
        assert TOKEN not in all_text(err.value)
    assert TOKEN not in caplog.text
    assert cache.cached_path(url, credentials) is None


def test_token_is_in_no_error_or_log_for_a_bad_file_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = RepoCache(tmp_path / "cache")
    url = (tmp_path / "missing.git").as_uri()
    for credentials in (
        {"token": TOKEN},
        {"username": "deploy", "password": TOKEN},
        {"ssh-privatekey": KEY, "known_hosts": "host ssh-ed25519 AAAA"},
    ):
        calls = (
            lambda c=credentials: cache.resolve(url, c, "main"),
            lambda c=credentials: cache.git_facts(url, c, "main", None, None),
            lambda c=credentials: cache.branch_heads(url, c),
            lambda c=credentials: cache.default_branch(url, c),
        )
        for call in calls:
            with pytest.raises(SourceUnavailable) as err:
                call()
            assert err.value.reason == reasons.UNREACHABLE
            text = all_text(err.value)
            assert TOKEN not in text and "PRIVATE KEY" not in text and "b3BlbnNz" not in text
    assert TOKEN not in caplog.text and "b3BlbnNz" not in caplog.text


def test_userinfo_of_an_unreachable_url_is_stripped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cache = RepoCache(tmp_path / "cache")
    url = "https://user:secret@127.0.0.1:1/x.git"
    for call in (
        lambda: cache.resolve(url, None, "main"),
        lambda: cache.branch_heads(url, None),
        lambda: cache.resolve(url, {"token": TOKEN}, "main"),
    ):
        with pytest.raises(SourceUnavailable) as err:
            call()
        text = all_text(err.value)
        assert "secret" not in text and "user:" not in text and TOKEN not in text
        assert "repository https://127.0.0.1:1/x.git: unreachable" in text
        assert err.value.reason == reasons.UNREACHABLE
    assert "secret" not in caplog.text
    assert b"secret" not in disk_text(tmp_path / "cache")


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    # A socket that accepts connections (backlog) but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.git"
        cache = RepoCache(tmp_path / "cache", timeout=1)
        with pytest.raises(SourceUnavailable, match="no answer within 1s") as err:
            cache.resolve(url, {"token": TOKEN}, "main")
    assert err.value.reason == reasons.TIMEOUT


# -- credentials ----------------------------------------------------------------------------


def test_parse_credentials() -> None:
    token = parse_credentials({"token": TOKEN})
    assert (token.username, token.password) == ("oauth2", TOKEN)
    deploy = parse_credentials({"username": b"deploy", "token": TOKEN.encode()})
    assert (deploy.username, deploy.password) == ("deploy", TOKEN)
    basic = parse_credentials({"username": "u", "password": "p"})
    assert (basic.username, basic.password) == ("u", "p")
    ssh = parse_credentials({"ssh-privatekey": KEY, "known_hosts": "h k"})
    assert ssh.is_ssh and not ssh.is_basic
    assert not parse_credentials(None).is_basic and not parse_credentials({}).is_ssh
    assert TOKEN not in repr(token) and TOKEN not in str(token)
    userinfo = parse_credentials(None, parse_url(f"https://{TOKEN}@gitlab.example/g/p.git"))
    assert userinfo.username == TOKEN and TOKEN in userinfo.secrets()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ssh-privatekey": KEY}, "needs known_hosts"),
        ({"password": "p"}, "password without username"),
        ({".dockerconfigjson": "{}"}, "no git credentials"),
        ({"token": b"\xff"}, "not UTF-8"),
    ],
)
def test_unusable_credentials_are_invalid(data: dict[str, str | bytes], message: str) -> None:
    with pytest.raises(SourceUnavailable, match=message) as err:
        parse_credentials(data, parse_url("https://gitlab.example/g/p.git"))
    assert err.value.reason == reasons.INVALID


def test_ssh_key_goes_to_a_private_file_that_is_removed() -> None:
    url = parse_url("git@gitlab.example:group/project.git")
    hosts = "gitlab.example ssh-ed25519 A"
    creds = parse_credentials({"ssh-privatekey": KEY, "known_hosts": hosts})
    with remote_env(url, creds) as (env, workdir):
        command = env["GIT_SSH_COMMAND"]
        for option in (
            "StrictHostKeyChecking=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "BatchMode=yes",
            f"UserKnownHostsFile={workdir / 'known_hosts'}",
        ):
            assert option in command
        assert f"-i {workdir / 'id'}" in command
        assert "PRIVATE KEY" not in command
        assert stat.S_IMODE(workdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((workdir / "id").stat().st_mode) == 0o600
        assert (workdir / "id").read_text() == KEY + "\n"
        assert "SSH_AUTH_SOCK" not in env
    assert not workdir.exists()


def test_http_credentials_are_an_env_scoped_header_not_argv_or_url() -> None:
    url = parse_url(f"https://oauth2:{TOKEN}@gitlab.example:8443/g/p.git")
    assert TOKEN not in url.git_url and TOKEN not in url.display and TOKEN not in repr(url)
    assert url.git_url == url.display == "https://gitlab.example:8443/g/p.git"
    assert url.project_path == "g/p"
    creds = parse_credentials(None, url)
    with remote_env(url, creds) as (env, _):
        keys = [env[k] for k in env if k.startswith("GIT_CONFIG_KEY_")]
        assert "http.https://gitlab.example:8443/.extraHeader" in keys
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert "credential.helper" in keys


def test_urls() -> None:
    assert parse_url("ssh://git:pw@host:2222/g/p.git").git_url == "ssh://git@host:2222/g/p.git"
    assert parse_url("ssh://git:pw@host:2222/g/p.git").display == "ssh://host:2222/g/p.git"
    assert parse_url("git@host:g/sub/p.git").project_path == "g/sub/p"
    assert (
        strip_userinfo("see https://a:b@h/x and http://t@h/y") == "see https://h/x and http://h/y"
    )
    assert scrub(f"token {TOKEN} here", [TOKEN]) == "token *** here"
