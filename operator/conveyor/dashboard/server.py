"""`conveyor dashboard`'s web server: the page, its JSON, live updates and the buttons.

It listens on 127.0.0.1 only and talks to the API server with the user's own kubeconfig, so
what the page shows and does is what the user may see and do. Since any web page the user
visits can send requests to 127.0.0.1, every request must name this server in its Host header
(127.0.0.1:PORT or localhost:PORT: a DNS-rebinding page names its own host), and a POST must
also carry the per-process token that only this server's page holds, as JSON from this origin.
"""

from __future__ import annotations

import datetime
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conveyor.api.approval import APPROVE, REJECT
from conveyor.api.meta import GROUP, VERSION
from conveyor.api.pipelinerun import PipelineRun
from conveyor.cli import objects
from conveyor.cli.common import CommandError, api_message, unreachable
from conveyor.dashboard import views
from conveyor.kube.client import PIPELINERUNS, Kube

STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
TOKEN_PLACEHOLDER = "__CONVEYOR_TOKEN__"
TOKEN_HEADER = "X-Conveyor-Token"
# The page may load only its own scripts and styles, talk only to this server, and may not be
# framed (a framing page could trick a click on a button).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ACTIONS = ("approve", "reject", "play", "retry")
WATCH_SECONDS = 20  # a watch ends this often, and the page is sent a keep-alive then
RETRY_SECONDS = 5.0  # after a failed list or watch, before trying again
MAX_BODY = 16 * 1024


