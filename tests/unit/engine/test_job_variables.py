"""A job's variables as GitLab expands them: one set (every level, every precedence) first, then
each value against the whole set; `$$` escapes; raw values; no loop on self-reference; and the
CI_ENVIRONMENT_* variables usable in job variables and in the environment's URL."""

from __future__ import annotations

import pytest

from conveyor.api import ModelError, PipelineRun
from conveyor.api.pipeline import SecretVariable
from conveyor.engine.variables.expand import Variables, literal_value, reference_cycle
from conveyor.engine.variables.job import job_variables, with_names_expanded
from conveyor.engine.variables.predefined import environment_slug
from conveyor.kube.jobspec import JobOptions
from tests.unit.kube.test_jobspec import make


def values(job_fields=None, spec_fields=None, run_fields=None):
    run, spec, job = make(job_fields, spec_fields, run_fields)
    return job_variables(spec, run, job, JobOptions())


# docs.gitlab.com/ci/variables/#use-cicd-variables-in-other-variables: a variable may use any
# other variable of the job, whatever level defines either.
def test_a_pipeline_variable_sees_the_jobs_variables():
    variables = values(
        {"variables": {"HOST": "example.com"}}, {"variables": {"URL": "https://$HOST/api"}}
    )
    assert variables.raw["URL"] == "https://example.com/api"
    assert variables.env["URL"] == "https://example.com/api"


def test_the_order_of_definition_does_not_matter():
    variables = values({"variables": {"B": "${A}-x", "A": "a"}})
    assert variables.raw["B"] == "a-x"


def test_expansion_is_recursive_across_levels_and_run_variables_win():
    variables = values(
        {"variables": {"STACK": "app-${ENV_NAME}", "DOMAIN": "${STACK}.example.com"}},
        {"variables": {"ENV_NAME": "$CI_COMMIT_REF_SLUG"}},
        {"variables": {"ENV_NAME": "run-$CI_JOB_STAGE"}},
    )
    assert variables.raw["DOMAIN"] == "app-run-test.example.com"


def test_dollar_dollar_is_a_literal_dollar_everywhere():
    variables = values({"variables": {"PRICE": "$$5", "LABEL": "cost: $PRICE"}})
    assert variables.raw["LABEL"] == "cost: $5"
    assert variables.env["LABEL"] == "cost: $$5"  # Kubernetes turns $$ into $


# docs.gitlab.com/ci/yaml/#variablesexpand: `expand: false` keeps `$` as written. The importer
# writes such a value with its `$` doubled, which expands to exactly the written text.
def test_a_raw_value_is_not_expanded_and_a_reference_to_it_gets_it_as_written():
    variables = values(
        {"variables": {"RAW": literal_value("p@$$w$ORD"), "USE": "[$RAW]", "ORD": "no"}}
    )
    assert variables.raw["RAW"] == "p@$$w$ORD"
    assert variables.raw["USE"] == "[p@$$w$ORD]"


def test_predefined_values_are_never_expanded():
    run, spec, job = make(run_fields={"revision": {"ref": "feature/$HOME"}})
    variables = job_variables(spec, run, job, JobOptions())
    assert variables.raw["CI_COMMIT_REF_NAME"] == "feature/$HOME"
    assert variables.env["CI_COMMIT_REF_NAME"] == "feature/$$HOME"


def test_a_self_reference_means_the_overridden_value_and_never_loops():
    variables = values({"variables": {"PATH": "$PATH:/job"}}, {"variables": {"PATH": "/usr/bin"}})
    assert variables.raw["PATH"] == "/usr/bin:/job"
    alone = values({"variables": {"X": "${X}x"}})
    assert alone.raw["X"] == "x"


def test_a_cycle_expands_to_something_and_is_named():
    variables = Variables()
    variables.define_all({"A": "a$B", "B": "b$A"})
    assert variables.raw["A"] in ("ab", "aba")
    assert variables.cycles == {("A", "B")}


