"""Rule evaluation: [skip ci], workflow:rules, rules, only/except, predefined git variables."""

from __future__ import annotations

import pytest

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.evaluation import Evaluation
from conveyor.engine.variables.predefined import commit_title, git_variables
from conveyor.gitlab.context import GitFacts, RuleContext, compare_to_refs, rule_context
from conveyor.gitlab.refs import ref_matches
from conveyor.gitlab.rules import evaluate, skip_ci_marker


def spec(*jobs, **extra):
    return parse_pipeline_spec({"jobs": list(jobs), **extra})


def job(name, **fields):
    return {"name": name, "script": ["true"], **fields}


def ctx(**fields):
    base = {"ref": "main", "variables": {"CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main"}}
    return RuleContext(**{**base, **fields})


def excluded(evaluation):
    return sorted(evaluation.excluded)


# --- [skip ci] ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    ["fix [skip ci]", "[ci skip] docs", "x [SKIP CI]", "[ci-skip]", "[skip_ci]", "[Ci_Skip]"],
)
def test_skip_ci_variants(message):
    assert skip_ci_marker(message)
    result = evaluate(spec(job("a")), ctx(commit_message=message))
    assert result.skipped
    assert "the commit message contains" in result.reason


@pytest.mark.parametrize("message", ["skip ci", "[skip-it]", "[ci  skip]", "(skip ci)"])
def test_not_skip_ci(message):
    assert skip_ci_marker(message) is None
    assert not evaluate(spec(job("a")), ctx(commit_message=message)).skipped


@pytest.mark.parametrize("source", ["web", "api", "trigger", "schedule"])
def test_skip_ci_is_ignored_by_non_push_sources(source):
    assert not evaluate(spec(job("a")), ctx(commit_message="[skip ci]", source=source)).skipped


# --- workflow:rules -------------------------------------------------------------------------


def test_workflow_rules_first_match_decides():
    pipeline = spec(
        job("a"),
        workflow={
            "rules": [
                {"if": '$CI_COMMIT_BRANCH == "wip"', "when": "never"},
                {"if": "$CI_COMMIT_BRANCH", "variables": {"DEPLOY": "yes"}},
            ]
        },
    )
    result = evaluate(pipeline, ctx())
    assert not result.skipped
    assert result.variables == {"DEPLOY": "yes"}
    wip = evaluate(pipeline, ctx(ref="wip", variables={"CI_COMMIT_BRANCH": "wip"}))
    assert wip.skipped and "when: never" in wip.reason
    tag = evaluate(pipeline, ctx(ref="v1", ref_is_tag=True, variables={"CI_COMMIT_TAG": "v1"}))
    assert tag.skipped and tag.reason == "workflow:rules: no rule matched"


def test_workflow_rules_drop_the_default_only():
    # With workflow:rules, a job without only/except is not limited to branches and tags.
    pipeline = spec(job("a"), workflow={"rules": [{"when": "always"}]})
    result = evaluate(pipeline, ctx(source="merge_request_event"))
    assert excluded(result) == []


# --- rules --------------------------------------------------------------------------------


def test_rules_first_match_and_overrides():
    pipeline = spec(
        job(
            "deploy",
            variables={"LEVEL": "job"},
            rules=[
                {"if": '$CI_COMMIT_BRANCH == "dev"', "when": "never"},
                {
                    "if": '$CI_COMMIT_BRANCH == "main"',
                    "when": "manual",
                    "variables": {"LEVEL": "rule"},
                },
                {"when": "always"},
            ],
        ),
        job("lint", rules=[{"if": "$NOPE"}]),
        job("docs", rules=[{"if": "$CI_COMMIT_BRANCH", "allowFailure": True}]),
        job("plain", rules=[{"if": "$CI_COMMIT_BRANCH"}]),
    )
    result = evaluate(pipeline, ctx())
    deploy = result.job("deploy")
    assert (deploy.when, deploy.allow_failure, dict(deploy.variables)) == (
        "manual",
        False,  # manual from rules blocks by default
        {"LEVEL": "rule"},
    )
    assert result.job("lint").excluded and result.job("lint").reason == "rules: no rule matched"
    assert result.job("docs").allow_failure is True and result.job("docs").when is None
    assert result.job("plain") is None  # included as declared: not recorded
    dev = evaluate(pipeline, ctx(ref="dev", variables={"CI_COMMIT_BRANCH": "dev"}))
    assert dev.job("deploy").excluded and "when: never" in dev.job("deploy").reason


