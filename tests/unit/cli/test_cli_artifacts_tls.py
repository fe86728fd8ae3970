"""`conveyor artifacts --ca-file`: the download from an https store whose certificate a private
CA signed, against a real TLS server on this machine (openssl makes the CA and the certificate)."""

from __future__ import annotations

import hashlib
import http.server
import io
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.cli.artifacts import _fetch, tls_context
from conveyor.cli.main import build_parser

ARCHIVE = b"the bytes a job kept" * 1000


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An https server on 127.0.0.1 serving ARCHIVE, and the CA that signed its certificate."""
    d = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=test store CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "store.key", "-out", "store.csr", cwd=d)  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "store.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "ext", "-out", "store.pem",
             cwd=d)  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARCHIVE)))
            self.end_headers()
            self.wfile.write(ARCHIVE)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "store.pem", d / "store.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/archive.tar.gz?X-Amz-Signature=x", d
    finally:
        server.shutdown()
        server.server_close()


def test_the_store_ca_given_the_download_is_checked_and_complete(store):
    url, d = store
    out = io.BytesIO()
    digest = _fetch(url, out, len(ARCHIVE), tls_context(str(d / "ca.pem")))
    assert digest == "sha256:" + hashlib.sha256(ARCHIVE).hexdigest()
    assert out.getvalue() == ARCHIVE


def test_without_it_an_untrusted_certificate_is_refused_naming_the_option(store):
    url, _ = store
    with pytest.raises(OSError) as refused:
        _fetch(url, io.BytesIO(), len(ARCHIVE), tls_context(None))
    message = str(refused.value)
    assert "certificate is not trusted" in message and "--ca-file" in message
    assert "X-Amz-Signature" not in message  # the URL is a credential: never in an error


def test_a_ca_file_that_is_not_a_pem_bundle_is_named(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    for path in (bad, tmp_path / "missing.pem"):
        with pytest.raises(OSError, match=f"--ca-file {path}: not a readable PEM CA bundle"):
            tls_context(str(path))


def test_the_option_and_its_environment_variable(monkeypatch):
    args = build_parser().parse_args(["artifacts", "r", "j", "--ca-file", "/etc/store-ca.pem"])
    assert args.ca_file == "/etc/store-ca.pem"
    monkeypatch.setenv("CONVEYOR_ARTIFACT_STORE_CA_FILE", "/from/env.pem")
    assert build_parser().parse_args(["artifacts", "r", "j"]).ca_file == "/from/env.pem"
