"""Typed models of Conveyor's resources and the CRDs generated from them."""

from __future__ import annotations

from conveyor.api.codec import ModelError, format_time, from_dict, parse_time, to_dict
from conveyor.api.meta import API_VERSION, GROUP, VERSION
from conveyor.api.pipeline import Pipeline, PipelineJob, PipelineSpec, parse_pipeline_spec
from conveyor.api.pipelinerun import PipelineRun, PipelineRunSpec, PipelineRunStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ModelError",
    "Pipeline",
    "PipelineJob",
    "PipelineRun",
    "PipelineRunSpec",
    "PipelineRunStatus",
    "PipelineSpec",
    "format_time",
    "from_dict",
    "parse_pipeline_spec",
    "parse_time",
    "to_dict",
]
