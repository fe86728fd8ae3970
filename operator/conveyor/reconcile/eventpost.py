"""Events on runs: a best-effort record, written after the status they describe, on threads of
their own and in tasks nobody awaits, so neither a pass nor its worker waits for them."""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException

from conveyor.engine.model import Event
from conveyor.kube.client import Kube
from conveyor.kube.events import event_body
from conveyor.reconcile.retry import Quiet

log = logging.getLogger("conveyor.runs")


class EventPoster:
    def __init__(self, kube: Kube, instance: str, quiet: Quiet) -> None:
        self.kube, self.instance, self.quiet = kube, instance, quiet
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="events")
        self._tasks: set[asyncio.Task[None]] = set()  # posts in flight

    def post(
        self,
        namespace: str,
        run_body: dict[str, Any],
        events: Sequence[Event],
        now: datetime.datetime,
    ) -> None:
        if not events:
            return
        bodies = [event_body(run_body, event, now, self.instance) for event in events]
        task = asyncio.create_task(self._post(namespace, bodies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, namespace: str, bodies: list[dict[str, Any]]) -> None:
        loop = asyncio.get_running_loop()
        for event in bodies:
            try:
                await loop.run_in_executor(self._pool, self.kube.create_event, namespace, event)
            except (ApiException, OSError, urllib3.exceptions.HTTPError) as e:
                # An error escaping this task would be a traceback per event while the API
                # server is away: said once per interval instead.
                cause = (
                    f"{e.status} {e.reason}"
                    if isinstance(e, ApiException)
                    else f"the API server did not answer: {type(e).__name__}"
                )
                held = self.quiet.say(f"event: {cause}", time.monotonic())
                if held is not None:
                    more = f" ({held} more not recorded since it was last said)" if held else ""
                    log.warning(
                        "event on %s/%s not recorded: %s%s",
                        namespace,
                        event["involvedObject"]["name"],
                        cause,
                        more,
                    )
