"""How long Approvals are kept (pure): they are the record of who approved what, so they are not
owned by their run and outlive it, up to a retention period.

An Approval whose run no longer exists is closed (Cancelled) if it was still pending, and
deleted once it is older than the retention period; one whose run exists stays with it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from conveyor.api.approval import FINAL_DECISIONS
from conveyor.api.codec import parse_time

DEFAULT_RETENTION = datetime.timedelta(days=30)


@dataclass
class Sweep:
    close: list[dict[str, Any]] = field(default_factory=list)  # pending, their run is gone
    delete: list[tuple[str, str]] = field(default_factory=list)  # (namespace, name)


def sweep(
    approvals: Iterable[Mapping[str, Any]],
    runs: Set[tuple[str, str, str]],
    now: datetime.datetime,
    retention: datetime.timedelta = DEFAULT_RETENTION,
) -> Sweep:
    """`runs` holds (namespace, name, uid) of every run that exists."""
    out = Sweep()
    for body in approvals:
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        namespace = metadata.get("namespace") or ""
        if (namespace, spec.get("pipelineRun"), spec.get("runUID")) in runs:
            continue
        if (body.get("status") or {}).get("decision") not in FINAL_DECISIONS:
            out.close.append(dict(body))
        created = metadata.get("creationTimestamp")
        if created and now - parse_time(created) > retention:
            out.delete.append((namespace, metadata.get("name") or ""))
    return out
