"""The run's TargetsReachable condition (pure): whether the clusters its deploys go to answer.

A deploy towards a cluster that does not answer keeps retrying with backoff until its job's
timeout; meanwhile the run says so, instead of only showing the job Running. The condition
appears with the first outage and stays, True again, once the target answers.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from conveyor.api.codec import format_time
from conveyor.engine.model import Event

CONDITION_TARGETS_REACHABLE = "TargetsReachable"
REASON_TARGET_UNAVAILABLE = "TargetUnavailable"
REASON_TARGETS_REACHABLE = "TargetsReachable"


def with_target_condition(
    status: dict[str, Any], unreachable: Sequence[str], now: datetime.datetime
) -> tuple[dict[str, Any], list[Event]]:
    """`status` with the condition for `unreachable` (one line per deploy retrying), and the
    Event of a change (an outage starting or ending)."""
    conditions = list(status.get("conditions") or ())
    old = next((c for c in conditions if c.get("type") == CONDITION_TARGETS_REACHABLE), None)
    if unreachable:
        new = {
            "type": CONDITION_TARGETS_REACHABLE,
            "status": "False",
            "reason": REASON_TARGET_UNAVAILABLE,
            "message": "; ".join(unreachable)[:2048],
        }
        event = Event("Warning", REASON_TARGET_UNAVAILABLE, new["message"][:1024])
    elif old is not None and old.get("status") == "False":
        new = {
            "type": CONDITION_TARGETS_REACHABLE,
            "status": "True",
            "reason": REASON_TARGETS_REACHABLE,
            "message": "the target clusters answer again",
        }
        event = Event("Normal", REASON_TARGETS_REACHABLE, new["message"])
    else:
        return status, []
    changed = old is None or old.get("status") != new["status"]
    stamp = format_time(now)
    if not changed and old is not None:
        stamp = old.get("lastTransitionTime") or stamp
    new["lastTransitionTime"] = stamp
    if old is not None and old.get("observedGeneration") is not None:
        new["observedGeneration"] = old["observedGeneration"]
    if old is None:
        conditions.append(new)
    else:
        conditions = [new if c is old else c for c in conditions]
    return {**status, "conditions": conditions}, ([event] if changed else [])
