"""`conveyor import-gitlab`: real .gitlab-ci.yml files into Pipeline manifests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conveyor.api import Pipeline
from conveyor.api.crd import all_crds
from conveyor.cli.main import main
from conveyor.engine import validate_pipeline

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gitlab-ci"
FILES = sorted(FIXTURES.glob("*.yml"))
SEED = FIXTURES / "seed-go-app.gitlab-ci.yml"


def run_cli(capsys, *args):
    code = main(["import-gitlab", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def check_schema(value, schema, path="$"):
    """The parts of OpenAPI v3 validation the API server applies to our structural schema."""
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), path
        for name in schema.get("required", []):
            assert name in value, f"{path}.{name} is required"
        props = schema.get("properties")
        if "maxProperties" in schema:
            assert len(value) <= schema["maxProperties"], path
        for key, item in value.items():
            if props is not None:
                assert key in props, f"{path}.{key} is not in the schema"
                check_schema(item, props[key], f"{path}.{key}")
            elif "additionalProperties" in schema:
                check_schema(item, schema["additionalProperties"], f"{path}.{key}")
    elif kind == "array":
        assert isinstance(value, list), path
        assert len(value) <= schema["maxItems"], path
        assert len(value) >= schema.get("minItems", 0), path
        for i, item in enumerate(value):
            check_schema(item, schema["items"], f"{path}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), path
        assert len(value) <= schema["maxLength"], path
        assert len(value) >= schema.get("minLength", 0), path
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), f"{path}: {value!r}"
    elif kind == "integer":
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r}"


PIPELINE_SCHEMA = all_crds()["conveyor.dev_pipelines.yaml"]["spec"]["versions"][0]["schema"][
    "openAPIV3Schema"
]


def test_fixtures_are_present_with_their_license():
    assert (FIXTURES / "LICENSE").is_file()
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_every_conformance_file_converts(path, capsys):
    code, out, err = run_cli(
        capsys, path, "--root", FIXTURES, "--repo", "https://git.example/a.git"
    )
    assert code in (0, 3), err
    assert (code == 3) == bool(err.strip())
    for line in err.strip().splitlines():
        assert re.match(r"^[^:]+(:[^:]+)?: [\w:\[\]-]+: .+", line), line  # JOB: KEY: what
    manifest = yaml.safe_load(out)
    pipeline = Pipeline.from_dict(manifest)  # the strict parser: limits, patterns, enums
    assert pipeline.spec is not None
    assert validate_pipeline(pipeline.spec) == []
    check_schema(manifest["spec"], PIPELINE_SCHEMA["properties"]["spec"], "spec")
    assert manifest["apiVersion"] == "conveyor.dev/v1alpha1" and manifest["kind"] == "Pipeline"
    # Stable output.
    assert (
        run_cli(capsys, path, "--root", FIXTURES, "--repo", "https://git.example/a.git")[1] == out
    )


def test_seed_file(capsys):
    code, out, err = run_cli(capsys, SEED, "--root", FIXTURES, "--name", "go-app")
    assert code == 3
    assert "artifacts" not in err  # the scan job's report is kept (issue 13)
    manifest = yaml.safe_load(out)
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == "go-app"
    assert spec["stages"] == [".pre", "test", "build", "scan", "deploy", ".post"]
    assert spec["image"] == "$CI_REGISTRY/$DOCKER_IMAGE"
    assert spec["variables"]["KUBECONFIG"] == "/etc/deploy/config"
    assert spec["variables"]["GIT_SSL_NO_VERIFY"] == "true"
    jobs = {j["name"]: j for j in spec["jobs"]}
    assert list(jobs) == ["test", "build", "container-scan", "k8s-deploy-test", "k8s-deploy-prod"]
    assert {n: j["stage"] for n, j in jobs.items()} == {
        "test": "test",
        "build": "build",
        "container-scan": "scan",
        "k8s-deploy-test": "deploy",
        "k8s-deploy-prod": "deploy",
    }
    assert jobs["test"]["only"] == {"refs": ["master"], "changes": ["src/*.go"]}
    assert jobs["build"]["only"] == {"refs": ["master"], "changes": ["src/*"]}
    assert jobs["test"]["image"] == "golang:alpine"
    assert jobs["test"]["services"] == [{"name": "docker:stable-dind"}]  # from the globals
    scan = jobs["container-scan"]
    assert scan["allowFailure"] is True and scan["only"] == {"refs": ["master"]}
    assert scan["artifacts"] == {"paths": ["gl-container-scanning-report.json"]}
    assert scan["script"][0] == "docker run -d --name db arminc/clair-db:latest"
    # The merge key `<<: *k8s-deploy` brought image, services, before_script and script.
    for name, env, context in (
        ("k8s-deploy-test", "test", "deployer.test.domain.internal"),
        ("k8s-deploy-prod", "prod", "deployer.prod.domain.internal"),
    ):
        deploy = jobs[name]
        assert deploy["image"] == "$CI_REGISTRY/$KUBECTL_IMAGE"
        assert deploy["services"] == [{"name": "docker:dind"}]
        assert deploy["beforeScript"][0] == "mkdir -p /etc/deploy"
        assert deploy["script"][0] == "kubectl config use-context $KUBECONTEXT"
        assert deploy["variables"]["KUBECONTEXT"] == context
        assert deploy["environment"] == {"name": env, "url": f"https://go-app.{env}.domain.com"}
    assert jobs["k8s-deploy-prod"]["when"] == "manual"
    assert "when" not in jobs["k8s-deploy-test"]


def write(tmp_path, text, name=".gitlab-ci.yml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_extends_reference_default_include_and_needs(tmp_path, capsys):
    write(
        tmp_path,
        "\n".join(
            [
                ".base:",
                "  image: {name: 'alpine:3', entrypoint: ['']}",
                "  variables: {A: '1', B: '2'}",
                "  script: [base]",
                "  retry: {max: 2, when: [script_failure, scheduler_failure]}",
                ".setup:",
                "  before_script: [echo setup]",
            ]
        ),
        "ci/templates.yml",
    )
    path = write(
        tmp_path,
        """