def test_rules_see_pipeline_job_and_run_variables():
    pipeline = spec(
        job("a", variables={"JOB_VAR": "1"}, rules=[{"if": '$JOB_VAR == "1" && $TOP == "t"'}]),
        job("b", rules=[{"if": '$RUN == "r" && $TOP == "over"'}]),
        variables={"TOP": "t"},
    )
    result = evaluate(pipeline, ctx(run_variables={"RUN": "r"}))
    assert excluded(result) == ["b"]
    result = evaluate(pipeline, ctx(run_variables={"RUN": "r", "TOP": "over"}))
    assert excluded(result) == ["a"]


def test_rules_changes_exists_and_unknown_changes():
    pipeline = spec(
        job("go", rules=[{"changes": ["src/**/*.go"]}]),
        job("docker", rules=[{"exists": ["Dockerfile"]}]),
        job("since", rules=[{"changes": ["docs/*"], "changesCompareTo": "$CI_DEFAULT_BRANCH"}]),
    )
    files = frozenset({"Dockerfile", "src/main.go"})
    result = evaluate(pipeline, ctx(changed_paths=frozenset({"README.md"}), files=files))
    assert excluded(result) == ["go"]  # since: compare_to diff unknown -> true
    result = evaluate(
        pipeline,
        ctx(
            changed_paths=frozenset({"src/a/b.go"}),
            files=frozenset({"src/main.go"}),
            variables={"CI_DEFAULT_BRANCH": "main"},
            changed_paths_since={"main": frozenset({"src/x.go"})},
        ),
    )
    assert excluded(result) == ["docker", "since"]
    # Unknown changes (new branch, no before SHA) make `changes` true; tags and schedules too.
    assert excluded(evaluate(pipeline, ctx(changed_paths=None, files=files))) == []
    tag = ctx(changed_paths=frozenset({"README.md"}), files=files, ref_is_tag=True)
    assert excluded(evaluate(pipeline, tag)) == []
    schedule = ctx(changed_paths=frozenset({"README.md"}), files=files, source="schedule")
    assert excluded(evaluate(pipeline, schedule)) == []


def test_compare_to_refs_are_expanded_for_the_operator():
    pipeline = spec(job("a", rules=[{"changes": ["x"], "changesCompareTo": "$BASE"}]))
    assert compare_to_refs(pipeline, {"BASE": "main"}) == frozenset({"main"})


# --- only / except ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "context", "expected"),
    [
        ("branches", {"ref": "main"}, True),
        ("branches", {"ref": "v1", "ref_is_tag": True}, False),
        ("tags", {"ref": "v1", "ref_is_tag": True}, True),
        ("tags", {"ref": "main"}, False),
        ("main", {"ref": "main"}, True),
        ("main", {"ref": "main2"}, False),
        ("/^release-.*$/", {"ref": "release-1"}, True),
        ("/^release-.*$/", {"ref": "hotfix"}, False),
        ("/^RELEASE/i", {"ref": "release-1"}, True),
        ("pushes", {"ref": "x", "source": "push"}, True),
        ("push", {"ref": "x", "source": "push"}, True),
        ("pushes", {"ref": "x", "source": "web"}, False),
        ("web", {"ref": "x", "source": "web"}, True),
        ("api", {"ref": "x", "source": "api"}, True),
        ("triggers", {"ref": "x", "source": "trigger"}, True),
        ("schedules", {"ref": "x", "source": "schedule"}, True),
        ("merge_requests", {"ref": "x", "source": "merge_request_event"}, True),
        ("x", {"ref": "x", "source": "merge_request_event"}, False),  # never for MRs
        ("main@group/app", {"ref": "main", "project_path": "group/app"}, True),
        ("main@group/app", {"ref": "main", "project_path": "other/app"}, False),
    ],
)
def test_only_refs(pattern, context, expected):
    assert ref_matches(pattern, RuleContext(**context)) is expected


