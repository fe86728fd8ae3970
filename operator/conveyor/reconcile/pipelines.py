"""Pipelines as the operator reads them: a Pipeline's status (whether its definition is valid,
in a form `kubectl get` can show), and a run's pipeline (recorded, inline or its Pipeline's,
parsed once per version) with its GitLab rules evaluated against the repository."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from conveyor.api import ModelError, Pipeline, PipelineRun, to_dict
from conveyor.api.conditions import Condition, set_condition
from conveyor.api.evaluation import Evaluation
from conveyor.api.pipeline import PipelineSpec
from conveyor.engine import validate_pipeline
from conveyor.engine.record import recorded_pipeline
from conveyor.engine.variables.predefined import project_name
from conveyor.gitlab.context import rule_context
from conveyor.gitlab.rules import evaluate
from conveyor.kube.jobspec import JobOptions
from conveyor.reconcile.sources import Sources
from conveyor.reconcile.views import Key, Views, first

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


class RunPipelines:
    def __init__(self, sources: Sources, options: JobOptions) -> None:
        self.sources, self.options = sources, options
        self.views: Views | None = None
        self._parsed: dict[Key, tuple[tuple[str, str, str | None], PipelineSpec | None]] = {}

    def bind(self, views: Views) -> None:
        self.views = views

    def spec(self, run: PipelineRun, namespace: str) -> tuple[PipelineSpec | None, str]:
        """The run's pipeline spec, or None and why not: the one recorded when it started, else
        the inline one or its Pipeline's."""
        assert self.views is not None and run.spec is not None
        recorded = recorded_pipeline(run)
        if recorded is not None:
            return recorded, ""
        if run.spec.pipeline_spec is not None:
            return run.spec.pipeline_spec, ""
        name = run.pipeline_name or ""
        body = first(self.views.pipelines, (namespace, name))
        if body is None:
            return None, f"Pipeline {name!r} does not exist in namespace {namespace!r}"
        # Parsing is the costliest step of a pass: reuse it while the Pipeline is unchanged.
        version = (namespace, name, body["metadata"].get("resourceVersion"))
        cached = self._parsed.get((namespace, name))
        if cached is None or cached[0] != version:
            cached = (version, Pipeline.from_dict(body).spec)
            self._parsed[(namespace, name)] = cached
        if cached[1] is None:
            return None, f"Pipeline {name!r} has no spec"
        return cached[1], ""

    async def evaluate(
        self, namespace: str, pipeline: PipelineSpec, run: PipelineRun
    ) -> Evaluation:
        sha, facts = await self.sources.facts(namespace, pipeline, run)
        extra = {"CI_PROJECT_NAME": project_name(pipeline, run)}
        if self.options.registry:
            extra["CI_REGISTRY"] = self.options.registry
        if self.options.registry_image:
            extra["CI_REGISTRY_IMAGE"] = self.options.registry_image
        evaluation = evaluate(pipeline, rule_context(run, facts, extra))
        return dataclasses.replace(evaluation, sha=sha)
