"""What a status write ends: the runs and job attempts it moves into a finished phase. Pure, so
the operator's counters follow exactly what the status records, once per ending."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api import parse_time
from conveyor.api.pipelinerun import FAILED, FINISHED_PHASES, JOB_FINISHED_PHASES


@dataclass(frozen=True)
class Ended:
    """A run (job None) or one attempt of a job that ended."""

    phase: str
    seconds: float | None  # None: it never started (skipped, cancelled while waiting)
    job: str | None = None
    environment: str | None = None


def ended(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Ended]:
    """The endings `new` records that `old` did not: job attempts first, then the run. Status
    holds each job's latest attempt only, and a retry can replace a failed attempt before any
    status shows it failed: attempts skipped over are counted as the failures they were
    (Conveyor retries only a failed attempt)."""
    before = {j.get("name"): (j.get("attempt") or 1, j.get("phase")) for j in old.get("jobs") or ()}
    out = []
    for j in new.get("jobs") or ():
        attempt, done = j.get("attempt") or 1, j.get("phase") in JOB_FINISHED_PHASES
        was_attempt, was_phase = before.get(j.get("name"), (0, None))
        counted = was_attempt if was_phase in JOB_FINISHED_PHASES else was_attempt - 1
        for _ in range(max(counted, 0) + 1, attempt):
            out.append(Ended(FAILED, None, j.get("name"), j.get("environment")))
        if done and counted < attempt:
            out.append(Ended(j["phase"], _seconds(j), j.get("name"), j.get("environment")))
    if new.get("phase") in FINISHED_PHASES and old.get("phase") not in FINISHED_PHASES:
        out.append(Ended(new["phase"], _seconds(new)))
    return out


def _seconds(status: Mapping[str, Any]) -> float | None:
    start, end = status.get("startTime"), status.get("completionTime")
    if not start or not end:
        return None
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())
