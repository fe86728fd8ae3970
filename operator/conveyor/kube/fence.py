"""Fencing: an operator replica that is not (or no longer) the leader never writes.

Every API client the operator writes with (its own cluster's, and the deploy targets') passes its
write requests through `check()`. With leader election on, `check()` asks the elector whether
this process still holds the lease within its renew deadline; if not (it was frozen, partitioned,
or lost the lease), the process exits at once, before the write, so a former leader can never
act beside the new one. Without leader election every write passes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from kubernetes import client

log = logging.getLogger("conveyor.fence")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_holds: Callable[[], bool] | None = None


def set_leadership(holds: Callable[[], bool] | None) -> None:
    """Writes pass only while `holds()` is true (None: no leader election)."""
    global _holds
    _holds = holds


def allowed() -> bool:
    return _holds is None or _holds()


def check() -> None:
    """Exits the process if it may not write: a fenced former leader stops, it never retries."""
    if not allowed():
        log.error("this replica no longer holds the leader lease: stopping before any write")
        logging.shutdown()
        os._exit(3)


def guard(api: client.ApiClient) -> client.ApiClient:
    """`api` whose write requests (POST, PUT, PATCH, DELETE) pass `check()` first."""
    rest = api.rest_client
    send = rest.request

    def request(method: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() in WRITES:
            check()
        return send(method, *args, **kwargs)

    rest.request = request
    return api