def test_reference_cycles_are_found_between_two_or_more_variables_only():
    assert reference_cycle({"A": "$B", "B": "${C}", "C": "$A"}) == ("A", "B", "C", "A")
    assert reference_cycle({"PATH": "$PATH:/x", "A": "$B", "B": "b"}) is None
    assert reference_cycle({"A": "$$B", "B": "$A"}) is None  # $$ is no reference


# GitLab refuses to create a pipeline whose job variables refer to each other in a cycle.
def test_a_cycle_the_run_makes_fails_the_run_naming_the_job():
    run, spec, _ = make({"variables": {"A": "$B"}}, run_fields={"variables": {"B": "$A"}})
    with pytest.raises(ModelError) as e:
        with_names_expanded(spec, run, JobOptions())
    assert "jobs[unit tests].variables" in str(e.value)
    assert "circular variable reference: A -> B -> A" in str(e.value)


def test_a_secret_variable_stays_a_reference_wherever_it_is_used():
    variables = values(
        {
            "secretVariables": [{"name": "TOKEN", "secretName": "t", "key": "k"}],
            "variables": {"AUTH": "Bearer $TOKEN"},
        },
        {"variables": {"HEADER": "Authorization: $AUTH"}},
    )
    assert variables.env["HEADER"] == "Authorization: Bearer $(TOKEN)"
    assert variables.raw["HEADER"] == "Authorization: Bearer "
    assert isinstance(variables.secrets["TOKEN"], SecretVariable)


# docs.gitlab.com/ci/variables/where_variables_can_be_used: environment:url is expanded by
# GitLab with every variable of the job (CI_ENVIRONMENT_NAME/SLUG too); environment:name with
# those but CI_ENVIRONMENT_*; job variables see CI_ENVIRONMENT_* like any other variable.
def test_job_variables_and_the_url_use_the_environment_variables():
    variables = values(
        {
            "environment": {"name": "review/$CI_COMMIT_REF_SLUG", "url": "http://$APP_HOST"},
            "variables": {"DOMAIN": "apps.example.com"},
        },
        {"variables": {"APP_HOST": "$CI_PROJECT_NAME-$CI_ENVIRONMENT_SLUG.$DOMAIN"}},
    )
    slug = environment_slug("review/feature-login-page")
    assert variables.raw["CI_ENVIRONMENT_NAME"] == "review/feature-login-page"
    assert variables.raw["CI_ENVIRONMENT_SLUG"] == slug
    assert variables.raw["APP_HOST"] == f"app-{slug}.apps.example.com"
    assert variables.raw["CI_ENVIRONMENT_URL"] == f"http://app-{slug}.apps.example.com"


def test_a_url_that_refers_to_itself_through_a_variable_does_not_loop():
    variables = values(
        {
            "environment": {"name": "prod", "url": "https://$HOST"},
            "variables": {"HOST": "x$CI_ENVIRONMENT_URL"},
        }
    )
    assert variables.raw["CI_ENVIRONMENT_URL"] == "https://x"
    assert variables.raw["HOST"] == "xhttps://x"


def test_the_jobs_own_environment_variables_win():
    variables = values(
        {"environment": {"name": "prod"}, "variables": {"CI_ENVIRONMENT_SLUG": "mine"}}
    )
    assert variables.raw["CI_ENVIRONMENT_SLUG"] == "mine"
    assert variables.raw["CI_ENVIRONMENT_NAME"] == "prod"


# docs.gitlab.com/ci/variables/predefined_variables: CI_ENVIRONMENT_SLUG is "truncated to 24
# characters"; a suffix is "added to uppercase environment names".
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("prod", "prod"),
        ("production", "production"),
        ("staging-2", "staging-2"),
        ("1st", None),  # must start with a letter: env-1st, changed, so a suffix
        ("Prod", None),
        ("review/feature-x", None),
        ("a-very-long-environment-name", None),
    ],
)
def test_environment_slugs(name, expected):
    slug = environment_slug(name)
    assert len(slug) <= 24
    assert slug == slug.lower() and "--" not in slug and slug[0].isalpha()
    if expected is not None:
        assert slug == expected
    else:
        assert slug[-7] == "-" and len(slug) <= 17 + 7
        assert environment_slug(name) == slug  # derived from the name, not random
        assert environment_slug(name + "x") != slug


