"""The run's TargetsReachable condition (pure): whether the clusters its deploys go to answer.

A deploy towards a cluster that does not answer keeps retrying with backoff until its job's
timeout; meanwhile the run says so, instead of only showing the job Running. The condition
appears with the first outage and stays, True again, once the target answers.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from conveyor.api.conditions import Condition, find_condition, set_condition
from conveyor.engine.model import Event

CONDITION_TARGETS_REACHABLE = "TargetsReachable"
REASON_TARGET_UNAVAILABLE = "TargetUnavailable"
REASON_TARGETS_REACHABLE = "TargetsReachable"


def with_target_condition(
    conditions: Sequence[Condition], unreachable: Sequence[str], now: datetime.datetime
) -> tuple[tuple[Condition, ...], list[Event]]:
    """The run's `conditions` with the one for `unreachable` (one line per deploy retrying),
    and the Event of a change (an outage starting or ending)."""
    old = find_condition(conditions, CONDITION_TARGETS_REACHABLE)
    if unreachable:
        message = "; ".join(unreachable)[:2048]
        new = Condition(CONDITION_TARGETS_REACHABLE, "False", REASON_TARGET_UNAVAILABLE, message)
        event = Event("Warning", REASON_TARGET_UNAVAILABLE, message[:1024])
    elif old is not None and old.status == "False":
        message = "the target clusters answer again"
        new = Condition(CONDITION_TARGETS_REACHABLE, "True", REASON_TARGETS_REACHABLE, message)
        event = Event("Normal", REASON_TARGETS_REACHABLE, message)
    else:
        return tuple(conditions), []
    if old is not None:
        new = dataclasses.replace(new, observed_generation=old.observed_generation)
    changed = old is None or old.status != new.status
    return set_condition(conditions, new, now), ([event] if changed else [])
