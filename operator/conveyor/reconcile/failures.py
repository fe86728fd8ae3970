"""A pass that fails is taken again with backoff per run, and its cause is said once per
interval rather than once per attempt (an API server that is away for minutes would otherwise
fill the log with the same line for every run)."""

from __future__ import annotations

import logging
import time

import urllib3
from kubernetes.client.rest import ApiException

from conveyor.metrics import OperatorMetrics
from conveyor.reconcile.retry import Backoff, Quiet
from conveyor.reconcile.views import Key
from conveyor.reconcile.workqueue import WorkQueue

log = logging.getLogger("conveyor.runs")


class FailedPasses:
    def __init__(self, queue: WorkQueue[Key], metrics: OperatorMetrics, quiet: Quiet) -> None:
        self.queue, self.metrics, self.quiet = queue, metrics, quiet
        self.backoff = Backoff()

    def succeeded(self, key: Key) -> None:
        self.backoff.succeeded(key)

    def failed(self, key: Key, error: Exception) -> None:
        """Queues the run again after its backoff and says why, once per cause and interval."""
        trace = False
        if isinstance(error, ApiException):
            kind, cause = "api", f"API error {error.status} {error.reason}"
        elif isinstance(error, (OSError, urllib3.exceptions.HTTPError)):
            # The API server is unreachable (restarting, say): the same for every run.
            kind, cause = "api", f"the API server did not answer: {type(error).__name__}"
        else:
            kind, cause, trace = "internal", f"{type(error).__name__}: {error}"[:300], True
        delay = self.backoff.failed(key)
        self.metrics.pass_errors.labels(kind).inc()
        self.queue.add_after(key, delay)
        held = self.quiet.say(cause, time.monotonic())
        if held is None:
            return
        more = f" ({held} more failures with this cause since it was last said)" if held else ""
        log.warning(
            "reconciling %s/%s: %s; retrying in %.0f s%s",
            *key,
            cause,
            delay,
            more,
            exc_info=error if trace else None,
        )
