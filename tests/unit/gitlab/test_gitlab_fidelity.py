"""The GitLab fidelity corpus: small `.gitlab-ci.yml` cases, each with GitLab's documented
outcome, checked end to end through the importer, the rule evaluator and the Job's variables.

A case gives the file, the importer's exit status (0 lossless, 3 with omissions on stderr, 2
refused) and the lines stderr must hold; then, per run (ref, source, variables, what the push
changed), the jobs GitLab creates and, for each, the variables and the script the runner would
run. Each case names the GitLab documentation page it follows. To add a keyword or a behaviour,
add a case; the README's keyword table says the same in prose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.engine.artifacts import artifact_sources, cache_keys
from conveyor.engine.evaluation import effective_job, with_evaluation
from conveyor.engine.variables.job import job_variables
from conveyor.gitlab.context import GitFacts, rule_context
from conveyor.gitlab.importer import import_file
from conveyor.gitlab.rules import evaluate
from conveyor.gitlab.yamlload import LoadError
from conveyor.kube.jobspec import JobOptions

REPO = "https://gitlab.example.com/group/app.git"
# Git blob ids of the repository's files at the run's commit (cache:key:files hashes them).
BLOBS = {"Gemfile.lock": "1" * 40, "package.json": "2" * 40}


def blob_ids(files: Any) -> list[str | None]:
    return [BLOBS.get(f) for f in files]


SHA = "c" * 40
BEFORE = "b" * 40


@dataclass(frozen=True)
class Job:
    """What GitLab runs for one job: variables (a subset is checked), the script lines as the
    runner runs them (before_script, then script), and how it runs."""

    variables: dict[str, str] = field(default_factory=dict)
    script: tuple[str, ...] | None = None
    image: str | None = None
    when: str | None = None
    blocking: bool | None = None  # a manual job that holds the pipeline
    absent: tuple[str, ...] = ()  # variables the job must not have
    artifacts_from: tuple[str, ...] | None = None  # jobs whose artifacts it downloads
    cache_keys: tuple[tuple[str, ...], ...] | None = None  # per cache: keys tried, in order


@dataclass(frozen=True)
class Run:
    """One pipeline of the file; `jobs` None: the pipeline is not created (workflow, skip ci)."""

    jobs: dict[str, Job] | None
    ref: str = "main"
    source: str = "push"
    tag: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    changed: frozenset[str] | None = frozenset()
    files: frozenset[str] | None = None
    message: str = "a commit"


@dataclass(frozen=True)
class Case:
    id: str
    doc: str  # the GitLab documentation page of the behaviour
    yaml: str
    exit: int = 0
    stderr: tuple[str, ...] = ()  # substrings, each on some stderr line (or the error)
    absent: tuple[str, ...] = ()  # substrings no stderr line may hold (nothing lost there)
    runs: tuple[Run, ...] = ()
    files: dict[str, str] = field(default_factory=dict)  # other files of the repository


def convert(tmp_path: Path, case: Case) -> tuple[int, dict[str, Any] | None, list[str]]:
    for name, text in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(case.yaml)
    try:
        result = import_file(path, name="app", repo=REPO, root=tmp_path)
    except LoadError as exc:
        return 2, None, [f"{exc.file}:{exc.line}: {exc.reason}"]
    return (3 if result.omissions else 0), result.manifest, [str(o) for o in result.omissions]


def simulate(manifest: dict[str, Any], run_case: Run) -> dict[str, dict[str, Any]] | None:
    """The jobs of one pipeline and what each runs, or None when no pipeline is created."""
    spec = parse_pipeline_spec(manifest["spec"])
    revision = {"ref": run_case.ref, "sha": SHA}
    if run_case.source == "push":
        revision["beforeSha"] = BEFORE
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "app-1", "namespace": "team", "uid": "uid-1"},
            "spec": {
                "pipelineRef": {"name": "app"},
                "revision": revision,
                "pipelineSource": run_case.source,
                "variables": run_case.variables,
            },
        }
    )
    facts = GitFacts(
        ref_is_tag=run_case.tag,
        commit_message=run_case.message,
        default_branch="main",
        changed_paths=run_case.changed,
        files=run_case.files,
        project_path="group/app",
    )
    evaluation = evaluate(spec, rule_context(run, facts, {"CI_PROJECT_NAME": "app"}))
    if evaluation.skipped:
        return None
    run = with_evaluation(run, evaluation)
    out = {}
    present = [j.name for j in spec.jobs if j.name not in evaluation.excluded]
    for job in spec.jobs:
        if job.name in evaluation.excluded:
            continue
        effective = effective_job(job, evaluation)
        variables = job_variables(spec, run, job, JobOptions())
        out[job.name] = {
            "variables": variables.raw,
            "script": (*effective.before_script, *effective.script),
            "image": variables.expand_raw(job.image or spec.image or ""),
            "when": effective.when,
            "blocking": effective.blocking_manual,
            "artifacts_from": artifact_sources(spec, job.name, present),
            "cache_keys": tuple(
                cache_keys(cache, index, variables.value, blob_ids).restore_order
                for index, cache in enumerate(job.cache)
            ),
        }
    return out


def check_job(name: str, got: dict[str, Any], want: Job) -> None:
    for key, value in want.variables.items():
        assert got["variables"].get(key) == value, f"{name}: {key}"
    for key in want.absent:
        assert key not in got["variables"], f"{name}: {key} should not be set"
    if want.script is not None:
        assert got["script"] == want.script, name
    if want.image is not None:
        assert got["image"] == want.image, name
    if want.when is not None:
        assert got["when"] == want.when, name
    if want.artifacts_from is not None:
        assert got["artifacts_from"] == want.artifacts_from, name
    if want.cache_keys is not None:
        assert got["cache_keys"] == want.cache_keys, name
    if want.blocking is not None:
        assert got["blocking"] == want.blocking, name


MANUAL_EXIT_CODES = Job(when="manual", blocking=True)

CASES: list[Case] = [
    # --- variables ---------------------------------------------------------------------------
    Case(
        "variables-see-every-level",
        # docs.gitlab.com/ci/variables/#use-cicd-variables-in-other-variables
        "ci/variables/_index.md#use-cicd-variables-in-other-variables",
        "variables:\n  URL: https://$HOST/api\n"
        "job:\n  variables:\n    HOST: example.com\n  script: [curl $URL]\n",
        runs=(Run({"job": Job({"URL": "https://example.com/api"}, ("curl $URL",))}),),
    ),
    Case(
        "variables-order-does-not-matter",
        "ci/variables/_index.md#use-cicd-variables-in-other-variables",
        "job:\n  variables:\n    B: ${A}-x\n    A: a\n  script: [echo $B]\n",
        runs=(Run({"job": Job({"B": "a-x"})}),),
    ),
    Case(
        "variables-dollar-dollar-escapes",
        # "use $$ to escape the $ character"
        "ci/variables/_index.md#use-the--character-in-cicd-variables",
        "variables:\n  PRICE: $$5\n  LABEL: cost $PRICE\njob:\n  script: [echo $LABEL]\n",
        runs=(Run({"job": Job({"PRICE": "$5", "LABEL": "cost $5"})}),),
    ),
    Case(
        "variables-expand-false",
        "ci/yaml/_index.md#variablesexpand",
        "variables:\n  RAW: {value: 'p$ss$WORD', expand: false}\n  USE: '[$RAW]'\n"
        "  WORD: no\njob:\n  script: [login $RAW]\n",
        runs=(Run({"job": Job({"RAW": "p$ss$WORD", "USE": "[p$ss$WORD]"})}),),
    ),
    Case(
        "variables-description-options-value",
        "ci/yaml/_index.md#variablesdescription",
        "variables:\n  DEPLOY:\n    value: staging\n    options: [staging, production]\n"
        "    description: where to\njob:\n  script: [deploy $DEPLOY]\n",
        runs=(Run({"job": Job({"DEPLOY": "staging"})}),),
    ),
    Case(
        "variables-cycle-is-refused",
        # GitLab: "circular variable reference detected"
        "ci/variables/_index.md#use-cicd-variables-in-other-variables",
        "job:\n  variables:\n    A: $B\n    B: $A\n  script: [echo]\n",
        exit=2,
        stderr=("circular variable reference: A -> B -> A",),
    ),
    Case(
        "variables-self-reference-is-said",
        "ci/variables/_index.md#use-cicd-variables-in-other-variables",
        "variables:\n  PATH: /opt/bin:$PATH\njob:\n  script: [tool]\n",
        exit=3,
        stderr=("variables: variables: PATH refers to itself",),
        runs=(Run({"job": Job({"PATH": "/opt/bin:"})}),),
    ),
    Case(
        "variables-precedence-job-over-global-run-over-all",
        "ci/variables/_index.md#cicd-variable-precedence",
        "variables:\n  A: global\n  B: global\njob:\n  variables:\n    B: job\n    C: job\n"
        "  script: [env]\n",
        runs=(Run({"job": Job({"A": "global", "B": "job", "C": "run"})}, variables={"C": "run"}),),
    ),
    Case(
        "variables-environment-in-job-variables-and-url",
        "ci/variables/where_variables_can_be_used.md#gitlab-ciyml-file",
        "variables:\n  DOMAIN: apps.example.com\n"
        "deploy:\n  variables:\n    APP_HOST: $CI_PROJECT_NAME-$CI_ENVIRONMENT_SLUG.$DOMAIN\n"
        "  environment:\n    name: production\n    url: https://$APP_HOST\n"
        "  script: [deploy $APP_HOST]\n",
        runs=(
            Run(
                {
                    "deploy": Job(
                        {
                            "CI_ENVIRONMENT_NAME": "production",
                            "CI_ENVIRONMENT_SLUG": "production",
                            "APP_HOST": "app-production.apps.example.com",
                            "CI_ENVIRONMENT_URL": "https://app-production.apps.example.com",
                        }
                    )
                }
            ),
        ),
    ),
    Case(
        "variables-parallel-matrix",
        "ci/yaml/_index.md#parallelmatrix",
        "deploy:\n  script: [deploy $PROVIDER]\n  parallel:\n    matrix:\n"
        "      - PROVIDER: [aws, gcp]\n",
        runs=(
            Run(
                {
                    "deploy: [aws]": Job({"PROVIDER": "aws", "CI_NODE_INDEX": "1"}),
                    "deploy: [gcp]": Job({"PROVIDER": "gcp", "CI_NODE_TOTAL": "2"}),
                }
            ),
        ),
    ),
    # --- predefined variables ----------------------------------------------------------------
    Case(
        "predefined-from-the-repository-and-the-run",
        "ci/variables/predefined_variables.md",
        "job:\n  script: [echo $CI_PROJECT_PATH]\n",
        runs=(
            Run(
                {
                    "job": Job(
                        {
                            "GITLAB_CI": "true",
                            "CI_PROJECT_PATH": "group/app",
                            "CI_PROJECT_NAMESPACE": "group",
                            "CI_PROJECT_URL": "https://gitlab.example.com/group/app",
                            "CI_SERVER_URL": "https://gitlab.example.com",
                            "CI_SERVER_HOST": "gitlab.example.com",
                            "CI_COMMIT_BRANCH": "feature/x",
                            "CI_COMMIT_REF_SLUG": "feature-x",
                            "CI_COMMIT_BEFORE_SHA": BEFORE,
                            "CI_PIPELINE_SOURCE": "push",
                            "CI_DEFAULT_BRANCH": "main",
                            "CI_JOB_NAME": "job",
                            "CI_JOB_STAGE": "test",
                        },
                        absent=("CI_COMMIT_TAG", "CI_JOB_MANUAL"),
                    )
                },
                ref="feature/x",
            ),
            Run(
                {"job": Job({"CI_COMMIT_TAG": "v1", "CI_COMMIT_BEFORE_SHA": "0" * 40})},
                ref="v1",
                tag=True,
                source="web",
            ),
        ),
    ),
    Case(
        "predefined-that-cannot-exist-are-said-with-job-and-line",
        "ci/variables/predefined_variables.md",
        "release:\n  script:\n"
        "    - 'curl -H \"JOB-TOKEN: $CI_JOB_TOKEN\" $CI_API_V4_URL/projects'\n",
        exit=3,
        stderr=(
            "release: script: Conveyor has no GitLab API: CI_API_V4_URL is not set",
            "CI_JOB_TOKEN is not set",
            ".gitlab-ci.yml:2)",
        ),
    ),
    Case(
        "predefined-merge-request-pipelines-never-happen",
        "ci/pipelines/merge_request_pipelines.md",
        "job:\n  script: [echo]\n  rules:\n"
        '    - if: $CI_PIPELINE_SOURCE == "merge_request_event"\n',
        exit=3,
        stderr=("job: rules: Conveyor runs no merge request pipelines",),
    ),
    # --- rules, only/except, workflow ----------------------------------------------------------
    Case(
        "rules-first-match-decides-and-sets-variables",
        "ci/yaml/_index.md#rules",
        "job:\n  variables:\n    TARGET: test\n  script: [deploy $TARGET]\n  rules:\n"
        '    - if: $CI_COMMIT_BRANCH == "main"\n      variables: {TARGET: prod}\n'
        "    - if: $CI_COMMIT_TAG\n      when: never\n    - when: manual\n",
        runs=(
            Run({"job": Job({"TARGET": "prod"}, when="on_success")}),
            Run({}, ref="v1", tag=True),
            Run({"job": Job({"TARGET": "test"}, when="manual", blocking=True)}, ref="dev"),
        ),
    ),
    Case(
        "rules-reference-is-flattened",
        "ci/yaml/yaml_optimization.md#reference-tags",
        ".rules:\n  rules:\n    - if: $CI_COMMIT_TAG\n      when: never\n"
        "job:\n  script: [test]\n  rules:\n    - !reference [.rules, rules]\n    - when: always\n",
        runs=(Run({"job": Job(when="always")}), Run({}, ref="v1", tag=True)),
    ),
    Case(
        "rules-changes-only-for-pushes",
        # "rules: changes always evaluates to true when there is no Git push event"
        "ci/yaml/_index.md#ruleschanges",
        "go:\n  script: [go test]\n  rules:\n    - changes: [src/**/*.go]\n"
        "docs:\n  script: [make docs]\n  only:\n    changes: [docs/*]\n",
        runs=(
            Run({"go": Job()}, changed=frozenset({"src/a/b.go"})),
            Run({"docs": Job()}, changed=frozenset({"docs/x.md"})),
            Run({"go": Job(), "docs": Job()}, source="web", changed=frozenset()),
            Run({"go": Job(), "docs": Job()}, source="schedule", changed=frozenset()),
            Run({"go": Job(), "docs": Job()}, source="api", changed=frozenset()),
            Run({"go": Job(), "docs": Job()}, source="trigger", changed=frozenset()),
            Run({"go": Job(), "docs": Job()}, changed=None),  # a new branch
        ),
    ),
    Case(
        "rules-exists",
        "ci/yaml/_index.md#rulesexists",
        "docker:\n  script: [docker build .]\n  rules:\n    - exists: [Dockerfile]\n",
        runs=(
            Run({"docker": Job()}, files=frozenset({"Dockerfile"})),
            Run({}, files=frozenset({"README.md"})),
        ),
    ),
    Case(
        "rules-manual-blocks-job-manual-does-not",
        "ci/jobs/job_control.md#types-of-manual-jobs",
        "from-rules:\n  script: [x]\n  rules:\n    - when: manual\n"
        "optional:\n  script: [x]\n  when: manual\n"
        "tolerant:\n  script: [x]\n  when: manual\n  allow_failure: {exit_codes: [3]}\n",
        runs=(
            Run(
                {
                    "from-rules": Job(when="manual", blocking=True),
                    "optional": Job(when="manual", blocking=False),
                    # only allow_failure: true makes a manual job optional
                    "tolerant": MANUAL_EXIT_CODES,
                }
            ),
        ),
    ),
    Case(
        "only-except-defaults-to-branches-and-tags",
        "ci/yaml/deprecated_keywords.md#only--except",
        "job:\n  script: [x]\nmain-only:\n  script: [x]\n  only: [main]\n"
        "not-tags:\n  script: [x]\n  except: [tags]\n"
        "nightly:\n  script: [x]\n  only: [schedules]\n",
        runs=(
            Run({"job": Job(), "main-only": Job(), "not-tags": Job()}),
            Run({"job": Job()}, ref="v1", tag=True),
            Run(
                {"job": Job(), "main-only": Job(), "not-tags": Job(), "nightly": Job()},
                source="schedule",
            ),
        ),
    ),
    Case(
        "only-variables",
        "ci/yaml/deprecated_keywords.md#onlyvariables--exceptvariables",
        'job:\n  script: [x]\n  only:\n    variables: [$RELEASE == "yes"]\n',
        runs=(Run({}), Run({"job": Job()}, variables={"RELEASE": "yes"})),
    ),
    Case(
        "workflow-rules-decide-whether-a-pipeline-is-created",
        "ci/yaml/_index.md#workflowrules",
        "workflow:\n  rules:\n    - if: $CI_COMMIT_TAG\n      when: never\n"
        '    - if: $CI_COMMIT_BRANCH == "main"\n      variables: {ENV: prod}\n'
        "    - when: always\nvariables:\n  ENV: dev\n"
        "job:\n  script: [deploy $ENV]\nown:\n  variables: {ENV: own}\n  script: [x]\n",
        runs=(
            Run({"job": Job({"ENV": "prod"}), "own": Job({"ENV": "own"})}),
            Run({"job": Job({"ENV": "dev"}), "own": Job({"ENV": "own"})}, ref="dev"),
            Run(None, ref="v1", tag=True),
        ),
    ),
    Case(
        "skip-ci-skips-pushes-only",
        "ci/pipelines/_index.md#skip-a-pipeline",
        "job:\n  script: [x]\n",
        runs=(
            Run(None, message="docs [skip ci]"),
            Run({"job": Job()}, message="docs [skip ci]", source="web"),
        ),
    ),
    Case(
        "workflow-name-is-said",
        "ci/yaml/_index.md#workflowname",
        "workflow:\n  name: Nightly\njob:\n  script: [x]\n",
        exit=3,
        stderr=("workflow: name: not supported, dropped",),
    ),
    Case(
        "rules-needs-and-interruptible-are-said",
        "ci/yaml/_index.md#rulesneeds",
        "a:\n  script: [x]\nb:\n  script: [x]\n  rules:\n    - needs: [a]\n"
        "      interruptible: true\n",
        exit=3,
        stderr=("b: rules[0]:needs: not supported", "b: rules[0]:interruptible: not supported"),
    ),
    # --- jobs: scripts, defaults, inherit, extends ---------------------------------------------
    Case(
        "default-and-inherit",
        "ci/yaml/_index.md#inherit",
        "default:\n  image: ruby:3.3\n  before_script: [bundle install]\n"
        "variables:\n  G: g\n"
        "inherits:\n  script: [rake]\n"
        "none:\n  script: [lint]\n  inherit:\n    default: false\n"
        "some:\n  script: [check]\n  inherit:\n    default: [before_script]\n",
        runs=(
            Run(
                {
                    "inherits": Job(image="ruby:3.3", script=("bundle install", "rake")),
                    "none": Job(image="", script=("lint",)),  # the runner's default image
                    "some": Job(image="", script=("bundle install", "check")),
                }
            ),
        ),
    ),
    Case(
        "inherit-variables-is-said",
        "ci/yaml/_index.md#inheritvariables",
        "variables:\n  G: g\njob:\n  script: [x]\n  inherit:\n    variables: false\n",
        exit=3,
        stderr=("job: inherit: inherit:variables not supported",),
    ),
    Case(
        "extends-merges-maps-and-replaces-lists",
        "ci/yaml/yaml_optimization.md#use-extends-to-reuse-configuration-sections",
        ".base:\n  variables: {A: '1', B: '2'}\n  script: [base]\n"
        "job:\n  extends: .base\n  variables: {B: null, C: '3'}\n  script: [own, [nested]]\n",
        runs=(Run({"job": Job({"A": "1", "C": "3"}, ("own", "nested"), absent=("B",))}),),
    ),
    Case(
        "extends-of-an-unknown-key-names-it-and-the-include",
        "ci/yaml/_index.md#extends",
        "job:\n  extends: .from-another-file\n  script: [x]\n",
        exit=2,
        stderr=("unknown key in extends: .from-another-file", "needs the `include`"),
    ),
    Case(
        "anchors-and-merge-keys",
        "ci/yaml/yaml_optimization.md#anchors",
        ".common: &common\n  before_script: [setup]\n  variables: {A: a}\n"
        "job:\n  <<: *common\n  script: [run]\n",
        runs=(Run({"job": Job({"A": "a"}, ("setup", "run"))}),),
    ),
    Case(
        "include-local",
        "ci/yaml/_index.md#includelocal",
        "include:\n  - local: ci/jobs.yml\nstages: [build, test]\n",
        files={"ci/jobs.yml": "build:\n  stage: build\n  script: [make]\n"},
        runs=(Run({"build": Job(script=("make",))}),),
    ),
    Case(
        "include-remote-template-project-component-are-said",
        "ci/yaml/_index.md#include",
        "include:\n  - remote: https://example.com/ci.yml\n  - template: Jobs/SAST.gitlab-ci.yml\n"
        "  - project: group/ci\n    file: base.yml\n  - component: $CI_SERVER_FQDN/g/c/x@1\n"
        "job:\n  script: [x]\n",
        exit=3,
        stderr=(
            "include: remote: remote include",
            "include: template: template include",
            "include: project: project include",
            "include: component: component include",
        ),
    ),
    Case(
        "spec-header-is-refused",
        "ci/yaml/_index.md#spec",
        "spec:\n  inputs:\n    stage: {default: test}\n---\njob:\n  script: [x]\n",
        exit=2,
        stderr=("the spec: header",),
    ),
    Case(
        "stages-pre-post-and-legacy-types",
        "ci/yaml/_index.md#stage-pre",
        "types: [build]\nfirst:\n  stage: .pre\n  script: [x]\nb:\n  type: build\n  script: [x]\n",
        runs=(Run({"first": Job(), "b": Job()}),),
    ),
    Case(
        "legacy-globals-are-defaults",
        "ci/yaml/deprecated_keywords.md#globally-defined-image-services-cache-before_script"
        "-after_script",
        "image: alpine:3\nbefore_script: [echo hi]\njob:\n  script: [x]\n",
        runs=(Run({"job": Job(image="alpine:3", script=("echo hi", "x"))}),),
    ),
    # --- lossless job keywords -----------------------------------------------------------------
    Case(
        "lossless-job-keywords",
        "ci/yaml/_index.md",
        "stages: [build, deploy]\n"
        "build:\n  stage: build\n  image: {name: 'golang:1', entrypoint: ['']}\n"
        "  services: [{name: 'postgres:16', alias: db}]\n  script: [make]\n"
        "  after_script: [cleanup]\n  retry: {max: 2, when: [script_failure]}\n"
        "  timeout: 1h 30m\n  interruptible: true\n  allow_failure: true\n"
        "deploy:\n  stage: deploy\n  needs: [build, {job: lint, optional: true},"
        " {job: build, artifacts: false}]\n  script: [deploy]\n"
        "  environment: {name: production, url: 'https://example.com'}\n"
        "  resource_group: production\n  dependencies: []\n"
        "later:\n  stage: deploy\n  when: delayed\n  start_in: 30 minutes\n  script: [x]\n"
        "cleanup:\n  stage: .post\n  when: always\n  script: [x]\n"
        "on-failure:\n  stage: .post\n  when: on_failure\n  script: [x]\n",
        runs=(
            Run(
                {
                    "build": Job(image="golang:1"),
                    "deploy": Job({"CI_ENVIRONMENT_URL": "https://example.com"}),
                    "later": Job(when="delayed"),
                    "cleanup": Job(when="always"),
                    "on-failure": Job(when="on_failure"),
                }
            ),
        ),
    ),
    # --- approximated or refused keywords, each said ------------------------------------------
    Case(
        "dependencies-narrow-the-artifacts-of-earlier-stages",
        "ci/yaml/_index.md#dependencies",
        "build osx:\n  stage: build\n  script: [make build:osx]\n"
        "  artifacts: {paths: [binaries/]}\n"
        "build linux:\n  stage: build\n  script: [make build:linux]\n"
        "  artifacts: {paths: [binaries/]}\n"
        "test osx:\n  stage: test\n  script: [make test:osx]\n  dependencies: [build osx]\n"
        "test linux:\n  stage: test\n  script: [make test:linux]\n"
        "  dependencies: [build linux]\n"
        "deploy:\n  stage: deploy\n  script: [make deploy]\n"
        "no artifacts:\n  stage: deploy\n  script: [x]\n  dependencies: []\n",
        runs=(
            Run(
                {
                    "build osx": Job(artifacts_from=()),
                    "build linux": Job(artifacts_from=()),
                    "test osx": Job(artifacts_from=("build osx",)),
                    "test linux": Job(artifacts_from=("build linux",)),
                    # "downloads artifacts from all previous jobs because of the stage
                    # precedence"
                    "deploy": Job(
                        artifacts_from=("build osx", "build linux", "test osx", "test linux")
                    ),
                    "no artifacts": Job(artifacts_from=()),
                }
            ),
        ),
    ),
    Case(
        "needs-artifacts-true-and-false",
        "ci/yaml/_index.md#needsartifacts",
        "build_job1:\n  stage: build\n  script: [x]\n  artifacts: {paths: [a]}\n"
        "build_job2:\n  stage: build\n  script: [x]\n  artifacts: {paths: [b]}\n"
        "build_job3:\n  stage: build\n  script: [x]\n  artifacts: {paths: [c]}\n"
        "test-job1:\n  stage: test\n  script: [x]\n"
        "  needs: [{job: build_job1, artifacts: true}]\n"
        "test-job2:\n  stage: test\n  script: [x]\n"
        "  needs: [{job: build_job2, artifacts: false}]\n"
        "test-job3:\n  script: [x]\n  needs:\n    - {job: build_job1, artifacts: true}\n"
        "    - {job: build_job2}\n    - build_job3\n"
        "test-job4:\n  script: [x]\n  needs: []\n",
        runs=(
            Run(
                {
                    "build_job1": Job(),
                    "build_job2": Job(),
                    "build_job3": Job(),
                    "test-job1": Job(artifacts_from=("build_job1",)),
                    "test-job2": Job(artifacts_from=()),
                    "test-job3": Job(artifacts_from=("build_job1", "build_job2", "build_job3")),
                    "test-job4": Job(artifacts_from=()),
                }
            ),
        ),
    ),
    Case(
        "dependencies-must-be-part-of-needs",
        "ci/yaml/_index.md#dependencies",
        "build1:\n  stage: build\n  script: [x]\nbuild2:\n  stage: build\n  script: [x]\n"
        "test1:\n  script: [x]\n  needs: [build1]\n  dependencies: [build2]\n",
        exit=2,
        stderr=("'build2' should be part of needs",),
    ),
    Case(
        "dependencies-of-a-later-stage-are-refused",
        "ci/yaml/_index.md#dependencies",
        "build:\n  stage: build\n  script: [x]\n  dependencies: [deploy]\n"
        "deploy:\n  stage: deploy\n  script: [x]\n",
        exit=2,
        stderr=("dependencies: 'deploy' is not in an earlier stage",),
    ),
    Case(
        "a-job-excluded-by-rules-gives-no-artifacts",
        "ci/yaml/_index.md#dependencies",
        "build:\n  stage: build\n  script: [x]\n  rules: [{if: $BUILD}]\n"
        "lint:\n  stage: build\n  script: [x]\ntest:\n  script: [x]\n",
        runs=(
            Run({"lint": Job(), "test": Job(artifacts_from=("lint",))}),
            Run(
                {"build": Job(), "lint": Job(), "test": Job(artifacts_from=("build", "lint"))},
                variables={"BUILD": "1"},
            ),
        ),
    ),
    Case(
        "artifacts-keywords-are-kept",
        "ci/yaml/_index.md#artifacts",
        "build:\n  stage: build\n  script: [make]\n  artifacts:\n    name: $CI_JOB_NAME\n"
        "    paths: [bin/]\n    exclude: ['bin/**/*.o']\n    untracked: true\n"
        "    when: always\n    expire_in: 1 week\n    expose_as: binaries\n"
        "    reports: {junit: [report.xml], container_scanning: gl-cs.json, sast: sast.json}\n",
        exit=3,
        stderr=("build: artifacts:expose_as: not supported", "build: artifacts:reports:sast:"),
        absent=("build: artifacts: ", "build: artifacts:reports:junit"),
    ),
    Case(
        "cache-key-with-variables-and-fallbacks",
        "ci/caching/_index.md#use-a-fallback-cache-key",
        "variables:\n  CACHE_FALLBACK_KEY: fallback-key\n"
        "job:\n  script: [x]\n  cache:\n    key: cache-$CI_COMMIT_REF_SLUG\n"
        "    fallback_keys: [cache-$CI_DEFAULT_BRANCH, cache-default]\n    paths: [binaries/]\n",
        runs=(
            Run(
                {
                    "job": Job(
                        cache_keys=(
                            (
                                "cache-feature-x",
                                "cache-main",
                                "cache-default",
                                "fallback-key",
                            ),
                        )
                    )
                },
                ref="feature/x",
            ),
        ),
    ),
    Case(
        "cache-key-files-and-prefix-and-a-list-of-caches",
        "ci/yaml/_index.md#cachekeyfiles",
        "job:\n  script: [x]\n  cache:\n    - key: {files: [Gemfile.lock, package.json]}\n"
        "      paths: [vendor/ruby, node_modules]\n"
        "    - key: {files: [Gemfile.lock], prefix: $CI_JOB_NAME}\n      paths: [x]\n"
        "    - key: {files: [missing.lock]}\n      paths: [y]\n    - paths: [z]\n",
        runs=(
            Run(
                {
                    "job": Job(
                        cache_keys=(
                            # SHA-1 of the two blob ids, sorted, joined by '-'; prefix: the
                            # index and the files' names to their first '.'
                            (
                                "0_Gemfile_package-"
                                + hashlib.sha1(("1" * 40 + "-" + "2" * 40).encode()).hexdigest(),
                            ),
                            ("job-" + hashlib.sha1(("1" * 40).encode()).hexdigest(),),
                            ("2_missing-default",),  # no such file: GitLab's `default`
                            ("default",),  # no key
                        )
                    )
                }
            ),
        ),
    ),
    Case(
        "default-artifacts-and-cache-and-cache-none",
        "ci/yaml/_index.md#default",
        "default:\n  artifacts: {paths: [out/]}\n  cache: {key: k, paths: [.cache]}\n"
        "job:\n  script: [x]\nno-cache:\n  script: [x]\n  cache: []\n"
        "own:\n  script: [x]\n  inherit: {default: [cache]}\n",
        runs=(
            Run(
                {
                    "job": Job(cache_keys=(("k",),)),
                    "no-cache": Job(cache_keys=()),
                    "own": Job(cache_keys=(("k",),)),
                }
            ),
        ),
    ),
    Case(
        "pages-publishing-is-said",
        "user/project/pages/_index.md",
        "pages:\n  script: [hugo]\n",
        exit=3,
        stderr=("pages: pages: GitLab Pages publishing is not done",),
    ),
    Case(
        "runner-and-platform-keywords-are-said",
        "ci/yaml/_index.md",
        "job:\n  script: [x]\n  tags: [docker]\n  coverage: '/\\d+%/'\n"
        "  release: {tag_name: v1, description: d}\n  secrets: {A: {vault: a/b@c}}\n"
        "  id_tokens: {T: {aud: x}}\n  hooks: {pre_get_sources_script: [x]}\n"
        "  identity: google_cloud\n  manual_confirmation: sure?\n"
        "  dast_configuration: {site_profile: p}\n",
        exit=3,
        stderr=(
            "job: coverage:",
            "job: release: releases are not created",
            "job: secrets:",
            "job: id_tokens:",
            "job: hooks:",
            "job: identity:",
            "job: manual_confirmation:",
            "job: dast_configuration:",
        ),
        absent=("job: tags:",),  # kept: the operator maps tags to nodes
    ),
    Case(
        "trigger-jobs-are-dropped-and-said",
        "ci/yaml/_index.md#trigger",
        "child:\n  trigger: {include: child.yml}\njob:\n  script: [x]\n",
        exit=3,
        stderr=("child: trigger: downstream pipelines are not supported; job dropped",),
        runs=(Run({"job": Job()}),),
    ),
    Case(
        "environment-stop-and-lifecycle-are-said",
        "ci/yaml/_index.md#environment",
        "deploy:\n  script: [x]\n  environment:\n    name: review/$CI_COMMIT_REF_SLUG\n"
        "    on_stop: stop\n    auto_stop_in: 1 day\n    deployment_tier: development\n"
        "stop:\n  script: [x]\n  when: manual\n  environment: {name: review/x, action: stop}\n",
        exit=3,
        stderr=(
            "deploy: environment:on_stop:",
            "deploy: environment:auto_stop_in:",
            "deploy: environment:deployment_tier:",
        ),
        absent=("stop: environment:action",),
    ),
    Case(
        "image-and-service-options-are-said",
        "ci/yaml/_index.md#imagepull_policy",
        "job:\n  script: [x]\n  image: {name: alpine, pull_policy: if-not-present}\n"
        "  services: [{name: redis, pull_policy: always}]\n",
        exit=3,
        stderr=("job: image:pull_policy:", "job: services:pull_policy:"),
    ),
    Case(
        "default-keywords-without-equivalent-are-said",
        "ci/yaml/_index.md#default",
        "default:\n  tags: [docker]\n  artifacts: {paths: [x]}\n"
        "  hooks: {pre_get_sources_script: [x]}\n"
        "job:\n  script: [x]\n",
        exit=3,
        stderr=("default: hooks:",),
        absent=("default: tags:", "default: artifacts:"),
    ),
    Case(
        "auto-cancel-modes",
        "ci/yaml/_index.md#workflowauto_cancelon_new_commit",
        "workflow:\n  auto_cancel:\n    on_new_commit: interruptible\n    on_job_failure: all\n"
        "job:\n  script: [x]\n",
        exit=3,
        stderr=(
            "workflow: auto_cancel:on_new_commit: interruptible",
            "workflow: auto_cancel:on_job_failure: not supported",
        ),
    ),
    Case(
        "only-kubernetes-is-said",
        "ci/yaml/deprecated_keywords.md#onlykubernetes--exceptkubernetes",
        "job:\n  script: [x]\n  only:\n    kubernetes: active\n",
        exit=3,
        stderr=("job: only:kubernetes:",),
        runs=(Run({}),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fidelity(case: Case, tmp_path: Path) -> None:
    code, manifest, lines = convert(tmp_path, case)
    assert code == case.exit, lines
    for expected in case.stderr:
        assert any(expected in line for line in lines), f"{expected!r} not in {lines}"
    for unexpected in case.absent:
        assert not any(unexpected in line for line in lines), f"{unexpected!r} in {lines}"
    if manifest is None:
        assert not case.runs
        return
    for run_case in case.runs:
        jobs = simulate(manifest, run_case)
        if run_case.jobs is None:
            assert jobs is None, f"{run_case}: no pipeline expected"
            continue
        assert jobs is not None, f"{run_case}: the pipeline was skipped"
        assert set(jobs) == set(run_case.jobs), run_case
        for name, want in run_case.jobs.items():
            check_job(name, jobs[name], want)


def test_the_corpus_covers_the_keyword_table() -> None:
    """Every keyword the README's table lists as exact has a case here that uses it."""
    text = "\n".join(c.yaml for c in CASES)
    for keyword in (
        "variables", "default", "include", "stages", "workflow", "rules", "only", "except",
        "extends", "inherit", "image", "services", "before_script", "after_script", "script",
        "stage", "needs", "when", "allow_failure", "retry", "timeout", "interruptible",
        "environment", "resource_group", "parallel", "start_in", "dependencies", "artifacts",
        "cache", "tags", "coverage", "release", "secrets", "id_tokens", "hooks", "identity",
        "manual_confirmation", "dast_configuration", "trigger", "pages", "spec", "types", "type",
    ):  # fmt: skip
        assert f"{keyword}:" in text, keyword


