"""The planner and the Job builder with a rule evaluation in the run's status."""

from __future__ import annotations

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.evaluation import Evaluation, JobEvaluation
from conveyor.api.pipelinerun import dump_run_status
from conveyor.engine.evaluation import apply_evaluation
from conveyor.gitlab.context import RuleContext
from conveyor.gitlab.rules import evaluate
from conveyor.kube.jobspec import build_job
from tests.unit.engine.test_engine import World, job, pipeline


def excluded(*names):
    return Evaluation(jobs=tuple(JobEvaluation(name=n, excluded=True, reason="r") for n in names))


def test_excluded_jobs_are_skipped_and_never_created():
    spec = pipeline(job("compile", "build"), job("unit"), job("ship", "deploy"))
    world = World(spec)
    result = _step(world, excluded("unit"))
    assert [c.pipeline_job for c in result.create] == ["compile"]
    assert world.phases()["unit"] == "Skipped"
    entry = next(j for j in world.status["jobs"] if j["name"] == "unit")
    assert entry["reason"] == "ExcludedByRules"
    # The evaluation is stored in status; later passes read it from there.
    assert world.status["evaluation"]["jobs"][0] == {
        "name": "unit",
        "excluded": True,
        "reason": "r",
    }
    world.settle()
    assert "unit" not in " ".join(world.created)
    assert world.phases() == {"compile": "Succeeded", "unit": "Skipped", "ship": "Succeeded"}
    assert world.condition()["reason"] == "Succeeded"


def test_skipped_run_creates_nothing_and_ends_skipped():
    world = World(pipeline(job("a"), job("b", "deploy")))
    result = _step(world, Evaluation(skipped=True, reason="the commit message contains [skip ci]"))
    assert result.create == []
    assert world.status["phase"] == "Skipped"
    cond = world.condition()
    assert (cond["status"], cond["reason"]) == ("True", "Skipped")
    assert "[skip ci]" in cond["message"]
    assert world.status.get("jobs", []) == []
    assert world.step().create == []  # finished: stays skipped
    assert world.status["phase"] == "Skipped"


def test_every_job_excluded_ends_skipped():
    world = World(pipeline(job("a"), job("b")))
    _step(world, excluded("a", "b"))
    assert world.status["phase"] == "Skipped"
    assert world.condition()["status"] == "True"


def test_rule_overrides_when_and_allow_failure():
    spec = pipeline(job("a"), job("deploy", "deploy"), job("after", "deploy", needs=["deploy"]))
    evaluation = Evaluation(
        jobs=(JobEvaluation(name="deploy", when="manual", allow_failure=False),)
    )
    world = World(spec)
    _step(world, evaluation)
    world.settle()
    # Blocking manual from rules: the run waits for it instead of finishing.
    assert world.phases()["deploy"] == "Manual"
    assert world.status["phase"] == "Running"
    assert world.condition()["reason"] == "ManualActionRequired"


def test_allow_failure_override_gives_warnings():
    world = World(pipeline(job("flaky")))
    _step(world, Evaluation(jobs=(JobEvaluation(name="flaky", allow_failure=True),)))
    world.finish("flaky", "failed")
    world.step()
    assert world.condition()["reason"] == "SucceededWithWarnings"


def test_optional_needs_on_excluded_jobs_are_dropped_and_required_ones_fail():
    spec = pipeline(
        job("build", "build"),
        job("test", optionalNeeds=["build"]),
        job("other", "deploy"),
    )
    world = World(spec)
    result = _step(world, excluded("build"))
    # `test` only needed the excluded job (optionally): it starts at once, like needs: [].
    assert [c.pipeline_job for c in result.create] == ["test"]
    strict = pipeline(job("build", "build"), job("test", needs=["build"]))
    world = World(strict)
    _step(world, excluded("build"))
    assert world.status["phase"] == "Failed"
    assert "needs job 'build', but 'build' does not exist" in world.condition()["message"]


def test_optional_needs_on_missing_jobs_validate():
    spec = pipeline(job("a"), job("b", optionalNeeds=["ghost", "a"]))
    world = World(spec)
    assert [c.pipeline_job for c in world.step().create] == ["a"]  # b waits for a
    world.settle()
    assert world.condition()["reason"] == "Succeeded"


