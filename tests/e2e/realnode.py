"""Helpers for tests on the real nodes: where they are, pods that ask for them, and servers on
the host address that pods reach (a plain HTTP server, a git server over smart HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.support import STATE


@dataclass(frozen=True)
class RealNodes:
    """STATE/real-nodes.json, written by `localcluster.py up`."""

    host_ip: str
    registry: str
    nodes: dict[str, dict[str, str]]
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]

    @staticmethod
    def load() -> RealNodes:
        info = json.loads((STATE / "real-nodes.json").read_text())
        return RealNodes(
            host_ip=info["hostIP"],
            registry=info["registry"],
            nodes=info["nodes"],
            node_selector=info["nodeSelector"],
            tolerations=info["tolerations"],
        )

    def placement(self) -> dict[str, Any]:
        """Pod spec fields that put a pod on the real node."""
        return {"nodeSelector": self.node_selector, "tolerations": self.tolerations}


def pod(name: str, script: str, real: RealNodes, image: str = "busybox:1.36", **spec: Any) -> dict:
    """A pod on the real node running `script` with sh."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": ["sh", "-c", script]}],
            **real.placement(),
            **spec,
        },
    }


@contextmanager
def serve(host: str, handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """An HTTP server on host:<free port> for the duration; yields the port."""
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class Answer(BaseHTTPRequestHandler):
    """Answers every GET with `host-ok <path>`."""

    def do_GET(self) -> None:
        body = f"host-ok {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def git_http_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    """Serves the repositories under `root` over git's smart HTTP with `git http-backend` (as
    a CGI program), read-only: the protocol a checkout container speaks to a GitLab."""

    class GitHTTP(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _backend(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(length),
                "REMOTE_ADDR": self.client_address[0],
                "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            proc = subprocess.run(
                ["git", "http-backend"], input=body, capture_output=True, env=env, check=False
            )
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode(errors="replace").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _backend
        do_POST = _backend

        def log_message(self, *args: Any) -> None:
            pass

    return GitHTTP