# docs.gitlab.com/ci/variables/predefined_variables: what real pipelines use, from what Conveyor
# knows (the repository URL, the run, the commit).
def test_project_server_job_and_commit_variables():
    from conveyor.api.evaluation import Evaluation
    from conveyor.engine.evaluation import with_evaluation
    from conveyor.kube.jobspec import build_job
    from tests.unit.kube.test_jobspec import env_of, script_container

    run, spec, job = make(
        {"when": "manual"},
        {"source": {"url": "https://git.example.com:8443/team/sub/go-app.git"}},
        {"revision": {"ref": "main", "sha": "c" * 40}},
    )
    run = with_evaluation(
        run,
        Evaluation(
            commit_author="Ada <ada@example.com>", commit_timestamp="2026-01-02T03:04:05+00:00"
        ),
    )
    env = env_of(script_container(build_job(run=run, pipeline=spec, job=job, attempt=2)))
    assert env["GITLAB_CI"] == "true" and env["CI_SERVER"] == "yes"
    assert env["CI_PROJECT_PATH"] == "team/sub/go-app"
    assert env["CI_PROJECT_NAMESPACE"] == "team/sub"
    assert env["CI_PROJECT_ROOT_NAMESPACE"] == "team"
    assert env["CI_PROJECT_PATH_SLUG"] == "team-sub-go-app"
    assert env["CI_PROJECT_TITLE"] == "go-app"
    assert env["CI_SERVER_URL"] == "https://git.example.com:8443"
    assert env["CI_SERVER_HOST"] == "git.example.com" and env["CI_SERVER_PORT"] == "8443"
    assert env["CI_PROJECT_URL"] == "https://git.example.com:8443/team/sub/go-app"
    assert env["CI_PROJECT_ID"].isdigit()
    assert env["CI_JOB_ID"].startswith("app-main-1-unit-tests-2-")  # this attempt's Job
    assert env["CI_JOB_MANUAL"] == "true"
    assert env["CI_COMMIT_REF_PROTECTED"] == "false"
    assert env["CI_NODE_TOTAL"] == "1"
    assert env["CI_COMMIT_AUTHOR"] == "Ada <ada@example.com>"
    assert env["CI_COMMIT_TIMESTAMP"] == "2026-01-02T03:04:05+00:00"


@pytest.mark.parametrize(
    ("url", "path", "server"),
    [
        ("git@gitlab.example.com:group/app.git", "group/app", "https://gitlab.example.com"),
        ("ssh://git@gitlab.example.com:2222/group/app", "group/app", "https://gitlab.example.com"),
        ("http://git.local/app.git", "app", "http://git.local"),
        ("file:///srv/git/app.git", "ns/app", None),
        (None, "ns/app", None),
    ],
)
def test_project_variables_from_the_repository_url(url, path, server):
    from conveyor.engine.variables.predefined import project_variables

    out = project_variables(url, "app", "ns/app")
    assert out["CI_PROJECT_PATH"] == path
    assert out.get("CI_SERVER_URL") == server
    assert out.get("CI_PROJECT_URL") == (f"{server}/{path}" if server else None)
    assert project_variables(url, "app", "ns/app") == out  # stable, CI_PROJECT_ID too


def test_pipeline_created_at_is_the_runs_creation_in_utc():
    run, spec, job = make()
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r", "creationTimestamp": "2026-03-04T05:06:07Z"},
            "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
        }
    )
    variables = job_variables(spec, run, job, JobOptions())
    assert variables.raw["CI_PIPELINE_CREATED_AT"] == "2026-03-04T05:06:07Z"
