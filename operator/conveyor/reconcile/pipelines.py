"""A Pipeline's status: whether its definition is valid, in a form `kubectl get` can show."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from conveyor.api import ModelError, Pipeline, to_dict
from conveyor.api.conditions import Condition, set_condition
from conveyor.engine import validate_pipeline

READY = "Ready"


def pipeline_status(body: Mapping[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """The status the operator keeps on a Pipeline: observed generation, job count, and a Ready
    condition that names every problem a run of it would fail on."""
    generation = (body.get("metadata") or {}).get("generation")
    try:
        pipeline = Pipeline.from_dict(body)
        spec = pipeline.spec
        problems = validate_pipeline(spec) if spec is not None else ["the Pipeline has no spec"]
        previous = pipeline.status.conditions
    except ModelError as e:
        spec, problems, previous = None, [str(e)], ()
    if problems:
        ready = Condition(READY, "False", "InvalidPipeline", "; ".join(problems)[:2048])
    else:
        ready = Condition(READY, "True", "Valid", None)
    ready = Condition(
        ready.type, ready.status, ready.reason, ready.message, observed_generation=generation
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "jobCount": len(spec.jobs) if spec is not None else 0,
        "conditions": [to_dict(c) for c in set_condition(previous, ready, now)],
    }
    return status