def test_only_except_policies():
    pipeline = spec(
        job("seed", only={"refs": ["master"], "changes": ["src/*.go"]}),
        job("plain"),  # default only: [branches, tags]
        job("not-main", **{"except": {"refs": ["main"]}}),
        job("vars", only={"variables": ['$DEPLOY == "yes"', "$FORCE"]}),
        job("except-both", **{"except": {"refs": ["main"], "variables": ["$X"]}}),
    )
    on_main = evaluate(pipeline, ctx(changed_paths=frozenset({"src/a.go"})))
    assert excluded(on_main) == ["not-main", "seed", "vars"]
    assert "only (refs master; changes src/*.go)" in on_main.job("seed").reason
    master = ctx(
        ref="master",
        changed_paths=frozenset({"README.md"}),
        run_variables={"FORCE": "1", "X": "1"},
    )
    assert excluded(evaluate(pipeline, master)) == ["seed"]
    # except needs all its keys: refs main AND $X
    assert excluded(evaluate(pipeline, ctx(run_variables={"X": "1", "DEPLOY": "yes"}))) == [
        "except-both",
        "not-main",
        "seed",
    ]
    master_new_branch = ctx(ref="master", changed_paths=None)
    assert "seed" not in excluded(evaluate(pipeline, master_new_branch))


# --- the result in status -----------------------------------------------------------------


def test_evaluation_round_trips_through_a_compact_dict():
    pipeline = spec(
        job("a", rules=[{"if": "$NOPE"}]),
        job("b", rules=[{"when": "manual", "variables": {"V": "1"}}]),
        job("c"),
        workflow={"rules": [{"variables": {"W": "2"}}]},
    )
    result = evaluate(
        pipeline,
        ctx(ref="v1", ref_is_tag=True, commit_message="Title\n\nbody", default_branch="main"),
    )
    data = result.to_dict()
    assert data == {
        "variables": {"W": "2"},
        "jobs": [
            {"name": "a", "excluded": True, "reason": "rules: no rule matched"},
            {
                "name": "b",
                "reason": "rules[0] matched",
                "when": "manual",
                "allowFailure": False,
                "variables": {"V": "1"},
            },
        ],
        "refIsTag": True,
        "commitMessage": "Title\n\nbody",
        "defaultBranch": "main",
    }
    assert Evaluation.from_dict(data) == result


def test_a_hundred_job_evaluation_stays_small():
    import json

    jobs = [job(f"job-number-{i:03d}", rules=[{"if": "$NOPE"}]) for i in range(100)]
    result = evaluate(spec(*jobs), ctx(commit_message="m" * 10000))
    assert len(json.dumps(result.to_dict())) < 16 * 1024


# --- predefined variables -----------------------------------------------------------------