class Refused(Exception):
    """A request this server refuses before asking the API server (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def allowed_hosts(port: int) -> frozenset[str]:
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})


def check_host(host: str | None, port: int) -> None:
    """DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1 still sends
    `Host: evil.example:PORT`."""
    if (host or "").lower() not in allowed_hosts(port):
        raise Refused(421, f"this server answers only as 127.0.0.1:{port} or localhost:{port}")


def check_post(headers: Mapping[str, str] | Message, port: int, token: str) -> None:
    """CSRF: a cross-site page can send a POST but neither read this server's page (where the
    token is) nor set a custom header without a preflight this server never grants."""
    origin = headers.get("Origin")
    if origin is not None and origin not in {f"http://{h}" for h in allowed_hosts(port)}:
        raise Refused(403, "cross-origin request refused")
    given = headers.get(TOKEN_HEADER) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(403, "missing or wrong dashboard token: reload the page")
    if (headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
        raise Refused(415, "expected application/json")


def parse_action(body: Mapping[str, Any]) -> dict[str, Any]:
    """The action a POST asks for, checked for shape (the CLI's functions check the rest)."""
    action = body.get("action")
    if action not in ACTIONS:
        raise Refused(400, f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    out: dict[str, Any] = {"action": action}
    for key in ("namespace", "run", "job", "approval", "comment"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise Refused(400, f"{key} must be a string")
        out[key] = value or None
    if not out["namespace"] or not out["run"]:
        raise Refused(400, "namespace and run are required")
    if action == "play" and not out["job"]:
        raise Refused(400, "play needs a job")
    return out


class Dashboard:
    """What the pages ask for, answered with the user's credentials."""

    def __init__(self, kube: Kube, namespace: str | None, host: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace  # None: every namespace (-A)
        self.api_host = host
        self.token = secrets.token_urlsafe(32)
        self.stopping = threading.Event()

    # -- reads
    def check_namespace(self, ns: str | None) -> str:
        if not ns:
            raise Refused(400, "namespace is required")
        if self.namespace is not None and ns != self.namespace:
            raise Refused(404, f"this dashboard shows namespace {self.namespace} only")
        return ns

    def config(self) -> dict[str, Any]:
        from conveyor.kube import identity

        try:
            user = identity.whoami(self.kube.api)
        except Exception:  # shown when known; the page works without it
            user = None
        return {"namespace": self.namespace, "user": user}

    def runs(self) -> list[dict[str, Any]]:
        return views.run_rows(objects.list_runs(self.kube, self.namespace), _now())

    def run(self, ns: str, name: str) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        run = objects.get_run(self.kube, ns, name)
        try:
            approvals = objects.list_approvals(self.kube, ns)
        except ApiException as e:
            if e.status != 403:
                raise
            approvals = []  # not everyone may read Approvals; the run is still worth showing
        pipeline = None
        if views.frozen_spec(run) is None:
            pipeline = objects.pipeline_spec(self.kube, ns, run)  # not started: its Pipeline's
        return views.run_view(run, approvals, pipeline, _now())

    def log(
        self, ns: str, run_name: str, job: str, attempt: int | None, follow: bool
    ) -> Callable[[Any], None]:
        """The job's log, through `conveyor logs`' own code: what is wrong with the request is
        raised now (LogsError, ApiException); the function returned writes the log."""
        from conveyor.cli import logs

        run = objects.get_run(self.kube, ns, run_name)
        wanted = logs.attempts(run, job, attempt)
        natives = logs.native_deploys(run, objects.pipeline_spec(self.kube, ns, run))

        def write(out: Any) -> None:
            for one in wanted:
                logs.write_attempt(self.kube, ns, run, one, natives, out, follow=follow)

        return write

    # -- the buttons: the CLI's own functions, as the user
    def act(self, request: Mapping[str, Any]) -> str:
        from conveyor.cli import approvals, runs

        ns = self.check_namespace(request["namespace"])
        action, run, job = request["action"], request["run"], request["job"]
        if action == "play":
            return runs.play(self.kube, ns, run, job)
        if action == "retry":
            done, warning = runs.retry(self.kube, ns, run, [job] if job else [])
            return "\n".join([*done, *([warning] if warning else [])])
        decision = APPROVE if action == "approve" else REJECT
        return approvals.vote(
            self.kube.api, ns, request["approval"] or run, decision, request["comment"]
        )

    # -- live updates
    def stream(self, send: Callable[[str | None, Any], None]) -> None:
        """Sends the runs (`runs`, the whole list), then each change (`run`, a row; `deleted`),
        as the API server's watch reports them, until `send` fails (the page went away). A
        failure to list or watch is sent (`failure`) and tried again."""
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        if self.namespace is None:
            call: Any = self.kube.custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, PIPELINERUNS)
        else:
            call = self.kube.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, self.namespace, PIPELINERUNS)
        version = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listed = call(*args)
                    version = listed["metadata"]["resourceVersion"]
                    runs = objects.parse_each(PipelineRun, listed["items"])
                    send("runs", views.run_rows(runs, _now()))
                stream = watch.Watch().stream(
                    call, *args, resource_version=version, timeout_seconds=WATCH_SECONDS
                )
                for event in stream:
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":  # 410 Gone: too old a version; list again
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if kind == "DELETED":
                        meta = obj["metadata"]
                        send("deleted", {"namespace": meta.get("namespace"), "name": meta["name"]})
                    elif kind in ("ADDED", "MODIFIED"):
                        for run in objects.parse_each(PipelineRun, [obj]):
                            send("run", views.run_row(run, _now()))
                send(None, "keep-alive")
            except (BrokenPipeError, ConnectionResetError):
                raise  # the page went away
            except ApiException as e:
                if e.status == 410:
                    version = None
                    continue
                send("failure", {"message": self.error_message(e)})
                self.stopping.wait(RETRY_SECONDS)
            except Exception as e:  # urllib3's and the socket's: the API server not reached
                send("failure", {"message": self.error_message(e)})
                self.stopping.wait(RETRY_SECONDS)

    def error_message(self, error: BaseException) -> str:
        """One line, as the CLI says it: the API server's own words, or why it was not
        reached."""
        from kubernetes.client.rest import ApiException

        if isinstance(error, ApiException) and error.status not in (0, None):
            return api_message(error)
        return f"cannot reach the API server at {self.api_host or '?'}: {unreachable(error)}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def static_file(name: str) -> bytes:
    return resources.files("conveyor.dashboard").joinpath("static", name).read_bytes()


def make_handler(dashboard: Dashboard, port: Callable[[], int]) -> type[BaseHTTPRequestHandler]:
    index = static_file("index.html")
    assets = {name: static_file(name) for name in STATIC}

    class Handler(BaseHTTPRequestHandler):
        server_version = "conveyor-dashboard"
        # HTTP/1.0: one request per connection, so a log or event stream needs no length.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the terminal shows where the dashboard is, not every request

        # -- replies
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in SECURITY_HEADERS.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"ok": False, "message": message})

        def _start_stream(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            for key, value in SECURITY_HEADERS.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.flush()

        def _guarded(self, handle: Callable[[], None]) -> None:
            from kubernetes.client.rest import ApiException

            from conveyor.cli.logs import LogsError

            try:
                check_host(self.headers.get("Host"), port())
                handle()
            except Refused as e:
                self._error(e.status, str(e))
            except CommandError as e:
                self._error(409, str(e))
            except LogsError as e:
                self._error(404, str(e))
            except ApiException as e:
                code = e.status if e.status and 400 <= e.status < 600 else 502
                self._error(code, dashboard.error_message(e))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the page went away
            except Exception as e:  # urllib3 and socket errors: the API server not reached
                self._error(502, dashboard.error_message(e))

        # -- routes
        def do_GET(self) -> None:
            self._guarded(self._get)

        def do_POST(self) -> None:
            self._guarded(self._post)

        def _query(self) -> dict[str, str]:
            return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

        def _get(self) -> None:
            path, q = urlsplit(self.path).path, self._query()
            if path == "/":
                page = index.replace(TOKEN_PLACEHOLDER.encode(), dashboard.token.encode())
                self._send(200, page, "text/html; charset=utf-8")
            elif path.startswith("/static/") and path[len("/static/") :] in assets:
                name = path[len("/static/") :]
                self._send(200, assets[name], STATIC[name])
            elif path == "/api/config":
                self._json(200, dashboard.config())
            elif path == "/api/runs":
                self._json(200, {"runs": dashboard.runs()})
            elif path == "/api/run":
                ns = dashboard.check_namespace(q.get("namespace"))
                self._json(200, dashboard.run(ns, _required(q, "name")))
            elif path == "/api/log":
                self._log(q)
            elif path == "/api/events":
                self._events()
            else:
                self._error(404, f"no such page: {path}")

        def _log(self, q: Mapping[str, str]) -> None:
            from conveyor.cli import logs

            ns = dashboard.check_namespace(q.get("namespace"))
            run, job = _required(q, "run"), _required(q, "job")
            attempt = int(q["attempt"]) if q.get("attempt", "").isdigit() else None
            follow = q.get("follow") == "1"
            # Errors before the first byte are a JSON reply; after it, a line of the log.
            write = dashboard.log(ns, run, job, attempt, follow)
            self._start_stream("text/plain; charset=utf-8")
            try:
                write(self.wfile)
            except logs.LogsError as e:
                self.wfile.write(f"({e})\n".encode())

        def _events(self) -> None:
            self._start_stream("text/event-stream")

            def send(event: str | None, data: Any) -> None:
                if event is None:
                    self.wfile.write(f": {data}\n\n".encode())
                else:
                    self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

            dashboard.stream(send)

        def _post(self) -> None:
            if urlsplit(self.path).path != "/api/action":
                raise Refused(404, "no such action endpoint")
            check_post(self.headers, port(), dashboard.token)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise Refused(400, "expected a JSON body")
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                raise Refused(400, "the body is not JSON") from None
            if not isinstance(body, dict):
                raise Refused(400, "expected a JSON object")
            message = dashboard.act(parse_action(body))
            self._json(200, {"ok": True, "message": message})

    return Handler


def _required(q: Mapping[str, str], key: str) -> str:
    value = q.get(key)
    if not value:
        raise Refused(400, f"{key} is required")
    return value


class Server(ThreadingHTTPServer):
    daemon_threads = True  # event and log streams end with the process
    allow_reuse_address = True


def serve(dashboard: Dashboard, port: int) -> Server:
    """A server on 127.0.0.1:`port` (0: any free port); `serve_forever()` runs it."""
    holder: list[Server] = []
    handler = make_handler(dashboard, lambda: holder[0].server_address[1])
    server = Server(("127.0.0.1", port), handler)
    holder.append(server)
    return server