include:
  - local: /ci/templates.yml
default:
  after_script: [cleanup]
  timeout: 3 hours 30 minutes
variables:
  GLOBAL: {value: "g", description: "shown in the UI"}
  NUMBER: 15
stages: [build, test]
"build:linux":
  stage: build
  extends: .base
  variables: {B: null, C: "3"}
  script:
    - !reference [.setup, before_script]
    - [nested, [deeper]]
  timeout: 1h 30m
unit tests:
  extends: .base
  needs: ["build:linux", {job: lint, optional: true}, {job: "build:linux", artifacts: false}]
  allow_failure: {exit_codes: [3, 1]}
  rules:
    - if: '$CI_COMMIT_BRANCH == "main"'
      when: manual
      allow_failure: true
    - changes: {paths: [src/**/*], compare_to: main}
  inherit: {default: false}
""",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 3, err
    assert "needs:artifacts" not in err  # kept (issue 13)
    assert "build:linux: retry:when: scheduler_failure" in err
    spec = yaml.safe_load(out)["spec"]
    assert spec["variables"] == {"GLOBAL": "g", "NUMBER": "15"}
    jobs = {j["name"]: j for j in spec["jobs"]}
    build = jobs["build:linux"]
    assert build["image"] == "alpine:3"
    assert build["variables"] == {"A": "1", "C": "3"}  # maps merged, null removes
    assert build["script"] == ["echo setup", "nested", "deeper"]  # arrays replaced, flattened
    assert build["afterScript"] == ["cleanup"] and build["timeout"] == "1h30m"
    assert build["retry"] == {"max": 2, "when": ["script_failure"]}
    unit = jobs["unit tests"]
    assert unit["stage"] == "test"
    assert unit["needs"] == ["build:linux"] and unit["optionalNeeds"] == ["lint"]
    assert unit["needsWithoutArtifacts"] == ["build:linux"]
    assert unit["allowFailureExitCodes"] == [1, 3]
    assert unit["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == "main"', "when": "manual", "allowFailure": True},
        {"changes": ["src/**/*"], "changesCompareTo": "main"},
    ]
    assert "afterScript" not in unit and "timeout" not in unit  # inherit: default: false
    Pipeline.from_dict(yaml.safe_load(out))


def test_lossless_file_exits_zero_and_unsupported_keys_are_listed(tmp_path, capsys):
    path = write(
        tmp_path,
        "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\n      when: never\n    - when: always\n"
        "job:\n  script: [make]\n  only: [main, /^release-/]\n",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert (code, err) == (0, "")
    spec = yaml.safe_load(out)["spec"]
    assert spec["workflow"] == {
        "rules": [{"if": "$CI_COMMIT_TAG", "when": "never"}, {"when": "always"}]
    }
    assert spec["jobs"][0]["only"] == {"refs": ["main", "/^release-/"]}
    path = write(
        tmp_path,
        "include: [{remote: 'https://x/y.yml'}, {template: Auto-DevOps.gitlab-ci.yml}]\n"
        "cache: {paths: [x]}\n"
        "job:\n  script: [make]\n  tags: [docker]\n"
        "trig:\n  trigger: other/project\n",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 3
    lines = err.strip().splitlines()
    assert lines == sorted(lines)
    for expected in (
        "include: remote: remote include https://x/y.yml not resolved",
        "include: template: template include Auto-DevOps.gitlab-ci.yml not resolved",
        "trig: trigger: downstream pipelines are not supported; job dropped",
    ):
        assert any(line.startswith(expected) for line in lines), expected
    assert not any(line.startswith("job: tags:") for line in lines)  # kept: mapped to nodes
    assert yaml.safe_load(out)["spec"]["jobs"][0]["tags"] == ["docker"]
    # The legacy top-level cache is every job's default cache.
    assert yaml.safe_load(out)["spec"]["jobs"][0]["cache"] == [{"paths": ["x"]}]
    assert [j["name"] for j in yaml.safe_load(out)["spec"]["jobs"]] == ["job"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("job:\n  script: [a\n", 3, "invalid YAML"),
        ("job:\n  script: [a]\n  extends: .missing\n", 3, "unknown key in extends: .missing"),
        (
            ".a:\n  extends: .b\n.b:\n  extends: .a\njob:\n  extends: .a\n  script: [x]\n",
            None,
            "extends cycle",
        ),
        ("job:\n  stage: nope\n  script: [x]\n", 2, "chosen stage nope does not exist"),
        ("job:\n  image: alpine\n", 2, "needs a script"),
        ("job:\n  script: [x]\n  rules:\n    - if: '$A =='\n", 4, "invalid if"),
        ("job:\n  script: [x]\n  needs: [ghost]\n", None, "does not exist in the pipeline"),
        ("job:\n  script: !reference [.nope, script]\n", 2, "!reference [.nope, script] not found"),
        ("include: missing.yml\njob:\n  script: [x]\n", 1, "does not exist"),
        ("job:\n  script: [x]\n  resource_group: 'a;b'\n", 3, "resource_group must be"),
    ],
)
def test_malformed_files_exit_2_naming_file_and_line(tmp_path, capsys, text, line, reason):
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 2 and out == ""
    match = re.match(rf"^{re.escape(str(path))}:(\d+): (.*)$", err.strip())
    assert match, err
    if line is not None:
        assert int(match.group(1)) == line, err
    assert reason in match.group(2), err


def test_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["import-gitlab", "--help"])
    out = capsys.readouterr().out
    assert "--repo URL" in out and "exit status" in out and "JOB: KEY" in out


def test_resource_groups_are_imported(tmp_path, capsys):
    path = write(
        tmp_path,
        "deploy:\n  script: [make deploy]\n  environment: production\n"
        "  resource_group: production\n"
        "review:\n  script: [make review]\n  resource_group: review/$CI_COMMIT_REF_SLUG\n",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    jobs = {j["name"]: j for j in yaml.safe_load(out)["spec"]["jobs"]}
    assert jobs["deploy"]["resourceGroup"] == "production"
    assert jobs["review"]["resourceGroup"] == "review/$CI_COMMIT_REF_SLUG"
    # Variables in the name are expanded when the run starts: nothing to report.
    assert code == 0 and "resource_group" not in err


def imported_jobs(tmp_path, capsys, text):
    path = write(tmp_path, text)
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    return code, {j["name"]: j for j in yaml.safe_load(out)["spec"]["jobs"]} if out else {}, err


def test_parallel_jobs_become_numbered_jobs_that_needs_wait_for_all(tmp_path, capsys):
    code, jobs, err = imported_jobs(
        tmp_path,
        capsys,
        "build:\n  stage: build\n  script: [make]\n"
        "test:\n  stage: test\n  script: [make test]\n  parallel: 3\n  variables: {A: b}\n"
        "report:\n  stage: test\n  script: [report]\n  needs: [test]\n",
    )
    assert code == 0 and "parallel" not in err, err
    assert [n for n in jobs if n.startswith("test")] == ["test 1/3", "test 2/3", "test 3/3"]
    assert jobs["test 2/3"]["variables"] == {"A": "b", "CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3"}
    assert jobs["report"]["needs"] == ["test 1/3", "test 2/3", "test 3/3"]


def test_a_matrix_makes_one_job_per_combination(tmp_path, capsys):
    code, jobs, err = imported_jobs(
        tmp_path,
        capsys,
        "deploy:\n  stage: deploy\n  script: [deploy]\n  parallel:\n    matrix:\n"
        "      - PROVIDER: aws\n        STACK: [monitoring, app1]\n"
        "      - PROVIDER: [gcp]\n        STACK: data\n"
        "smoke:\n  stage: deploy\n  script: [smoke]\n  needs:\n"
        "    - job: deploy\n      parallel:\n        matrix:\n          - PROVIDER: aws\n"
        "            STACK: app1\n"
        "all:\n  stage: deploy\n  script: [all]\n  needs: [deploy]\n",
    )
    assert code == 0, err
    names = [n for n in jobs if n.startswith("deploy")]
    assert names == ["deploy: [aws, monitoring]", "deploy: [aws, app1]", "deploy: [gcp, data]"]
    assert jobs["deploy: [aws, app1]"]["variables"] == {
        "PROVIDER": "aws", "STACK": "app1", "CI_NODE_INDEX": "2", "CI_NODE_TOTAL": "3",
    }  # fmt: skip
    assert jobs["smoke"]["needs"] == ["deploy: [aws, app1]"]
    assert jobs["all"]["needs"] == sorted(names)


@pytest.mark.parametrize(
    ("parallel", "words"),
    [
        ("0", "parallel must be 1-200"),
        ("201", "parallel must be 1-200"),
        ("{matrix: []}", "parallel is a number or {matrix: [...]}"),
        ("{matrix: [{A: [1, 2]}, {A: [2]}]}", "the matrix repeats a combination"),
        ("{matrix: [{A: " + str(list(range(15))) + ", B: " + str(list(range(15))) + "}]}",
         "the matrix makes 225 jobs (at most 200)"),
    ],
)  # fmt: skip
def test_bad_parallel_is_an_error_with_its_line(tmp_path, capsys, parallel, words):
    code, _, err = imported_jobs(tmp_path, capsys, f"t:\n  script: [x]\n  parallel: {parallel}\n")
    assert code != 0 and words in err and ":3" in err, err


def test_delayed_jobs_keep_their_delay(tmp_path, capsys):
    code, jobs, err = imported_jobs(
        tmp_path,
        capsys,
        "canary:\n  stage: deploy\n  script: [roll]\n  when: delayed\n  start_in: 30 minutes\n",
    )
    assert code == 0 and err == ""
    assert (jobs["canary"]["when"], jobs["canary"]["startIn"]) == ("delayed", "30m")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ("when: delayed\n", "when: delayed needs start_in"),
        ("when: delayed\n  start_in: 8 days\n", "start_in must be more than 0 and at most a week"),
        ("when: delayed\n  start_in: soon\n", "start_in:"),
    ],
)
def test_a_bad_delay_is_an_error_with_its_line(tmp_path, capsys, fields, words):
    code, _, err = imported_jobs(tmp_path, capsys, f"t:\n  script: [x]\n  {fields}")
    assert code != 0 and words in err, err


def test_interruptible_and_auto_cancel_are_imported(tmp_path, capsys):
    path = write(
        tmp_path,
        "workflow:\n  auto_cancel:\n    on_new_commit: conservative\n"
        "default:\n  interruptible: true\n"
        "test:\n  script: [make test]\n"
        "deploy:\n  stage: deploy\n  script: [deploy]\n  interruptible: false\n",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert (code, err) == (0, "")
    spec = yaml.safe_load(out)["spec"]
    assert spec["autoCancel"] == "conservative"
    jobs = {j["name"]: j for j in spec["jobs"]}
    assert jobs["test"]["interruptible"] is True and "interruptible" not in jobs["deploy"]


def test_auto_cancel_of_interruptible_jobs_only_is_approximated_and_said(tmp_path, capsys):
    path = write(
        tmp_path, "workflow:\n  auto_cancel:\n    on_new_commit: interruptible\nt:\n  script: [x]\n"
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 3 and "runs as conservative" in err
    assert yaml.safe_load(out)["spec"]["autoCancel"] == "conservative"


# Omissions over the conformance corpus before issue 13 (artifacts, cache and dependencies
# dropped): 65, of which 43 were artifacts (29), cache (10) and dependencies (4).
OMISSIONS_BEFORE_ARTIFACTS = 65


def test_artifacts_cache_and_dependencies_are_no_longer_omissions_of_the_corpus():
    from conveyor.gitlab.importer import import_file

    omissions = []
    for path in FILES:
        result = import_file(path, repo="https://git.example/a.git", root=FIXTURES)
        omissions += [str(o) for o in result.omissions]
    assert len(omissions) <= OMISSIONS_BEFORE_ARTIFACTS - 42, omissions
    lost = [o for o in omissions if ": artifacts:" in o or ": cache" in o or "dependencies" in o]
    # What is left: a report kind Conveyor does not read (dependency_scanning), said.
    assert lost == [
        "container_scanning: artifacts:reports:dependency_scanning: Conveyor reads only junit "
        "and container_scanning reports: this one is not kept (list it in artifacts:paths to "
        "keep the file)"
    ]


def test_artifacts_cache_and_needs_map_onto_the_api(tmp_path, capsys):
    path = write(
        tmp_path,
        """
