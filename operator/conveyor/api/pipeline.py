"""The Pipeline resource: a reusable, GitLab-CI-shaped pipeline definition.

Field names follow GitLab's keywords (camelCased) where the meaning is the same. The job model is a
plain list of optional fields so that later keywords (`rules`, `only`, `except`) slot in as more
fields without changing the engine's inputs.
"""

from __future__ import annotations

import datetime
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import ModelError, from_dict
from conveyor.api.conditions import Condition
from conveyor.api.durations import DURATION_PATTERN, parse_duration, parse_human_duration
from conveyor.api.fields import IntOrString, Validation, model, spec_field
from conveyor.api.meta import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, ObjectMeta

DEFAULT_STAGES = ("build", "test", "deploy")
DEFAULT_STAGE = "test"
DEFAULT_JOB_TIMEOUT_SECONDS = 3600

WHEN_VALUES = ("on_success", "on_failure", "always", "manual", "never")
JOB_WHEN_VALUES = (*WHEN_VALUES, "delayed")  # delayed: with startIn, a job's own `when` only
START_IN_MAX_SECONDS = 7 * 86400  # GitLab's limit: one week
RETRY_WHEN_VALUES = (
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "job_execution_timeout",
)

VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
GIT_URL_PATTERN = r"^((https?|ssh|git|file)://\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+)$"

# Bounds. They keep CEL cost estimates low and objects far below etcd's size limit.
RESOURCE_GROUP_MAX = 255
MAX_JOBS = 200
MAX_STAGES = 50
MAX_NEEDS = 50  # GitLab's own limit on needs per job
JOB_NAME_MAX = 255
STAGE_NAME_MAX = 255
IMAGE_MAX = 1024
SCRIPT_LINES_MAX = 500
SCRIPT_LINE_MAX = 32768
VARIABLES_MAX = 200
VARIABLE_VALUE_MAX = 8192
VARIABLE_NAME_MAX = 255
MAX_RULES = 50
MAX_GLOBS = 50  # GitLab's own limit on changes/exists patterns per rule
GLOB_MAX = 1024
EXPRESSION_MAX = 2048
REF_MAX = 255
WORKFLOW_WHEN_VALUES = ("always", "never")
AUTO_CANCEL_VALUES = ("none", "conservative")

_NAME_LIMIT: dict[str, Any] = {"max_length": JOB_NAME_MAX, "min_length": 1}


def _variables(description: str) -> Any:
    return spec_field(
        description,
        default_factory=dict,
        max_properties=VARIABLES_MAX,
        item_max_length=VARIABLE_VALUE_MAX,
    )


def _script(description: str, *, required: bool = False) -> Any:
    return spec_field(
        description,
        default_factory=None if required else tuple,
        min_items=1 if required else None,
        max_items=SCRIPT_LINES_MAX,
        item_max_length=SCRIPT_LINE_MAX,
    )


@model("Where job pods check the repository out from.")
@dataclass(frozen=True)
class Source:
    url: str = spec_field(
        "Git URL of the repository (https://, ssh://, git://, file:// or user@host:path).",
        max_length=2048,
        pattern=GIT_URL_PATTERN,
    )
    credentials_secret: str | None = spec_field(
        "Name of a Secret in the run's namespace with git credentials: keys `username` and "
        "`password` (kubernetes.io/basic-auth) or `ssh-privatekey` (kubernetes.io/ssh-auth).",
        default=None,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )


