"""GitLab CI compatibility on the real clusters: the seed's own .gitlab-ci.yml, imported, reacts
to what each push changed; every conformance file converts into a Pipeline the API server takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e.conveyor import (
    GROUP,
    VERSION,
    Conveyor,
    job,
    job_status,
    phase,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.gitrepo import GitRepo, go_app_repo, new_repo
from tests.e2e.support import ROOT, Clusters

CONFORMANCE = sorted((ROOT / "tests" / "fixtures" / "gitlab-ci").glob("*.gitlab-ci.yml"))


def import_gitlab(path: Path, name: str, repo_url: str | None = None) -> tuple[int, dict, str]:
    argv = [sys.executable, "-m", "conveyor.cli.main", "import-gitlab", str(path), "--name", name]
    if repo_url:
        argv += ["--repo", repo_url]
    proc = subprocess.run(argv, capture_output=True, text=True)
    return proc.returncode, yaml.safe_load(proc.stdout) if proc.stdout else {}, proc.stderr


@pytest.fixture
def seed(conveyor: Conveyor, tmp_path: Path) -> GitRepo:
    repo = go_app_repo(tmp_path / "go-app")
    code, manifest, stderr = import_gitlab(repo.path / ".gitlab-ci.yml", "go-app", repo.url)
    assert code in (0, 3), stderr
    conveyor.create(manifest)
    return repo


def push_run(name: str, before: str, after: str) -> dict:
    """The run a push to master creates (what a webhook or poll trigger makes)."""
    return run(
        name,
        "go-app",
        revision={"ref": "master", "sha": after, "beforeSha": before},
        pipelineSource="push",
    )


def test_push_touching_the_server_runs_test_and_build(conveyor: Conveyor, seed: GitRepo) -> None:
    before = seed.head()
    after = seed.commit("faster handler", {"src/server.go": "\n// faster\n"})
    conveyor.create(push_run("code", before, after))
    done = conveyor.wait_finished("code")
    assert phase(done) == "Succeeded"
    for name in ("test", "build", "container-scan", "k8s-deploy-test"):
        assert job_status(done, name)["phase"] == "Succeeded", name
    # when: manual outside rules is GitLab's optional manual job: it waits, the run succeeds.
    assert job_status(done, "k8s-deploy-prod")["phase"] == "Manual"
    assert done["status"]["shortSha"] == after[:8]
    assert done["status"]["evaluation"]["commitMessage"].startswith("faster handler")
    test_job = next(
        j for j in conveyor.jobs("code") if j.metadata.annotations["conveyor.dev/job"] == "test"
    )
    env = {e.name: e.value for e in test_job.spec.template.spec.containers[0].env}
    assert env["CI_COMMIT_SHA"] == after and env["CI_COMMIT_BEFORE_SHA"] == before
    assert env["CI_COMMIT_BRANCH"] == "master" and "CI_COMMIT_TAG" not in env
    assert env["CI_COMMIT_TITLE"] == "faster handler"
    assert env["CI_PIPELINE_SOURCE"] == "push"
    assert env["CI_COMMIT_REF_SLUG"] == "master"


def test_push_touching_only_templates_runs_neither_test_nor_build(
    conveyor: Conveyor, seed: GitRepo
) -> None:
    before = seed.head()
    after = seed.commit("more replicas", {"templates/deployment.yml": "\n# more replicas\n"})
    conveyor.create(push_run("templates", before, after))
    done = conveyor.wait_finished("templates")
    assert phase(done) == "Succeeded"
    for name in ("test", "build"):
        entry = job_status(done, name)
        assert (entry["phase"], entry["reason"]) == ("Skipped", "ExcludedByRules"), name
        assert not [
            j
            for j in conveyor.jobs("templates")
            if j.metadata.annotations["conveyor.dev/job"] == name
        ]
    assert job_status(done, "k8s-deploy-test")["phase"] == "Succeeded"


def test_skip_ci_commit_ends_the_run_skipped(conveyor: Conveyor, seed: GitRepo) -> None:
    before = seed.head()
    after = seed.commit("typo in the readme [skip ci]", {"README.md": "\nfixed\n"})
    conveyor.create(push_run("skipped", before, after))
    done = conveyor.wait_finished("skipped")
    assert phase(done) == "Skipped"
    assert succeeded_condition(done)["reason"] == "Skipped"
    assert not conveyor.jobs("skipped")


def test_run_of_a_ref_builds_its_resolved_head(conveyor: Conveyor, seed: GitRepo) -> None:
    conveyor.create(run("by-ref", "go-app", ref="master", pipelineSource="web"))
    done = conveyor.wait_finished("by-ref")
    assert done["status"]["shortSha"] == seed.head()[:8]
    assert done["status"]["evaluation"]["sha"] == seed.head()


def test_unreachable_repository_fails_the_run_and_others_go_on(conveyor: Conveyor) -> None:
    conveyor.create(
        pipeline(
            "lost",
            [job("a")],
            source={"url": "https://ci-bot:s3cr3t-t0ken@127.0.0.1:1/nowhere.git"},
        )
    )
    conveyor.create(pipeline("fine", [job("a")]))
    conveyor.create(run("lost-1", "lost"))
    conveyor.create(run("fine-1", "fine"))
    done = conveyor.wait_finished("lost-1", timeout=180)
    cond = succeeded_condition(done)
    assert (phase(done), cond["reason"]) == ("Failed", "SourceUnavailable")
    assert "127.0.0.1" in cond["message"] and "s3cr3t-t0ken" not in cond["message"]
    assert phase(conveyor.wait_finished("fine-1")) == "Succeeded"


@pytest.mark.parametrize("path", CONFORMANCE, ids=[p.name for p in CONFORMANCE])
def test_conformance_file_converts_and_the_api_server_accepts_it(
    path: Path, clusters: Clusters, namespace: str
) -> None:
    code, manifest, stderr = import_gitlab(path, "imported")
    assert code in (0, 3), stderr
    if code == 3:
        assert stderr.strip(), "exit 3 must list what was left out"
    api = client.CustomObjectsApi(clusters.api("ci"))
    # Server-side dry run: the real schema and CEL rules judge it; nothing is stored.
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelines", manifest, dry_run="All"
    )


def test_push_of_a_new_ref_counts_changes_as_true(conveyor: Conveyor, seed: GitRepo) -> None:
    # A push with before = zeros (a new branch, as webhooks and polls report it): GitLab cannot
    # say what changed and counts every `changes` rule as true, even for a templates-only commit.
    after = seed.commit("templates only", {"templates/svc.yml": "\n# new ref\n"})
    conveyor.create(push_run("new-ref", "0" * 40, after))
    done = conveyor.wait_finished("new-ref")
    assert job_status(done, "test")["phase"] == "Succeeded"
    assert job_status(done, "build")["phase"] == "Succeeded"


def test_a_parallel_matrix_runs_one_job_per_combination(conveyor: Conveyor, tmp_path: Path) -> None:
    repo = new_repo(
        tmp_path / "repo",
        {
            ".gitlab-ci.yml": (
                "test:\n  stage: test\n  script: [make test]\n  parallel: 2\n"
                "deploy:\n  stage: deploy\n  script: [deploy]\n  parallel:\n    matrix:\n"
                "      - REGION: [eu, us]\n"
                "report:\n  stage: deploy\n  script: [report]\n  needs:\n"
                "    - job: deploy\n      parallel: {matrix: [{REGION: eu}]}\n"
            )
        },
    )
    code, manifest, stderr = import_gitlab(repo.path / ".gitlab-ci.yml", "matrix", repo.url)
    assert code == 0, stderr
    conveyor.create(manifest)
    conveyor.create(run("m1", "matrix", ref="main"))
    done = conveyor.wait_finished("m1")
    assert phase(done) == "Succeeded"
    ran = {j["name"] for j in done["status"]["jobs"] if j["phase"] == "Succeeded"}
    assert ran == {"test 1/2", "test 2/2", "deploy: [eu]", "deploy: [us]", "report"}
    envs = {
        j.metadata.annotations["conveyor.dev/job"]: {
            e.name: e.value for e in j.spec.template.spec.containers[0].env
        }
        for j in conveyor.jobs("m1")
    }
    assert (envs["deploy: [us]"]["REGION"], envs["deploy: [us]"]["CI_NODE_INDEX"]) == ("us", "2")
    assert envs["test 1/2"]["CI_NODE_TOTAL"] == "2"
    needs = {j["name"]: j.get("needs") for j in manifest["spec"]["jobs"]}
    assert needs["report"] == ["deploy: [eu]"]
    assert (
        job_status(done, "report")["startTime"]
        >= job_status(done, "deploy: [eu]")["completionTime"]
    )


def test_a_run_without_a_push_counts_changes_as_true(conveyor: Conveyor, seed: GitRepo) -> None:
    # docs.gitlab.com/ci/yaml/#ruleschanges: no git push event (web, API, schedule, trigger),
    # so every `changes` rule is true: test and build run for a templates-only commit, which
    # the same commit as a push leaves out (test_push_touching_only_templates_...).
    seed.commit("templates only", {"templates/svc.yml": "\n# api run\n"})
    conveyor.create(run("api-run", "go-app", ref="master"))  # pipelineSource api, no beforeSha
    done = conveyor.wait_finished("api-run")
    assert job_status(done, "test")["phase"] == "Succeeded"
    assert job_status(done, "build")["phase"] == "Succeeded"


def test_variables_expand_across_levels_in_the_jobs_env(conveyor: Conveyor, tmp_path: Path) -> None:
    # docs.gitlab.com/ci/variables/#use-cicd-variables-in-other-variables and
    # .../where_variables_can_be_used: a global variable sees the job's, job variables and the
    # environment's URL see CI_ENVIRONMENT_*; predefined variables from the repository.
    repo = new_repo(
        tmp_path / "vars",
        {
            ".gitlab-ci.yml": (
                "variables:\n  URL: https://$HOST/api\n"
                "  APP_HOST: $CI_PROJECT_NAME-$CI_ENVIRONMENT_SLUG.$DOMAIN\n"
                "  RAW: {value: 'a$HOST', expand: false}\n"
                "review:\n  variables: {HOST: example.com, DOMAIN: apps.example.com}\n"
                "  environment: {name: review, url: 'https://$APP_HOST'}\n"
                "  script: [echo $URL]\n"
            )
        },
    )
    code, manifest, stderr = import_gitlab(repo.path / ".gitlab-ci.yml", "vars", repo.url)
    assert code == 0, stderr
    conveyor.create(manifest)
    conveyor.create(run("v1", "vars", ref="main"))
    done = conveyor.wait_finished("v1")
    assert phase(done) == "Succeeded"
    (created,) = conveyor.jobs("v1")
    env = {e.name: e.value for e in created.spec.template.spec.containers[0].env}
    assert env["URL"] == "https://example.com/api"
    assert env["APP_HOST"] == "vars-review.apps.example.com"
    assert env["CI_ENVIRONMENT_URL"] == "https://vars-review.apps.example.com"
    assert env["RAW"] == "a$$HOST"  # Kubernetes turns $$ into $: the process sees a$HOST
    assert env["GITLAB_CI"] == "true"
    assert env["CI_PROJECT_PATH"].endswith("/vars")
