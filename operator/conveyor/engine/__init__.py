"""Pure planning: from a run's spec, its previous status and its observed Jobs, what to do next."""

from __future__ import annotations

from conveyor.engine.model import Event, JobToCreate, ObservedJob, Plan
from conveyor.engine.names import job_name, label_value, ref_slug
from conveyor.engine.planner import invalid_pipeline_status, missing_pipeline_status, plan
from conveyor.engine.runs import (
    RunSummary,
    may_start,
    redundant,
    runs_allowed_to_start,
    runs_to_delete,
)
from conveyor.engine.validate import validate_pipeline

__all__ = [
    "Event",
    "JobToCreate",
    "ObservedJob",
    "Plan",
    "RunSummary",
    "invalid_pipeline_status",
    "job_name",
    "label_value",
    "may_start",
    "missing_pipeline_status",
    "plan",
    "redundant",
    "ref_slug",
    "runs_allowed_to_start",
    "runs_to_delete",
    "validate_pipeline",
]
