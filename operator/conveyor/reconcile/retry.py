"""How a failed pass is retried and said (pure): exponential backoff per run, and one log line
per cause and interval rather than one per attempt (an API server that is down for minutes would
otherwise fill the log with the same traceback)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

FIRST_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 60.0
LOG_INTERVAL_SECONDS = 30.0


@dataclass
class Backoff:
    """Per key: 2 s after the first failure, doubling up to a minute; a success resets it."""

    first: float = FIRST_DELAY_SECONDS
    most: float = MAX_DELAY_SECONDS
    _failures: dict[Hashable, int] = field(default_factory=dict)

    def failed(self, key: Hashable) -> float:
        count = self._failures.get(key, 0)
        self._failures[key] = count + 1
        return min(self.most, self.first * 2**count)

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)


@dataclass
class Quiet:
    """Says a cause once per interval; `say` returns how many were held back meanwhile, or
    None when this occurrence is to be held back."""

    interval: float = LOG_INTERVAL_SECONDS
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def say(self, cause: str, now: float) -> int | None:
        last = self._last.get(cause)
        if last is not None and now - last < self.interval:
            self._held[cause] = self._held.get(cause, 0) + 1
            return None
        self._last[cause] = now
        return self._held.pop(cause, 0)


# Kopf's words for each failed attempt of a request, its watches' included.
_KOPF_ATTEMPT = re.compile(
    r"Request attempt #\S+ failed; (?:will retry|escalating): \S+ \S+ -> (?P<error>\w+)"
    r"(?:\((?P<detail>.*)\))?$",
    re.S,
)

_CONNECTION_KEY = re.compile(r"ConnectionKey\([^)]*\),\s*")


class QuietRequestRetries(logging.Filter):
    """Kopf logs an ERROR for every failed attempt of every request: with its five watches
    and an API server away for minutes, hundreds of lines saying the same. This says each
    cause (the error's kind) once per interval, as a WARNING: Kopf still retries each request
    with its backoff and restarts its watches, unchanged. Installed on the log handlers, so it
    sees the records of every logger."""

    def __init__(
        self, interval: float = LOG_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.quiet, self.clock = Quiet(interval), clock

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kopf"):
            return True
        found = _KOPF_ATTEMPT.match(record.getMessage())
        if found is None:
            return True
        error = found["error"]
        held = self.quiet.say(error, self.clock())
        if held is None:
            return False
        detail = " ".join((found["detail"] or "").split())
        detail = _CONNECTION_KEY.sub("", detail)  # aiohttp's key of the pool: no news
        detail = detail[:160] + ("..." if len(detail) > 160 else "")
        more = f" ({held} more failed attempts since it was last said)" if held else ""
        record.msg = "Kubernetes API requests failing: %s%s; retrying with backoff%s"
        record.args = (error, f" ({detail})" if detail else "", more)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
