"""GitLab-style durations (`1h30m`, `90m`, `45s`) as used by `timeout` fields."""

from __future__ import annotations

import re

# The schema pattern of duration fields; empty strings are refused by a minLength.
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
_DURATION = re.compile(DURATION_PATTERN)


def parse_duration(text: str) -> int:
    """Seconds in a duration like `1h30m`; raises ValueError on anything else."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"not a duration (like 1h30m, 90m, 45s): {text!r}")
    hours, minutes, seconds = (int(g[:-1]) if g else 0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    """Compact form for printer columns: `45s`, `1m23s`, `2h0m5s`; negative clamps to 0s."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
