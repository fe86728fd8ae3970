"""How a failed pass is retried and said (pure): exponential backoff per run, and one log line
per cause and interval rather than one per attempt (an API server that is down for minutes would
otherwise fill the log with the same traceback)."""

from __future__ import annotations

from collections.abc import Hashable
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
