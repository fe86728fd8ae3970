"""A run is frozen at its start (pure): the pipeline and the run variables it started with are
recorded in its status, and every later pass runs from that record.

Without it, what an approver approved would not be what runs: the Pipeline is a separate object
the team may edit at any time, and `spec.variables` of the run could be patched while a gate
waits. The record lives in the status, which only the operator writes.
"""

from __future__ import annotations

import dataclasses

from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import PipelineRun


def with_record(run: PipelineRun, pipeline: PipelineSpec) -> PipelineRun:
    """`run` whose status records `pipeline` and its current run variables (the pass that
    starts the run writes them with its status)."""
    if run.spec is None or run.status.recorded:
        return run
    status = dataclasses.replace(
        run.status, pipeline_spec=pipeline, variables=dict(run.spec.variables)
    )
    return dataclasses.replace(run, status=status)


def as_recorded(run: PipelineRun) -> PipelineRun:
    """`run` with the variables it started with, whatever its spec says now."""
    if run.spec is None or run.status.variables is None:
        return run
    if dict(run.spec.variables) == dict(run.status.variables):
        return run
    spec = dataclasses.replace(run.spec, variables=dict(run.status.variables))
    return dataclasses.replace(run, spec=spec)


def recorded_pipeline(run: PipelineRun) -> PipelineSpec | None:
    """The pipeline the run started with (None before it started)."""
    return run.status.pipeline_spec