# The keywords of GitLab's CI/CD YAML reference (docs.gitlab.com/ci/yaml/), global, header, job
# and deprecated ones, with their documented sub-keys.
REFERENCE_KEYWORDS = (
    "default", "include:local", "include:remote", "include:template", "include:project",
    "include:component", "include:artifact", "include:rules", "include:inputs", "stages",
    ".pre", ".post", "variables", "variables:value", "variables:description",
    "variables:options", "variables:expand", "workflow:rules", "workflow:rules:variables",
    "workflow:rules:auto_cancel", "workflow:name", "workflow:auto_cancel:on_new_commit",
    "workflow:auto_cancel:on_job_failure", "spec", "spec:inputs", "after_script",
    "allow_failure", "allow_failure:exit_codes", "artifacts", "before_script", "cache",
    "coverage", "dast_configuration", "dependencies", "environment", "environment:name",
    "environment:url", "environment:on_stop", "environment:action", "environment:auto_stop_in",
    "environment:kubernetes", "environment:deployment_tier", "extends", "hooks", "identity",
    "id_tokens", "image", "image:name", "image:entrypoint", "image:docker", "image:kubernetes",
    "image:pull_policy", "inherit:default", "inherit:variables", "interruptible",
    "manual_confirmation", "needs", "needs:artifacts", "needs:project", "needs:pipeline:job",
    "needs:optional", "needs:pipeline", "needs:parallel:matrix", "pages", "pages:publish",
    "pages:path_prefix", "pages:expire_in", "parallel", "parallel:matrix", "release",
    "resource_group", "retry", "retry:when", "retry:exit_codes", "rules", "rules:if",
    "rules:changes", "rules:changes:paths", "rules:changes:compare_to", "rules:exists",
    "rules:exists:paths", "rules:exists:project", "rules:allow_failure", "rules:needs",
    "rules:variables", "rules:interruptible", "run", "script", "secrets", "services",
    "services:docker", "services:kubernetes", "services:pull_policy", "stage", "tags",
    "timeout", "trigger", "when", "start_in", "only", "except", "only:kubernetes", "type",
    "types",
)  # fmt: skip


def test_the_readmes_keyword_table_lists_every_keyword_of_the_reference() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("### From `.gitlab-ci.yml`") : readme.index("### Deploys")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {kw for row in rows for kw in row.split("|")[1].replace("`", " ").split()}
    listed |= {kw.rstrip(",") for kw in set(listed)}
    missing = [kw for kw in REFERENCE_KEYWORDS if kw not in listed]
    assert not missing, f"not in the README's keyword table: {missing}"
