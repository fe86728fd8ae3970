"""A run is frozen at its start (pure): the pipeline and the run variables it started with are
recorded in its status, and every later pass runs from that record.

Without it, what an approver approved would not be what runs: the Pipeline is a separate object
the team may edit at any time, and `spec.variables` of the run could be patched while a gate
waits. The record lives in the status, which only the operator writes.
"""

from __future__ import annotations

import dataclasses

from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import PipelineRun, PipelineRunStatus

# What a run records of itself at its start (status fields, as stored), with the rules' outcome.
RECORD_FIELDS = ("pipelineSpec", "variables", "evaluation")


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


def built_images(pipeline: PipelineSpec, status: PipelineRunStatus) -> dict[str, str]:
    """Image -> digest for the build jobs of the run that pushed one (status.jobs[])."""
    return {
        job.build.image: digest
        for job in pipeline.jobs
        if job.build is not None
        and (entry := status.job(job.name)) is not None
        and (digest := entry.image_digest)
    }


def with_sha(run: PipelineRun, evaluation: Evaluation | None) -> PipelineRun:
    """The run as it builds: a run given only a ref builds the commit resolved at its start."""
    if run.spec is None or run.spec.revision.sha or evaluation is None or not evaluation.sha:
        return run
    revision = dataclasses.replace(run.spec.revision, sha=evaluation.sha)
    return dataclasses.replace(run, spec=dataclasses.replace(run.spec, revision=revision))
