"""Pure builder of the core/v1 Events Conveyor records on its objects."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from conveyor.api.codec import format_time
from conveyor.engine.model import Event

COMPONENT = "conveyor"
MESSAGE_MAX = 1024  # the API server refuses longer event messages


def event_body(
    obj: Mapping[str, Any], event: Event, now: datetime.datetime, instance: str
) -> dict[str, Any]:
    """An Event about `obj` (a Conveyor object as the API returns it)."""
    metadata = obj["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:MESSAGE_MAX],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
    }
