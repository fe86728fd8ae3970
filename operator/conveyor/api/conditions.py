"""Status conditions, following the Kubernetes API conventions (metav1.Condition)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.api.fields import model, spec_field

CONDITION_STATUSES = ("True", "False", "Unknown")


@model("A condition in the Kubernetes convention.")
@dataclass(frozen=True)
class Condition:
    type: str = spec_field("Condition type, e.g. Succeeded.", max_length=64, min_length=1)
    status: str = spec_field("True, False or Unknown.", enum=CONDITION_STATUSES)
    reason: str | None = spec_field(
        "Machine-readable CamelCase reason.",
        default=None,
        max_length=128,
        pattern=r"^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$",
    )
    message: str | None = spec_field("Human-readable details.", default=None, max_length=2048)
    last_transition_time: datetime.datetime | None = spec_field(
        "When the status last changed.", default=None
    )
    observed_generation: int | None = spec_field(
        "Generation the condition was computed from.", default=None, minimum=0
    )


def set_condition(
    previous: Sequence[Condition], new: Condition, now: datetime.datetime
) -> tuple[Condition, ...]:
    """Replace the condition of `new.type`, keeping lastTransitionTime unless the status changed."""
    old = next((c for c in previous if c.type == new.type), None)
    if old is not None and old.status == new.status and old.last_transition_time is not None:
        stamp = old.last_transition_time
    else:
        stamp = now
    updated = dataclasses.replace(new, last_transition_time=stamp)
    if old is None:
        return (*previous, updated)
    return tuple(updated if c.type == new.type else c for c in previous)


def find_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