def test_git_variables():
    branch = git_variables(
        ref="Feature/ÉTÉ_x",
        ref_is_tag=False,
        sha="a" * 40,
        before_sha=None,
        commit_message="Add thing\n\nLonger text",
        default_branch="main",
        pipeline_source="push",
    )
    assert branch["CI_COMMIT_BRANCH"] == "Feature/ÉTÉ_x" and "CI_COMMIT_TAG" not in branch
    assert branch["CI_COMMIT_REF_SLUG"] == "feature--t--x"
    assert branch["CI_COMMIT_BEFORE_SHA"] == "0" * 40
    assert branch["CI_COMMIT_TITLE"] == "Add thing"
    assert branch["CI_COMMIT_DESCRIPTION"] == "Longer text"
    assert branch["CI_DEFAULT_BRANCH"] == "main"
    tag = git_variables(
        ref="v1.0",
        ref_is_tag=True,
        sha=None,
        before_sha="b" * 40,
        commit_message=None,
        default_branch=None,
        pipeline_source="web",
    )
    assert tag["CI_COMMIT_TAG"] == "v1.0" and "CI_COMMIT_BRANCH" not in tag
    assert tag["CI_COMMIT_BEFORE_SHA"] == "b" * 40 and "CI_COMMIT_MESSAGE" not in tag
    assert commit_title("one\r\ntwo") == "one"
    long_slug = git_variables(
        ref="-" + "x" * 80,
        ref_is_tag=False,
        sha=None,
        before_sha=None,
        commit_message=None,
        default_branch=None,
        pipeline_source="api",
    )["CI_COMMIT_REF_SLUG"]
    assert long_slug == "x" * 62  # cut at 63 bytes, then edge dashes dropped


def test_rule_context_from_a_run():
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r"},
            "spec": {
                "pipelineRef": {"name": "app"},
                "revision": {"ref": "v2", "sha": "c" * 40},
                "variables": {"RUN": "1"},
                "pipelineSource": "push",
            },
        }
    )
    facts = GitFacts(ref_is_tag=True, commit_message="Release [skip ci]", default_branch="main")
    context = rule_context(run, facts)
    assert context.variables["CI_COMMIT_TAG"] == "v2"
    assert context.variables["CI_COMMIT_TITLE"] == "Release [skip ci]"
    assert context.run_variables == {"RUN": "1"}
    assert context.changed_paths is None
    assert evaluate(spec(job("a")), context).skipped


# docs.gitlab.com/ci/yaml/#ruleschanges: `changes` "always evaluates to true when there is no
# Git push event" (web, API, scheduled, triggered pipelines); a run carrying the push's before
# SHA is a push.
@pytest.mark.parametrize("source", ["web", "api", "schedule", "trigger"])
def test_changes_are_true_without_a_push(source):
    pipeline = spec(
        job("rules", rules=[{"changes": ["src/*"]}]),
        job("only", only={"changes": ["src/*"]}),
        job("plain"),
    )
    readme = frozenset({"README.md"})
    assert excluded(evaluate(pipeline, ctx(source=source, changed_paths=readme))) == []
    assert excluded(evaluate(pipeline, ctx(source="push", changed_paths=readme))) == [
        "only",
        "rules",
    ]


def test_except_changes_never_holds_without_a_push():
    pipeline = spec(job("docs-skip", **{"except": {"changes": ["docs/*"]}}))
    docs = frozenset({"docs/a.md"})
    assert excluded(evaluate(pipeline, ctx(source="web", changed_paths=docs))) == ["docs-skip"]
    assert excluded(evaluate(pipeline, ctx(source="push", changed_paths=frozenset()))) == []


def test_an_api_run_with_a_before_sha_is_a_push():
    pipeline = spec(job("go", rules=[{"changes": ["src/*"]}]))
    readme = frozenset({"README.md"})
    pushed = ctx(source="api", before_sha="a" * 40, changed_paths=readme)
    assert excluded(evaluate(pipeline, pushed)) == ["go"]
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r"},
            "spec": {
                "pipelineRef": {"name": "app"},
                "revision": {"ref": "main", "sha": "c" * 40, "beforeSha": "b" * 40},
            },
        }
    )
    context = rule_context(run, GitFacts(changed_paths=readme))
    assert context.source == "api" and context.before_sha == "b" * 40
    assert excluded(evaluate(pipeline, context)) == ["go"]


def test_compare_to_is_compared_whatever_started_the_run():
    pipeline = spec(job("since", rules=[{"changes": ["docs/*"], "changesCompareTo": "main"}]))
    web = ctx(source="web", changed_paths_since={"main": frozenset({"src/x.go"})})
    assert excluded(evaluate(pipeline, web)) == ["since"]
