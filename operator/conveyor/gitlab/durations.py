"""GitLab's human durations (`timeout: 3 hours 30 minutes`, `1h 30m`, `90 minutes`, `3600`) in
Conveyor's compact form (`3h30m`), as GitLab parses them with ChronicDuration."""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {}
for _names, _seconds in (
    (("s", "sec", "secs", "second", "seconds"), 1),
    (("m", "min", "mins", "minute", "minutes"), 60),
    (("h", "hr", "hrs", "hour", "hours"), 3600),
    (("d", "day", "days"), 86400),
    (("w", "wk", "wks", "week", "weeks"), 604800),
    # ChronicDuration's month (30 days) and year (365.25 days), for artifacts:expire_in.
    (("mo", "mos", "month", "months"), 2592000),
    (("y", "yr", "yrs", "year", "years"), 31557600),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_human_duration(text: str | int) -> int:
    """Seconds in a GitLab duration; a bare number is seconds. Raises ValueError."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {text!r}")
    cleaned = text.strip().lower().replace(",", " ").replace(" and ", " ")
    if not cleaned:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    for match in _PART.finditer(cleaned):
        if cleaned[pos : match.start()].strip():
            raise ValueError(f"not a duration: {text!r}")
        unit = match.group(2) or "s"
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        total += float(match.group(1)) * _UNITS[unit]
        pos = match.end()
    if cleaned[pos:].strip() or pos == 0:
        raise ValueError(f"not a duration: {text!r}")
    return int(total)


def to_compact(seconds: int) -> str:
    """`5400` -> `1h30m`; always at least one unit (`0s`)."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    out += f"{secs}s" if secs or not out else ""
    return out