@model("A variable whose value comes from a Secret key; the value never appears in the spec.")
@dataclass(frozen=True)
class SecretVariable:
    name: str = spec_field(
        "Environment variable name.", max_length=VARIABLE_NAME_MAX, pattern=VARIABLE_NAME_PATTERN
    )
    secret_name: str = spec_field(
        "Name of the Secret in the run's namespace.",
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    key: str = spec_field("Key in the Secret.", max_length=253, pattern=SECRET_KEY_PATTERN)
    file: bool = spec_field(
        "GitLab file-type variable: mount the value as a file and set the variable to its path.",
        default=False,
        publish_default=False,
    )


def _secret_variables(description: str) -> Any:
    return spec_field(
        description,
        default_factory=tuple,
        max_items=100,
        list_type="map",
        list_map_keys=("name",),
    )


@model("A service container running beside the job's script (GitLab `services`).")
@dataclass(frozen=True)
class Service:
    name: str = spec_field("Image of the service, e.g. docker:27-dind.", max_length=IMAGE_MAX)
    alias: str | None = spec_field(
        "Host name (and container name) of the service; defaults to a slug of the image.",
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    command: tuple[str, ...] | None = spec_field(
        "Arguments for the service (GitLab `command`, the container's args).",
        default=None,
        max_items=64,
        item_max_length=4096,
    )
    entrypoint: tuple[str, ...] | None = spec_field(
        "Entrypoint override (GitLab `entrypoint`, the container's command).",
        default=None,
        max_items=64,
        item_max_length=4096,
    )
    variables: Mapping[str, str] = _variables("Variables for this service only.")


@model("When and how often a failed job is retried (GitLab `retry`).")
@dataclass(frozen=True)
class Retry:
    max: int = spec_field("Retries after the first attempt (0 to 2).", minimum=0, maximum=2)
    when: tuple[str, ...] = spec_field(
        "Failure kinds that are retried; default `always`.",
        default=("always",),
        max_items=len(RETRY_WHEN_VALUES),
        item_enum=RETRY_WHEN_VALUES,
        list_type="set",
    )
    exit_codes: tuple[int, ...] | None = spec_field(
        "Retry only when the script exited with one of these codes.",
        default=None,
        max_items=50,
        item_minimum=0,
        item_maximum=255,
        list_type="set",
    )


@model("Compute resources of the script container (passed through to the pod).")
@dataclass(frozen=True)
class Resources:
    requests: Mapping[str, IntOrString] | None = spec_field(
        "Resource requests, e.g. cpu: 500m.", default=None, max_properties=16
    )
    limits: Mapping[str, IntOrString] | None = spec_field(
        "Resource limits, e.g. memory: 1Gi.", default=None, max_properties=16
    )


ENVIRONMENT_START = "start"
ENVIRONMENT_STOP = "stop"
ENVIRONMENT_ACTIONS = (ENVIRONMENT_START, ENVIRONMENT_STOP)


MAX_NODE_SELECTOR = 32
MAX_TOLERATIONS = 32
LABEL_KEY_MAX = 317  # an optional DNS-subdomain prefix (253), '/', and a name (63)
LABEL_VALUE_MAX = 63


@model(
    "A taint the job's pod tolerates (passed through to the pod), e.g. the local clusters' real "
    "nodes: key conveyor.dev/real-node, effect NoSchedule.",
    validations=(
        Validation(
            rule="self.operator != 'Exists' || !has(self.value) || self.value == ''",
            message="value: must be empty with operator Exists",
        ),
        Validation(
            rule="has(self.key) || self.operator == 'Exists'",
            message="key: required unless operator is Exists (which then tolerates every taint)",
        ),
    ),
)
@dataclass(frozen=True)
class Toleration:
    key: str | None = spec_field(
        "Taint key; empty with operator Exists matches every key.",
        default=None,
        max_length=LABEL_KEY_MAX,
    )
    operator: str = spec_field(
        "`Equal` (key and value match) or `Exists` (the key matches).",
        default="Equal",
        enum=("Equal", "Exists"),
    )
    value: str | None = spec_field(
        "Taint value, with operator Equal.", default=None, max_length=LABEL_VALUE_MAX
    )
    effect: str | None = spec_field(
        "Taint effect to match; empty matches every effect.",
        default=None,
        enum=("NoSchedule", "PreferNoSchedule", "NoExecute"),
    )
    toleration_seconds: int | None = spec_field(
        "With effect NoExecute: how long the pod stays bound once the taint appears.",
        default=None,
        minimum=0,
    )

    def __post_init__(self) -> None:
        # The CEL rules above, for specs parsed outside the API server.
        if self.operator == "Exists" and self.value:
            raise ModelError("value", "must be empty with operator Exists")
        if self.key is None and self.operator != "Exists":
            raise ModelError("key", "required unless operator is Exists")


MAX_TAGS = 50  # runner tags of one job


def _node_selector(description: str) -> Any:
    return spec_field(
        description,
        default=None,
        max_properties=MAX_NODE_SELECTOR,
        item_max_length=LABEL_VALUE_MAX,
    )


def _tolerations(description: str) -> Any:
    return spec_field(description, default=None, max_items=MAX_TOLERATIONS)


@model("The environment a job deploys to (GitLab `environment`).")
@dataclass(frozen=True)
class Environment:
    name: str = spec_field(
        "Name of the Environment object the job deploys to; may contain variables "
        "($DEPLOY_TARGET), expanded with the job's: gates, locks and credentials follow the "
        "expanded name.",
        max_length=255,
    )
    url: str | None = spec_field("URL of the deployed environment.", default=None, max_length=2048)
    action: str = spec_field(
        "start (default): the job deploys; stop: it stops the environment (a native deploy "
        "deletes what the last deploy applied there, GitLab's on_stop job).",
        default=ENVIRONMENT_START,
        enum=ENVIRONMENT_ACTIONS,
    )


@model(
    "How a native deploy job renders and applies the repository's Kubernetes templates. "
    "Placeholders <NAME> and Jinja2 {{ NAME }} take the environment's variables and VERSION, "
    "HASH and the CI_* variables."
)
@dataclass(frozen=True)
class Deploy:
    templates: str = spec_field(
        "Folder of the repository holding the templates (*.yml, *.yaml).",
        default="templates/",
        max_length=1024,
    )
    version_paths: tuple[str, ...] = spec_field(
        "VERSION is <ref>_<sha> when the push changed a path under one of these, else latest "
        "(the article's rule).",
        default_factory=lambda: ("src/",),
        max_items=20,
        item_max_length=1024,
    )
    hash_paths: tuple[str, ...] = spec_field(
        "HASH is the commit when the push changed a path under one of these, else empty.",
        default_factory=lambda: ("templates/",),
        max_items=20,
        item_max_length=1024,
    )
    rollback: bool = spec_field(
        "If the rollout fails, apply the previously deployed revision again.", default=False
    )
    timeout: str | None = spec_field(
        "How long the rollout may take, e.g. 5m (default 5m).",
        default=None,
        max_length=32,
        pattern=DURATION_PATTERN,
    )


CACHE_MODES = ("min", "max")


@model(
    "BuildKit's build cache kept in a registry: imported before the build (--import-cache) and "
    "exported after it (--export-cache type=registry), so a later build of the same or a similar "
    "commit reuses its unchanged steps, on any node. The builder's registry credentials apply."
)
@dataclass(frozen=True)
class BuildCache:
    image: str = spec_field(
        "Image reference the cache is stored under, e.g. $CI_REGISTRY_IMAGE/cache:main; may "
        "contain variables. Its own reference: never the built image's tag.",
        max_length=IMAGE_MAX,
        min_length=1,
    )
    mode: str = spec_field(
        "min: the final image's layers only; max: every intermediate step too (multi-stage "
        "builds' build stages), larger but reused more.",
        default="max",
        enum=CACHE_MODES,
    )
    export: bool = spec_field(
        "Write the cache after the build (off: only read it, e.g. for merge requests).",
        default=True,
    )


@model(
    "A container image build with BuildKit, rootless: no privileged container, no Docker "
    "daemon. The job's checkout is the build context; the pushed image's digest is recorded in "
    "status.jobs[].imageDigest."
)
@dataclass(frozen=True)
class Build:
    image: str = spec_field(
        "Image to build and push, with its tag; may contain variables, e.g. "
        "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA.",
        max_length=IMAGE_MAX,
        min_length=1,
    )
    context: str = spec_field(
        "Folder of the checkout that is the build context.", default=".", max_length=1024
    )
    dockerfile: str = spec_field(
        "The Dockerfile, relative to the context.", default="Dockerfile", max_length=1024
    )
    build_args: Mapping[str, str] = _variables("Build arguments (--build-arg); may use variables.")
    push: bool = spec_field("Push the image (off: build only, as a check).", default=True)
    registry_secret: str | None = spec_field(
        "A kubernetes.io/dockerconfigjson Secret of the run's namespace with the registry's "
        "credentials; mounted for the builder only, never in the environment.",
        default=None,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    cache: BuildCache | None = spec_field(
        "Import and export BuildKit's cache to a registry (none: each build starts cold).",
        default=None,
    )


SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SCANNERS = ("trivy", "clair")


@model(
    "An image vulnerability scan with Trivy or Clair: the job fails when the image has "
    "vulnerabilities of the given severities (allowFailure: true makes them a warning). A count "
    "per severity is recorded in status.jobs[].findings; the findings themselves are in the "
    "job's log.",
    validations=(
        Validation(
            rule="has(self.image) != has(self.build)",
            message="scan: give exactly one of image and build",
        ),
    ),
)
@dataclass(frozen=True)
class Scan:
    image: str | None = spec_field(
        "Image to scan; may contain variables.", default=None, max_length=IMAGE_MAX, min_length=1
    )
    build: str | None = spec_field(
        "A build job of the pipeline: the image it pushed in this run is scanned by digest.",
        default=None,
        max_length=JOB_NAME_MAX,
        min_length=1,
    )
    severities: tuple[str, ...] = spec_field(
        "Severities that fail the scan.",
        default_factory=lambda: ("HIGH", "CRITICAL"),
        max_items=len(SEVERITIES),
        item_enum=SEVERITIES,
        list_type="set",
    )
    ignore_unfixed: bool = spec_field(
        "Leave out vulnerabilities that have no fix yet.", default=False
    )
    registry_secret: str | None = spec_field(
        "A kubernetes.io/dockerconfigjson Secret of the run's namespace, to read a private image.",
        default=None,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    scanner: str = spec_field(
        "The scanner: `trivy` (in the job's pod) or `clair` (the platform's Clair v4 service, "
        "the operator's --clair-url, asked by a small client in the job's pod).",
        default="trivy",
        enum=SCANNERS,
    )

    def __post_init__(self) -> None:
        if (self.image is None) == (self.build is None):
            raise ModelError("scan", "give exactly one of image and build")


# Artifacts and caches (GitLab `artifacts`, `cache`); the rules are in conveyor.engine.artifacts.
ARTIFACT_WHEN_VALUES = ("on_success", "on_failure", "always")
CACHE_POLICIES = ("pull", "push", "pull-push")
MAX_ARTIFACT_PATHS = 100
MAX_CACHES = 4  # GitLab's limit on caches per job
MAX_CACHE_KEY_FILES = 2  # GitLab's limit on cache:key:files
MAX_FALLBACK_KEYS = 5  # GitLab's limit on cache:fallback_keys
CACHE_KEY_MAX = 255
ARTIFACT_PATH_MAX = 1024
# GitLab's human durations (`1 week`, `3 hrs 30 min`, `2h20min`, `3 weeks and 2 days`) or
# `never`, for the API server; the units are checked by parse_human_duration.
_NUMBER_UNIT = r"[0-9]+(\.[0-9]+)?\s*[A-Za-z]*"
EXPIRE_IN_PATTERN = (
    rf"^\s*([Nn][Ee][Vv][Ee][Rr]|{_NUMBER_UNIT}(\s*,?\s*([Aa][Nn][Dd]\s+)?{_NUMBER_UNIT})*)\s*$"
)


def _paths(description: str) -> Any:
    return spec_field(
        description,
        default_factory=tuple,
        max_items=MAX_ARTIFACT_PATHS,
        item_max_length=ARTIFACT_PATH_MAX,
        item_min_length=1,
    )


@model(
    "Report files of a job, kept as artifacts and read by the operator (GitLab "
    "`artifacts:reports`). Paths are relative to the checkout and may be globs."
)
@dataclass(frozen=True)
class ArtifactReports:
    junit: tuple[str, ...] = _paths(
        "JUnit XML files: parsed into the test summary of status.jobs[].tests."
    )
    container_scanning: tuple[str, ...] = _paths(
        "GitLab container scanning reports (gl-container-scanning-report.json); a `scan` job "
        "keeps its own without saying so."
    )


@model("Files a job keeps after it ends, for later jobs and for people (GitLab `artifacts`).")
@dataclass(frozen=True)
class Artifacts:
    paths: tuple[str, ...] = _paths(
        "Files and folders to keep, relative to the checkout; globs (`*`, `**`) allowed."
    )
    exclude: tuple[str, ...] = _paths("Globs of files under `paths` that are not kept.")
    untracked: bool = spec_field(
        "Also keep every file git does not track (ignored files too, as GitLab does).",
        default=False,
        publish_default=False,
    )
    name: str | None = spec_field(
        "Name of the archive (GitLab default `artifacts`); may contain variables.",
        default=None,
        max_length=255,
        min_length=1,
    )
    when: str = spec_field(
        "Keep them when the job succeeds (default), fails, or always.",
        default="on_success",
        enum=ARTIFACT_WHEN_VALUES,
    )
    expire_in: str | None = spec_field(
        "How long they are kept, in GitLab's syntax (`30 mins`, `1 week`, `3h 30m`, `never`); "
        "default: the operator's --artifacts-expire-in.",
        default=None,
        max_length=64,
        min_length=1,
        pattern=EXPIRE_IN_PATTERN,
    )
    reports: ArtifactReports | None = spec_field("Report files the operator reads.", default=None)

    def __post_init__(self) -> None:
        if self.expire_in is not None and self.expire_in.strip().lower() != "never":
            try:
                parse_human_duration(self.expire_in)
            except ValueError as err:
                raise ModelError("expireIn", str(err)) from None


@model(
    "A cache key computed from files of the repository (GitLab `cache:key:files`): the SHA-1 of "
    "their git blob ids at the run's commit, after `prefix`."
)
@dataclass(frozen=True)
class CacheKeyFiles:
    files: tuple[str, ...] = spec_field(
        "One or two files (or globs) of the repository, e.g. Gemfile.lock.",
        min_items=1,
        max_items=MAX_CACHE_KEY_FILES,
        item_max_length=ARTIFACT_PATH_MAX,
        item_min_length=1,
    )
    prefix: str | None = spec_field(
        "Put before the files' hash (`PREFIX-HASH`); default (GitLab's): the cache's index in "
        "the job's caches and the files' names up to their first `.`, e.g. `0_Gemfile`. May "
        "contain variables.",
        default=None,
        max_length=CACHE_KEY_MAX,
        min_length=1,
    )


@model(
    "A cache: files kept between runs under a key and restored before the script (GitLab `cache`).",
    validations=(
        Validation(
            rule="!(has(self.key) && has(self.keyFiles))",
            message="cache: give key or keyFiles, not both",
        ),
    ),
)
@dataclass(frozen=True)
class Cache:
    paths: tuple[str, ...] = _paths("Files and folders cached, relative to the checkout.")
    key: str | None = spec_field(
        "The key (GitLab `cache:key` as a string); may contain variables. Default `default`. "
        "After variables it must not contain `/` nor be `.` or `..`.",
        default=None,
        max_length=CACHE_KEY_MAX,
        min_length=1,
    )
    key_files: CacheKeyFiles | None = spec_field(
        "The key computed from files (GitLab `cache:key:files` and `cache:key:prefix`).",
        default=None,
    )
    fallback_keys: tuple[str, ...] = spec_field(
        "Keys tried in order when no cache has the key (then the CACHE_FALLBACK_KEY variable).",
        default_factory=tuple,
        max_items=MAX_FALLBACK_KEYS,
        item_max_length=CACHE_KEY_MAX,
        item_min_length=1,
    )
    policy: str = spec_field(
        "pull: restore only; push: save only; pull-push (default): both.",
        default="pull-push",
        enum=CACHE_POLICIES,
    )
    when: str = spec_field(
        "Save it when the job succeeds (default), fails, or always.",
        default="on_success",
        enum=ARTIFACT_WHEN_VALUES,
    )
    untracked: bool = spec_field(
        "Also cache every file git does not track.", default=False, publish_default=False
    )

    def __post_init__(self) -> None:
        if self.key is not None and self.key_files is not None:
            raise ModelError("cache", "give key or keyFiles, not both")


def _globs(description: str) -> Any:
    return spec_field(
        description,
        default_factory=tuple,
        max_items=MAX_GLOBS,
        item_max_length=GLOB_MAX,
        item_min_length=1,
    )


def _if() -> Any:
    return spec_field(
        'GitLab CI expression, e.g. `$CI_COMMIT_BRANCH == "main" && $DEPLOY =~ /^yes$/i`.',
        default=None,
        json_name="if",
        max_length=EXPRESSION_MAX,
        min_length=1,
    )


def _compare_to() -> Any:
    return spec_field(
        "Ref (or SHA) that `changes` is compared with (GitLab `changes:compare_to`); default: "
        "the push's before SHA.",
        default=None,
        max_length=REF_MAX,
        min_length=1,
    )


@model(
    "One entry of a job's `rules`: every condition given must hold; the first matching rule "
    "decides whether and how the job runs, and no match excludes the job."
)
@dataclass(frozen=True)
class Rule:
    if_: str | None = _if()
    changes: tuple[str, ...] = _globs(
        "Globs (`*` stays in a directory, `**/` crosses them, `{a,b}` alternatives); the rule "
        "matches if a changed file matches one. Always true when the changes are unknown (new "
        "ref, tag, schedule)."
    )
    changes_compare_to: str | None = _compare_to()
    exists: tuple[str, ...] = _globs(
        "Globs; the rule matches if a file of the repository at the run's SHA matches one."
    )
    when: str | None = spec_field(
        "How the job runs when this rule matches (`never` excludes it); default: the job's.",
        default=None,
        enum=WHEN_VALUES,
    )
    allow_failure: bool | None = spec_field(
        "Overrides the job's allowFailure when this rule matches (a manual job from rules "
        "defaults to false: it blocks).",
        default=None,
    )
    variables: Mapping[str, str] = _variables(
        "Variables set on the job when this rule matches; they override the job's."
    )


@model("One entry of `workflow.rules`: the first match decides whether the run happens at all.")
@dataclass(frozen=True)
class WorkflowRule:
    if_: str | None = _if()
    changes: tuple[str, ...] = _globs("Globs of changed files, as in job rules.")
    changes_compare_to: str | None = _compare_to()
    exists: tuple[str, ...] = _globs("Globs of repository files, as in job rules.")
    when: str | None = spec_field(
        "`never` skips the run; default `always`.", default=None, enum=WORKFLOW_WHEN_VALUES
    )
    variables: Mapping[str, str] = _variables(
        "Pipeline variables set when this rule matches; they override the pipeline's."
    )


@model("Pipeline-level rules (GitLab `workflow`).")
@dataclass(frozen=True)
class Workflow:
    rules: tuple[WorkflowRule, ...] = spec_field(
        "Rules deciding whether a run happens; no match skips the run.",
        default_factory=tuple,
        max_items=MAX_RULES,
    )


@model(
    "GitLab `only`/`except` (deprecated by GitLab in favour of `rules`): the keys given must all "
    "hold; within one key, any entry is enough."
)
@dataclass(frozen=True)
class RefPolicy:
    refs: tuple[str, ...] = spec_field(
        "Branch or tag names, `/regex/` patterns, or keywords: branches, tags, pushes, api, web, "
        "triggers, schedules, pipelines, merge_requests, external, chat.",
        default_factory=tuple,
        max_items=MAX_GLOBS,
        item_max_length=REF_MAX,
        item_min_length=1,
    )
    changes: tuple[str, ...] = _globs("Globs of changed files; true when changes are unknown.")
    variables: tuple[str, ...] = spec_field(
        'Expressions like `$RELEASE == "yes"`; any true one is enough.',
        default_factory=tuple,
        max_items=MAX_GLOBS,
        item_max_length=EXPRESSION_MAX,
        item_min_length=1,
    )
    kubernetes: str | None = spec_field(
        "`active`: only when a Kubernetes integration is active (never, in Conveyor).",
        default=None,
        enum=("active",),
    )


@model(
    "One job of the pipeline.",
    validations=(
        Validation(
            rule="!has(self.needs) || !(self.name in self.needs)",
            message="needs: a job cannot need itself",
        ),
        Validation(
            rule="has(self.deploy) || has(self.build) || has(self.scan) "
            "|| (has(self.script) && size(self.script) > 0)",
            message="script: required (only a deploy, build or scan job has none)",
        ),
        Validation(
            rule="!has(self.scan) || !has(self.script) || size(self.script) == 0",
            message="scan: a scan job has no script",
        ),
        Validation(
            rule="[has(self.deploy), has(self.build), has(self.scan)].filter(x, x).size() <= 1",
            message="a job deploys, builds or scans: one of them",
        ),
        Validation(
            rule="!has(self.deploy) || !has(self.script) || size(self.script) == 0",
            message="deploy: a deploy job has no script",
        ),
        Validation(
            rule="!has(self.build) || !has(self.script) || size(self.script) == 0",
            message="build: a build job has no script",
        ),
        Validation(
            rule="(self.when == 'delayed') == has(self.startIn)",
            message="startIn: required with when: delayed, and only with it",
        ),
        Validation(
            rule="!has(self.deploy) || has(self.environment)",
            message="deploy: a deploy job needs an environment (environment.name)",
        ),
    ),
)
@dataclass(frozen=True)
class PipelineJob:
    name: str = spec_field("Job name, unique in the pipeline.", **_NAME_LIMIT)
    script: tuple[str, ...] = _script(
        "Shell commands run in order; the job fails at the first failing command. Required, "
        "unless the job is a native `deploy` or a `build` job."
    )
    stage: str = spec_field(
        "Stage the job belongs to; must be listed in the pipeline's stages.",
        default=DEFAULT_STAGE,
        max_length=STAGE_NAME_MAX,
        min_length=1,
    )
    image: str | None = spec_field(
        "Container image; defaults to the pipeline's image.", default=None, max_length=IMAGE_MAX
    )
    before_script: tuple[str, ...] = _script("Commands run before `script`, in the same shell.")
    after_script: tuple[str, ...] = _script(
        "Commands run after `script` whatever its result; their failure does not fail the job."
    )
    variables: Mapping[str, str] = _variables("Job variables; they override the pipeline's.")
    secret_variables: tuple[SecretVariable, ...] = _secret_variables(
        "Variables read from Secrets, for this job only."
    )
    services: tuple[Service, ...] = spec_field(
        "Service containers run beside the script as sidecars.",
        default_factory=tuple,
        max_items=10,
    )
    needs: tuple[str, ...] | None = spec_field(
        "Jobs this job waits for instead of the previous stages; [] starts at once.",
        default=None,
        max_items=MAX_NEEDS,
        item_max_length=JOB_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    when: str = spec_field(
        "When the job runs, given the outcome of the jobs before it; `delayed` runs it startIn "
        "after it could have started.",
        default="on_success",
        enum=JOB_WHEN_VALUES,
    )
    start_in: str | None = spec_field(
        "How long a `when: delayed` job waits once it could start, e.g. 30m (at most a week); "
        "`conveyor play` starts it at once.",
        default=None,
        max_length=32,
        pattern=DURATION_PATTERN,
    )
    interruptible: bool = spec_field(
        "GitLab `interruptible`: once this job has started, a newer run of the ref may still "
        "auto-cancel the run (see the pipeline's autoCancel).",
        default=False,
    )
    allow_failure: bool | None = spec_field(
        "Whether a failure of this job lets the pipeline succeed (with warnings). Default: true "
        "for `when: manual`, false otherwise.",
        default=None,
    )
    allow_failure_exit_codes: tuple[int, ...] = spec_field(
        "Tolerate a failure only when the script exits with one of these codes.",
        default_factory=tuple,
        max_items=50,
        item_minimum=0,
        item_maximum=255,
        list_type="set",
    )
    retry: Retry | None = spec_field("Retry policy for failed attempts.", default=None)
    timeout: str | None = spec_field(
        "Maximum duration of one attempt, like 1h30m, 90m or 45s (default 1h).",
        default=None,
        max_length=32,
        min_length=2,
        pattern=DURATION_PATTERN,
    )
    resources: Resources | None = spec_field("Resources of the script container.", default=None)
    service_account_name: str | None = spec_field(
        "Service account of the job's pod; the token is mounted only when this is set.",
        default=None,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    pod_labels: Mapping[str, str] = spec_field(
        "Labels added to the job's pod.",
        default_factory=dict,
        max_properties=64,
        item_max_length=63,
    )
    pod_annotations: Mapping[str, str] = spec_field(
        "Annotations added to the job's pod (e.g. for service meshes).",
        default_factory=dict,
        max_properties=64,
        item_max_length=8192,
    )
    node_selector: Mapping[str, str] | None = _node_selector(
        "Node labels the job's pod must run on (the pod's nodeSelector); replaces the "
        "pipeline's nodeSelector. E.g. conveyor.dev/node: real for the local clusters' real "
        "node."
    )
    tolerations: tuple[Toleration, ...] | None = _tolerations(
        "Taints the job's pod tolerates; replaces the pipeline's tolerations."
    )
    tags: tuple[str, ...] = spec_field(
        "GitLab runner tags: each adds to the pod's nodeSelector and tolerations what the "
        "operator maps it to (--tag-selector, --tag-toleration). A tag the operator does not "
        "map fails the job, naming the tag.",
        default_factory=tuple,
        max_items=MAX_TAGS,
        item_max_length=255,
        item_min_length=1,
        list_type="set",
    )
    environment: Environment | None = spec_field("Environment the job deploys to.", default=None)
    resource_group: str | None = spec_field(
        "GitLab `resource_group`: at most one job of this group runs at a time across the "
        "namespace's runs; the others wait. May contain variables ($CI_COMMIT_REF_SLUG), "
        "expanded with the job's.",
        default=None,
        max_length=RESOURCE_GROUP_MAX,
        min_length=1,
        pattern=r"^[A-Za-z0-9_./{}$ -]+$",
    )
    deploy: Deploy | None = spec_field(
        "A native deploy job: the operator renders the repository's templates at the run's "
        "commit and applies them to the job's environment (no script, no pod).",
        default=None,
    )
    build: Build | None = spec_field(
        "An image build job: BuildKit, rootless, builds the checkout and pushes the image (no "
        "script; the operator's builder image).",
        default=None,
    )
    scan: Scan | None = spec_field(
        "An image scan job: Trivy scans an image, or the image a build job of the run pushed "
        "(no script; the operator's scanner image).",
        default=None,
    )
    optional_needs: tuple[str, ...] = spec_field(
        "Needs that may be absent from the run (GitLab `needs: [{job, optional: true}]`): waited "
        "for when present, ignored when missing or excluded by rules. Any entry makes the job a "
        "`needs` job, as `needs` does.",
        default_factory=tuple,
        max_items=MAX_NEEDS,
        item_max_length=JOB_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    rules: tuple[Rule, ...] | None = spec_field(
        "GitLab `rules`: the first matching rule decides; no match excludes the job. Exclusive "
        "with only/except.",
        default=None,
        max_items=MAX_RULES,
    )
    only: RefPolicy | None = spec_field(
        "GitLab `only`; a job without rules, only and except runs for branches and tags.",
        default=None,
    )
    except_: RefPolicy | None = spec_field(
        "GitLab `except`: the job is excluded when every key given holds.",
        default=None,
        json_name="except",
    )
    artifacts: Artifacts | None = spec_field(
        "Files kept after the job (GitLab `artifacts`), passed on to later jobs.", default=None
    )
    dependencies: tuple[str, ...] | None = spec_field(
        "GitLab `dependencies`: the only jobs whose artifacts this job downloads ([]: none). "
        "Absent: every job of the earlier stages, or of `needs` for a needs job.",
        default=None,
        max_items=MAX_NEEDS,
        item_max_length=JOB_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    needs_without_artifacts: tuple[str, ...] = spec_field(
        "Needs whose artifacts this job does not download (GitLab `needs: [{job, artifacts: "
        "false}]`); each must be in needs or optionalNeeds.",
        default_factory=tuple,
        max_items=MAX_NEEDS,
        item_max_length=JOB_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    cache: tuple[Cache, ...] = spec_field(
        "Caches restored before the script and saved after it (GitLab `cache`, at most 4).",
        default_factory=tuple,
        max_items=MAX_CACHES,
    )

    def dag_needs(self, present: Container[str]) -> tuple[str, ...] | None:
        """The jobs this job waits for instead of stages, or None for a stage job: `needs`,
        plus the optional needs among `present` (the jobs that are in the run)."""
        if self.needs is None and not self.optional_needs:
            return None
        required = tuple(self.needs or ())
        return required + tuple(
            n for n in self.optional_needs if n in present and n not in required
        )

    def __post_init__(self) -> None:
        # The same rules as the CEL above, for specs parsed outside the API server (import).
        if (self.when == "delayed") != (self.start_in is not None):
            raise ModelError("startIn", "required with when: delayed, and only with it")
        if self.start_in is not None and not 0 < parse_duration(self.start_in) <= (
            START_IN_MAX_SECONDS
        ):
            raise ModelError("startIn", "must be more than 0s and at most a week (168h)")
        kinds = [k for k in (self.deploy, self.build, self.scan) if k is not None]
        if not kinds and not self.script:
            raise ModelError("script", "required (only a deploy, build or scan job has none)")
        if self.deploy is not None and self.script:
            raise ModelError("deploy", "a deploy job has no script")
        if self.build is not None and self.script:
            raise ModelError("build", "a build job has no script")
        if self.scan is not None and self.script:
            raise ModelError("scan", "a scan job has no script")
        if len(kinds) > 1:
            raise ModelError("deploy", "a job deploys, builds or scans: one of them")
        if self.deploy is not None and self.environment is None:
            raise ModelError("deploy", "a deploy job needs an environment (environment.name)")

    @property
    def is_manual(self) -> bool:
        return self.when == "manual"

    def failure_allowed(self, exit_code: int | None) -> bool:
        """GitLab's rule: allowFailure defaults to true for manual jobs; exit codes narrow it."""
        if self.allow_failure is not None:
            allowed = self.allow_failure
        else:
            allowed = self.is_manual and not self.allow_failure_exit_codes
        if allowed:
            return True
        return exit_code is not None and exit_code in self.allow_failure_exit_codes

    @property
    def blocking_manual(self) -> bool:
        """A manual job that holds later stages until it is played: allowFailure false, or
        only some exit codes allowed (GitLab: only `allow_failure: true` makes a manual job
        optional; with `exit_codes` its allow_failure is false)."""
        if not self.is_manual:
            return False
        if self.allow_failure is None:
            return bool(self.allow_failure_exit_codes)
        return not self.allow_failure

    def timeout_seconds(self) -> int:
        return parse_duration(self.timeout) if self.timeout else DEFAULT_JOB_TIMEOUT_SECONDS


# Triggers: what starts runs without anyone applying a PipelineRun (conveyor.triggers).
MAX_TRIGGER_BRANCHES = 50
MAX_TRACKED_REFS = 200  # branches (and, separately, tags) a poll trigger remembers in status
POLL_INTERVAL_MIN = 5
POLL_INTERVAL_MAX = 86400
SHA_PATTERN = r"^[0-9a-f]{40}$"


def _branch_globs(description: str) -> Any:
    return spec_field(
        description,
        default=("*",),
        min_items=1,
        max_items=MAX_TRIGGER_BRANCHES,
        item_max_length=REF_MAX,
        item_min_length=1,
        list_type="set",
    )


@model("Poll the source repository for new commits (needs spec.source).")
@dataclass(frozen=True)
class PollTrigger:
    interval_seconds: int = spec_field(
        "Seconds between two polls of the repository.",
        default=60,
        minimum=POLL_INTERVAL_MIN,
        maximum=POLL_INTERVAL_MAX,
    )
    branches: tuple[str, ...] = _branch_globs(
        "Branches whose new commits start a run: names or fnmatch globs (`main`, `release/*`; "
        "`*` also matches `/`). Default: every branch."
    )
    tags: bool = spec_field("New and moved tags also start runs.", default=False)


@model("A key of a Secret in the Pipeline's namespace.")
@dataclass(frozen=True)
class SecretKeyRef:
    name: str = spec_field(
        "Name of the Secret.", max_length=DNS_SUBDOMAIN_MAX, pattern=DNS_SUBDOMAIN_PATTERN
    )
    key: str = spec_field(
        "Key in the Secret.", default="token", max_length=253, pattern=SECRET_KEY_PATTERN
    )


@model(
    "Accept push webhooks from GitLab or GitHub at POST /hooks/<namespace>/<pipeline> of the "
    "operator's webhook endpoint."
)
@dataclass(frozen=True)
class WebhookTrigger:
    secret_ref: SecretKeyRef = spec_field(
        "The shared secret: GitLab's secret token, or GitHub's webhook secret (HMAC-SHA256). "
        "The Secret is <namespace>.<name> in the operator's credentials namespace "
        "(conveyor-system), out of the team's reach: whoever holds the token can say who pushed."
    )
    branches: tuple[str, ...] = _branch_globs(
        "Branches whose pushes start a run: names or fnmatch globs. Default: every branch; "
        "other pushes are acknowledged (204) without a run."
    )
    tags: bool = spec_field("Tag pushes also start runs.", default=False)


@model(
    "What starts runs of this pipeline on a push.",
    validations=(
        Validation(
            rule="has(self.poll) || has(self.webhook)",
            message="triggers: set poll, webhook or both",
        ),
    ),
)
@dataclass(frozen=True)
class Triggers:
    poll: PollTrigger | None = spec_field("Poll the repository.", default=None)
    webhook: WebhookTrigger | None = spec_field("Receive push webhooks.", default=None)


# CEL rules of the pipeline spec. Kept to list membership (`in`), which the API server costs at
# list size, and bounded by maxItems/maxLength above, so the estimate stays far below its limit.
# Only the stage rule is CEL: a rule for needs (jobs x needs x jobs) exceeds the API server's cost
# budget, and naming the bad entry in a messageExpression would too. The engine validates needs
# and cycles when a run starts and names the job (run Failed, reason InvalidPipeline).
STAGES_RULE = Validation(
    rule="self.jobs.all(j, !has(j.stage) || j.stage in self.stages)",
    message="jobs: a job's stage is not listed in stages",
    reason="FieldValueInvalid",
    field_path=".jobs",
)


@model(
    "The pipeline definition: source, stages, jobs and run policy.",
    validations=(STAGES_RULE,),
)
@dataclass(frozen=True)
class PipelineSpec:
    jobs: tuple[PipelineJob, ...] = spec_field(
        "The jobs; names are unique.",
        min_items=1,
        max_items=MAX_JOBS,
        list_type="map",
        list_map_keys=("name",),
    )
    source: Source | None = spec_field("Repository the jobs check out.", default=None)
    image: str | None = spec_field(
        "Default image of jobs that set none.", default=None, max_length=IMAGE_MAX
    )
    node_selector: Mapping[str, str] | None = _node_selector(
        "Default nodeSelector of the pods of jobs that set none."
    )
    tolerations: tuple[Toleration, ...] | None = _tolerations(
        "Default tolerations of the pods of jobs that set none."
    )
    variables: Mapping[str, str] = _variables(
        "Variables of every job (GitLab top-level variables)."
    )
    secret_variables: tuple[SecretVariable, ...] = _secret_variables(
        "Variables read from Secrets, for every job."
    )
    stages: tuple[str, ...] = spec_field(
        "Stages in the order they run.",
        default=DEFAULT_STAGES,
        min_items=1,
        max_items=MAX_STAGES,
        item_max_length=STAGE_NAME_MAX,
        item_min_length=1,
        list_type="set",
    )
    concurrency: int | None = spec_field(
        "Maximum runs of this pipeline in flight; others wait Pending, oldest first.",
        default=None,
        minimum=1,
        maximum=1000,
    )
    auto_cancel: str = spec_field(
        "GitLab's auto-cancel of redundant runs (`workflow:auto_cancel:on_new_commit`): "
        "`conservative` cancels a run when a newer run of the same ref is created, unless one "
        "of its jobs that is not `interruptible` has started; `none` never does.",
        default="none",
        enum=AUTO_CANCEL_VALUES,
    )
    history_limit: int = spec_field(
        "Finished runs kept per pipeline (older ones are deleted).",
        default=10,
        minimum=0,
        maximum=1000,
    )
    workflow: Workflow | None = spec_field(
        "Pipeline-level rules (GitLab `workflow:rules`) deciding whether a run happens.",
        default=None,
    )
    timeout: str | None = spec_field(
        "Maximum duration of a whole run, like 2h.",
        default=None,
        max_length=32,
        min_length=2,
        pattern=DURATION_PATTERN,
    )
    triggers: Triggers | None = spec_field(
        "Start runs on pushes: by polling the repository and/or by receiving webhooks. Each push "
        "starts one run (pipelineSource push), however many times it is seen.",
        default=None,
    )

    def job(self, name: str) -> PipelineJob | None:
        return next((j for j in self.jobs if j.name == name), None)

    def timeout_seconds(self) -> int | None:
        return parse_duration(self.timeout) if self.timeout else None


@model("What the poll trigger has seen, so that a restart neither misses nor repeats a push.")
@dataclass(frozen=True)
class PollStatus:
    heads: Mapping[str, str] = spec_field(
        "Branch -> commit at the last poll, for the branches the trigger selects (at most 200, "
        "in name order, already tracked ones first; untracked branches start no runs).",
        default_factory=dict,
        max_properties=MAX_TRACKED_REFS,
        item_max_length=40,
        item_pattern=SHA_PATTERN,
    )
    tags: Mapping[str, str] = spec_field(
        "Tag -> commit at the last poll, when the trigger selects tags (at most 200, likewise).",
        default_factory=dict,
        max_properties=MAX_TRACKED_REFS,
        item_max_length=40,
        item_pattern=SHA_PATTERN,
    )
    untracked: int | None = spec_field(
        "Selected refs beyond the limit of 200 at the last poll: they start no runs.",
        default=None,
        minimum=0,
    )
    selection: str | None = spec_field(
        "Digest of the trigger's branches and tags settings the heads were recorded for; when "
        "they change, the next poll records heads again without starting runs.",
        default=None,
        max_length=16,
    )
    last_poll_time: datetime.datetime | None = spec_field(
        "When the repository was last polled successfully.", default=None
    )
    error: str | None = spec_field(
        "Why the last poll failed; absent after a successful one.", default=None, max_length=1024
    )


@model("State of the pipeline's triggers.")
@dataclass(frozen=True)
class TriggersStatus:
    poll: PollStatus | None = spec_field("Poll trigger state.", default=None)


@model("Pipeline status, written by the operator.")
@dataclass(frozen=True)
class PipelineStatus:
    observed_generation: int | None = spec_field(
        "Generation of the spec last processed.", default=None, minimum=0
    )
    runs_in_flight: int | None = spec_field(
        "Runs of this pipeline currently running.", default=None, minimum=0, maximum=100000
    )
    job_count: int | None = spec_field(
        "Number of jobs in the pipeline.", default=None, minimum=0, maximum=MAX_JOBS
    )
    conditions: tuple[Condition, ...] = spec_field(
        "Conditions (e.g. Ready with the reason the spec is invalid).",
        default_factory=tuple,
        max_items=8,
        list_type="map",
        list_map_keys=("type",),
    )
    triggers: TriggersStatus | None = spec_field("State of the triggers.", default=None)


@dataclass(frozen=True)
class Pipeline:
    metadata: ObjectMeta = spec_field("Object metadata.", default_factory=ObjectMeta)
    spec: PipelineSpec | None = spec_field("Desired state.", default=None)
    status: PipelineStatus = spec_field("Observed state.", default_factory=PipelineStatus)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Pipeline:
        return from_dict(cls, obj)


def parse_pipeline_spec(obj: Mapping[str, Any]) -> PipelineSpec:
    """Parse a Pipeline spec (as stored by the API server) with its defaults."""
    return from_dict(PipelineSpec, obj, "spec")
