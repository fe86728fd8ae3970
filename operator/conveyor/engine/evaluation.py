"""Applying a run's rule evaluation (`status.evaluation`) to its pipeline.

The planner and the Job builder both work on the "effective" pipeline: the declared one with each
matching rule's `when`, `allowFailure` and `variables` applied and the workflow rule's variables
added to the pipeline's. Excluded jobs stay in the pipeline (the planner marks them Skipped, so
stage order and status keep every job) and optional needs on them are dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun


def effective_job(job: PipelineJob, evaluation: Evaluation | None) -> PipelineJob:
    """`job` with the overrides of its matching rule (unchanged without an evaluation)."""
    decision = evaluation.job(job.name) if evaluation is not None else None
    if decision is None or decision.excluded:
        return job
    changes: dict[str, Any] = {}  # PipelineJob fields by name
    if decision.when is not None:
        changes["when"] = decision.when
        if decision.when != "delayed":
            changes["start_in"] = None  # a rule's `when` replaces the job's delay too
    if decision.allow_failure is not None:
        changes["allow_failure"] = decision.allow_failure
    if decision.variables:
        changes["variables"] = {**job.variables, **decision.variables}
    return dataclasses.replace(job, **changes) if changes else job


def apply_evaluation(pipeline: PipelineSpec, evaluation: Evaluation | None) -> PipelineSpec:
    """The effective pipeline of a run (the pipeline itself without an evaluation)."""
    if evaluation is None:
        return pipeline
    excluded = evaluation.excluded
    jobs = []
    for job in pipeline.jobs:
        job = effective_job(job, evaluation)
        if job.optional_needs and excluded & set(job.optional_needs):
            # GitLab drops an optional need whose job the rules removed.
            optional = tuple(n for n in job.optional_needs if n not in excluded)
            if job.needs is None and not optional:
                job = dataclasses.replace(job, needs=(), optional_needs=optional)
            else:
                job = dataclasses.replace(job, optional_needs=optional)
        jobs.append(job)
    variables = {**pipeline.variables, **evaluation.variables}
    return dataclasses.replace(pipeline, jobs=tuple(jobs), variables=variables)


def with_evaluation(run: PipelineRun, evaluation: Evaluation) -> PipelineRun:
    """`run` whose status carries `evaluation`: hand this to `plan()` and `build_job()` on the
    pass that first evaluates the rules, so the Jobs created then see rule variables too."""
    return dataclasses.replace(run, status=dataclasses.replace(run.status, evaluation=evaluation))