def test_evaluation_end_to_end_with_the_evaluator():
    spec = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "test", "script": ["t"], "only": {"refs": ["master"]}},
                {"name": "docs", "script": ["d"], "except": {"refs": ["main"]}},
            ]
        }
    )
    evaluation = evaluate(spec, RuleContext(ref="main"))
    world = World(spec)
    _step(world, evaluation)
    world.settle()
    assert world.phases() == {"test": "Skipped", "docs": "Skipped"}
    assert world.status["phase"] == "Skipped"


def test_jobspec_uses_rule_and_workflow_variables_and_git_facts():
    spec = parse_pipeline_spec(
        {
            "jobs": [{"name": "deploy", "script": ["x"], "variables": {"LEVEL": "job"}}],
            "variables": {"TOP": "pipeline", "LEVEL": "top"},
        }
    )
    evaluation = Evaluation(
        variables={"TOP": "workflow"},
        jobs=(JobEvaluation(name="deploy", variables={"LEVEL": "rule"}),),
        ref_is_tag=True,
        commit_message="Release 1\n\nNotes",
        default_branch="main",
    )
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r", "uid": "u"},
            "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "v1"}},
            "status": {"evaluation": evaluation.to_dict()},
        }
    )
    built = build_job(run=run, pipeline=spec, job=spec.jobs[0], attempt=1)
    env = {
        e["name"]: e.get("value") for e in built["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LEVEL"] == "rule"
    assert env["TOP"] == "workflow"
    assert env["CI_COMMIT_TAG"] == "v1" and "CI_COMMIT_BRANCH" not in env
    assert env["CI_COMMIT_TITLE"] == "Release 1"
    assert env["CI_COMMIT_MESSAGE"] == "Release 1\n\nNotes"
    assert env["CI_DEFAULT_BRANCH"] == "main"
    effective = apply_evaluation(spec, evaluation)
    assert effective.variables["TOP"] == "workflow"
    assert effective.jobs[0].variables["LEVEL"] == "rule"


def _step(world, evaluation):
    """One pass that hands the planner a fresh evaluation (the operator's first pass)."""
    from conveyor.engine import plan

    world.now = world.now.replace(second=world.now.second + 1)
    result = plan(
        world.spec, world.run(), list(world.jobs.values()), world.now, evaluation=evaluation
    )
    from conveyor.engine import ObservedJob

    for c in result.create:
        world.created.append(c.job_name)
        world.jobs.setdefault(
            c.job_name,
            ObservedJob(c.job_name, c.pipeline_job, c.attempt, "active", start_time=world.now),
        )
    world.status = dump_run_status(result.status)
    return result


def test_with_evaluation_feeds_the_first_pass_jobs():
    from conveyor.engine.evaluation import with_evaluation

    spec = parse_pipeline_spec({"jobs": [{"name": "a", "script": ["x"]}]})
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r"},
            "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}},
        }
    )
    evaluation = Evaluation(jobs=(JobEvaluation(name="a", variables={"FROM_RULE": "1"}),))
    built = build_job(
        run=with_evaluation(run, evaluation), pipeline=spec, job=spec.jobs[0], attempt=1
    )
    env = built["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FROM_RULE", "value": "1"} in env
    assert {"name": "CI_COMMIT_BRANCH", "value": "main"} in env


def test_a_scan_of_a_build_the_rules_removed_is_left_out_too():
    spec = pipeline(
        {"name": "image", "stage": "build", "build": {"image": "reg/app:1"}},
        {"name": "scan", "stage": "test", "scan": {"build": "image"}},
        job("unit"),
    )
    world = World(spec)
    result = _step(world, excluded("image"))
    assert [c.pipeline_job for c in result.create] == ["unit"]
    entries = {j["name"]: j for j in world.status["jobs"]}
    assert (entries["scan"]["phase"], entries["scan"]["reason"]) == ("Skipped", "ExcludedByRules")
    world.settle()
    assert world.condition()["reason"] == "Succeeded"
