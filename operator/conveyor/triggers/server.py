"""The webhook endpoint: an aiohttp application the operator serves, `POST /hooks/{ns}/{pipeline}`.

Its two I/O needs are injected, so it runs in tests without a cluster:
- `lookup(namespace, pipeline)` -> `(WebhookTrigger, secret value)`, or None when the pipeline does
  not exist or has no webhook trigger (both answer 404 with the same body);
- `create_run(manifest, namespace)` -> "created", or "exists" when the API server answered 409.

Order of checks: method, declared size, pipeline, actual size, authentication, then the payload,
so that nothing of an unauthenticated body is parsed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from conveyor.api.pipeline import WebhookTrigger
from conveyor.triggers.events import Ping, PushEvent, RefDeleted
from conveyor.triggers.runs import run_for_event
from conveyor.triggers.selection import ref_selected
from conveyor.triggers.webhook import PayloadError, parse_push, verify

log = logging.getLogger("conveyor.triggers.webhook")

MAX_BODY = 1024 * 1024  # GitHub caps payloads at 25 MB, but a push worth a run is far smaller
CREATED = "created"
EXISTS = "exists"
ROUTE = "/hooks/{namespace}/{pipeline}"
REASON_HEADER = "X-Conveyor-Reason"  # why a 204 started nothing (204 has no body)

Lookup = Callable[[str, str], Awaitable[tuple[WebhookTrigger, str | bytes] | None]]
CreateRun = Callable[[dict[str, Any], str], Awaitable[str]]

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PIPELINE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_READ_CHUNK = 64 * 1024


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _ignored(reason: str) -> web.Response:
    return web.Response(status=204, headers={REASON_HEADER: reason})


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` (a chunked body declares no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def webhook_app(lookup: Lookup, create_run: CreateRun, max_body: int = MAX_BODY) -> web.Application:
    """The webhook application; serve it with aiohttp's AppRunner behind a Service/Ingress."""

    async def hook(request: web.Request) -> web.Response:
        if request.method != "POST":
            return _error(405, "method not allowed: use POST", Allow="POST")
        namespace = request.match_info["namespace"]
        pipeline = request.match_info["pipeline"]
        where = f"{namespace}/{pipeline}"
        if not (
            len(namespace) <= 63
            and _NAMESPACE.match(namespace)
            and len(pipeline) <= 253
            and _PIPELINE.match(pipeline)
        ):
            return _error(404, "no webhook trigger here")
        declared = request.content_length
        if declared is not None and declared > max_body:
            return _error(413, f"body larger than {max_body} bytes")
        try:
            found = await lookup(namespace, pipeline)
        except Exception:
            log.exception("webhook %s: looking the pipeline up failed", where)
            return _error(503, "try again later")
        if found is None:
            # The same answer whether the pipeline is missing or has no webhook trigger.
            return _error(404, "no webhook trigger here")
        trigger, secret = found
        body = await _read_capped(request, max_body)
        if body is None:
            return _error(413, f"body larger than {max_body} bytes")
        if not verify(request.headers, body, secret):
            # Nothing of the request is logged: the token header may hold a near-miss secret.
            log.warning("webhook %s: rejected a delivery with a bad token or signature", where)
            return _error(401, "missing or invalid token or signature")
        try:
            delivery = parse_push(request.headers, body)
        except PayloadError as exc:
            return _error(400, str(exc))
        if isinstance(delivery, Ping):
            return web.json_response({"ok": True, "event": "ping"}, status=200)
        if isinstance(delivery, RefDeleted):
            return _ignored("ref deleted")
        assert isinstance(delivery, PushEvent)
        if not ref_selected(
            delivery.ref, tag=delivery.tag, branches=trigger.branches, tags=trigger.tags
        ):
            return _ignored("tag pushes not selected" if delivery.tag else "branch not selected")
        manifest = run_for_event(pipeline, namespace, delivery, "webhook")
        run = manifest["metadata"]["name"]
        try:
            outcome = await create_run(manifest, namespace)
        except Exception:
            log.exception("webhook %s: creating run %s failed", where, run)
            return _error(503, "could not create the run; try again later")
        created = outcome == CREATED
        log.info(
            "webhook %s: %s %s at %s -> run %s (%s)",
            where,
            "tag" if delivery.tag else "branch",
            delivery.ref,
            delivery.sha[:12],
            run,
            "created" if created else "already there",
        )
        return web.json_response({"run": run, "created": created}, status=202)

    app = web.Application(client_max_size=max_body)
    app.router.add_route("*", ROUTE, hook)
    return app
