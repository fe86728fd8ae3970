"""`conveyor run`: the PipelineRun it creates."""

from __future__ import annotations

from conveyor.api import PipelineRun
from conveyor.cli.runs import run_manifest


def test_a_run_is_an_api_run_unless_it_is_a_push():
    plain = run_manifest("app", "main", None, None, {})
    assert "pipelineSource" not in plain["spec"]  # api, GitLab's API-created pipeline
    assert PipelineRun.from_dict(plain).spec.pipeline_source == "api"
    pushed = run_manifest("app", "main", "a" * 40, None, {}, push=True)
    assert pushed["spec"]["pipelineSource"] == "push"
    before = run_manifest("app", "main", "a" * 40, "b" * 40, {"X": "1"})
    assert before["spec"]["pipelineSource"] == "push"  # a before SHA is a push's
    assert before["spec"]["revision"] == {"ref": "main", "sha": "a" * 40, "beforeSha": "b" * 40}