stages: [build, test, deploy]
default:
  cache:
    key: $CI_COMMIT_REF_SLUG
    paths: [.npm/]
    policy: pull
build:
  stage: build
  parallel: 2
  script: [make]
  artifacts:
    paths: [dist/]
    exclude: [dist/*.map]
    expire_in: 2 hrs 20 min
    when: on_failure
    name: build-$CI_COMMIT_REF_SLUG
    reports:
      junit: [junit.xml, more/*.xml]
  cache:
    - key: {files: [package-lock.json], prefix: npm}
      paths: [node_modules/]
      fallback_keys: [npm-main]
      when: always
      unprotect: true
    - key: build
      untracked: true
      policy: push
test:
  stage: test
  script: [make test]
  dependencies: [build]
  cache: []
deploy:
  stage: deploy
  script: [deploy]
  needs: [{job: test, artifacts: false}, build]
  artifacts: {paths: [out], expire_in: never}
""",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert (code, err) == (0, ""), err
    manifest = yaml.safe_load(out)
    jobs = {j["name"]: j for j in manifest["spec"]["jobs"]}
    build = jobs["build 1/2"]
    assert build["artifacts"] == {
        "paths": ["dist/"],
        "exclude": ["dist/*.map"],
        "name": "build-$CI_COMMIT_REF_SLUG",
        "when": "on_failure",
        "expireIn": "2 hrs 20 min",
        "reports": {"junit": ["junit.xml", "more/*.xml"]},
    }
    assert build["cache"] == [
        {
            "keyFiles": {"files": ["package-lock.json"], "prefix": "npm"},
            "paths": ["node_modules/"],
            "when": "always",
            "fallbackKeys": ["npm-main"],
        },
        {"key": "build", "untracked": True, "policy": "push"},
    ]
    # dependencies on a parallel job: all its instances, as needs
    assert jobs["test"]["dependencies"] == ["build 1/2", "build 2/2"]
    assert "cache" not in jobs["test"]  # cache: [] turns default:cache off
    assert jobs["deploy"]["cache"] == [
        {"key": "$CI_COMMIT_REF_SLUG", "paths": [".npm/"], "policy": "pull"}
    ]
    assert jobs["deploy"]["needsWithoutArtifacts"] == ["test"]
    assert jobs["deploy"]["artifacts"] == {"paths": ["out"], "expireIn": "never"}
    check_schema(manifest["spec"], PIPELINE_SCHEMA["properties"]["spec"], "spec")
    Pipeline.from_dict(manifest)


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        ("  cache: {key: a/b, paths: [x]}\n", "must not contain '/'"),
        ("  cache: {key: ., paths: [x]}\n", "must not be '.' or '..'"),
        ("  artifacts: {paths: [x], expire_in: soon}\n", "artifacts:expire_in"),
        ("  artifacts: {paths: [x], when: manual}\n", "artifacts:when must be one of"),
        ("  cache: {paths: [x], when: sometimes}\n", "cache:when must be"),
        ("  dependencies: build\n", "dependencies must be job names"),
        ("  needs: [{job: b, artifacts: maybe}]\n", "needs:artifacts is true or false"),
        (
            "  cache: [{paths: [a]}, {paths: [b]}, {paths: [c]}, {paths: [d]}, {paths: [e]}]\n",
            "at most 4 caches",
        ),
    ],
)
def test_bad_artifacts_and_cache_are_refused_naming_the_field(tmp_path, capsys, job, reason):
    path = write(tmp_path, "b:\n  stage: build\n  script: [x]\njob:\n  script: [x]\n" + job)
    code, _, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 2 and reason in err, err


def test_a_cache_without_paths_is_said_and_left_out(tmp_path, capsys):
    path = write(tmp_path, "job:\n  script: [x]\n  cache: [{key: k}, {key: j, paths: [p]}]\n")
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 3 and "job: cache: cache 0 has no paths: nothing is cached" in err
    assert yaml.safe_load(out)["spec"]["jobs"][0]["cache"] == [{"key": "j", "paths": ["p"]}]


def test_cache_key_files_commits_is_approximated_by_the_files_content(tmp_path, capsys):
    path = write(
        tmp_path,
        "job:\n  script: [x]\n  cache:\n    key: {files_commits: [yarn.lock], prefix: y}\n"
        "    paths: [node_modules]\n",
    )
    code, out, err = run_cli(capsys, path, "--root", tmp_path)
    assert code == 3 and "job: cache:key:files_commits: approximated as cache:key:files" in err
    assert yaml.safe_load(out)["spec"]["jobs"][0]["cache"] == [
        {"keyFiles": {"files": ["yarn.lock"], "prefix": "y"}, "paths": ["node_modules"]}
    ]
