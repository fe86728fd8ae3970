"""Convert a `.gitlab-ci.yml` into a Conveyor Pipeline manifest.

The steps follow GitLab's own (`Gitlab::Ci::Config#build_config`): load YAML (anchors, aliases,
merge keys), merge local `include`s under the main file (`reading.py`: the only part that reads
files), resolve `extends` (hashes deep-merged,
arrays replaced, at most 11 levels, no cycles), then `!reference` tags, then read globals
(`default`, `variables`, `stages`, `workflow`) and jobs. Everything Conveyor cannot honour yet is
reported as an `Omission` (never dropped silently); anything that makes the file unusable raises
`LoadError` naming `FILE:LINE`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conveyor.api.codec import ModelError
from conveyor.api.durations import parse_human_duration, to_compact
from conveyor.api.fields import camel
from conveyor.api.meta import API_VERSION
from conveyor.api.pipeline import (
    ARTIFACT_WHEN_VALUES,
    AUTO_CANCEL_VALUES,
    CACHE_POLICIES,
    DEFAULT_STAGES,
    MAX_CACHE_KEY_FILES,
    MAX_CACHES,
    MAX_FALLBACK_KEYS,
    MAX_JOBS,
    RETRY_WHEN_VALUES,
    START_IN_MAX_SECONDS,
    Pipeline,
)
from conveyor.engine.artifacts import CacheKeyError, check_cache_key
from conveyor.engine.names import slug
from conveyor.engine.validate import validate_pipeline
from conveyor.engine.variables.expand import literal_value, reference_cycle, references
from conveyor.gitlab.expressions import check_expression
from conveyor.gitlab.reading import IncludeReader, deep_merge, project_root
from conveyor.gitlab.yamlload import LoadError, MarkedDict, Reference, load_yaml, read_file

MAX_EXTENDS_DEPTH = 11
MAX_REFERENCE_DEPTH = 10
MAX_SCRIPT_NESTING = 10

# Top-level keys that are GitLab keywords, not jobs.
GLOBAL_KEYWORDS = frozenset(
    {
        "default",
        "include",
        "stages",
        "variables",
        "workflow",
        "image",
        "services",
        "before_script",
        "after_script",
        "cache",
        "types",
        "spec",
    }
)
# Job keywords Conveyor has no equivalent for yet, with what dropping them means.
MAX_PARALLEL = 200  # GitLab's limit on the jobs of one parallel job

UNSUPPORTED_JOB_KEYS: Mapping[str, str] = {
    "coverage": "coverage parsing is not supported",
    "release": "releases are not created",
    "secrets": "external secrets are not supported; use secretVariables",
    "id_tokens": "ID tokens are not issued",
    "hooks": "runner hooks are not supported",
    "pages": "GitLab Pages publishing is not done: the job runs, no site is published",
    "publish": "GitLab Pages publishing is not done: the job runs, no site is published",
    "identity": "cloud identities are not supported",
    "manual_confirmation": "manual confirmation prompts are not supported",
    "dast_configuration": "DAST configuration is not supported",
    "start_in": "delayed jobs are not supported; the job does not wait",
    "run": "run steps are not supported",
}
# Predefined variables GitLab sets that Conveyor cannot (or sets otherwise), with what a job
# that uses them gets instead (docs.gitlab.com/ci/variables/predefined_variables).
_NO_API = "Conveyor has no GitLab API: {name} is not set"
_NO_TOKEN = (
    "Conveyor issues no job token (GitLab's authenticates to its API, registry and package "
    "registry): {name} is not set; give credentials with secretVariables, or a build's "
    "registrySecret"
)
UNAVAILABLE_VARIABLES: Mapping[str, str] = {
    "CI_API_V4_URL": _NO_API,
    "CI_API_GRAPHQL_URL": _NO_API,
    "CI_JOB_TOKEN": _NO_TOKEN,
    "CI_REGISTRY_USER": _NO_TOKEN,
    "CI_REGISTRY_PASSWORD": _NO_TOKEN,
    "CI_DEPENDENCY_PROXY_USER": _NO_TOKEN,
    "CI_DEPENDENCY_PROXY_PASSWORD": _NO_TOKEN,
    "CI_DEPENDENCY_PROXY_SERVER": "Conveyor has no dependency proxy: {name} is not set",
    "CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX": "Conveyor has no dependency proxy: {name} is not set",
    "CI_DEPENDENCY_PROXY_DIRECT_GROUP_IMAGE_PREFIX": (
        "Conveyor has no dependency proxy: {name} is not set"
    ),
    "CI_DEPLOY_USER": "Conveyor has no deploy tokens: {name} is not set",
    "CI_DEPLOY_PASSWORD": "Conveyor has no deploy tokens: {name} is not set",
    "CI_JOB_URL": "Conveyor has no web UI: {name} is not set",
    "CI_PIPELINE_URL": "Conveyor has no web UI: {name} is not set",
    "CI_COMMIT_REF_PROTECTED": "Conveyor has no protected branches: {name} is always false",
    "CI_PIPELINE_IID": "{name} is not set (CI_PIPELINE_ID is the run's unique id)",
}
# Conveyor creates no merge request pipelines: what only they set is never set.
MERGE_REQUEST_PREFIXES = ("CI_MERGE_REQUEST_", "CI_EXTERNAL_PULL_REQUEST_")

DEFAULT_KEYS = (
    "image", "services", "before_script", "after_script", "retry", "timeout", "interruptible",
    "tags", "artifacts", "cache",
)  # fmt: skip
# GitLab's legacy top-level defaults: every default keyword but tags and artifacts (a top-level
# `tags` or `artifacts` is a job); the top-level `cache` is one (deprecated, still honoured).
LEGACY_DEFAULT_KEYS = tuple(k for k in DEFAULT_KEYS if k not in ("tags", "artifacts"))
# artifacts:reports kinds Conveyor reads; the others are said, and their files not kept.
REPORT_KINDS = {"junit": "junit", "container_scanning": "containerScanning"}
ARTIFACT_KEYS = ("paths", "exclude", "untracked", "name", "when", "expire_in", "reports")
CACHE_KEYS = ("key", "paths", "policy", "when", "fallback_keys", "untracked", "unprotect")
SERVICE_ALIAS_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@dataclass(frozen=True, order=True)
class Omission:
    """Something of the file Conveyor does not honour: `where` is a job name or a global key."""

    where: str
    key: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.key}: {self.what}"


@dataclass
class ImportResult:
    manifest: dict[str, Any]
    omissions: list[Omission] = field(default_factory=list)

    def to_yaml(self) -> str:
        return dump_manifest(self.manifest)


def import_file(
    path: Path, *, name: str | None = None, repo: str | None = None, root: Path | None = None
) -> ImportResult:
    """Convert the file at `path`; raises LoadError (FILE:LINE: reason) when it cannot."""
    root = root or project_root(path)
    text = read_file(path, str(path))
    default_name = slug(root.resolve().name) or "pipeline"
    return Importer(root, display=str(path)).convert(text, name or default_name, repo)


def import_text(
    text: str, display: str, root: Path, *, name: str, repo: str | None = None
) -> ImportResult:
    """Convert a file's text that has no path (standard input); includes come from `root`."""
    return Importer(root, display=display).convert(text, name, repo)


class Importer:
    def __init__(self, root: Path, display: str) -> None:
        self.root = root
        self.display = display
        self.omissions: list[Omission] = []
        self.config: MarkedDict = MarkedDict()
        self.dropped_jobs: set[str] = set()
        # parallel jobs: the job's name -> its instances (name, matrix variables)
        self.instances: dict[str, list[tuple[str, dict[str, str]]]] = {}
        # Jobs that took default:image, and whether some job's `inherit` refuses it.
        self.default_image_jobs: set[str] = set()
        self.without_default_image = False
        # needs:parallel:matrix entries: (job, needed job) -> the matrix filters
        self.matrix_needs: dict[tuple[str, str], list[dict[str, list[str]]]] = {}

    def omit(self, where: str, key: str, what: str) -> None:
        self.omissions.append(Omission(where, key, what))

    def fail(self, where: Any, key: str | None, reason: str) -> LoadError:
        if isinstance(where, MarkedDict):
            return LoadError(where.file, where.line_of(key) if key else where.line, reason)
        return LoadError(self.display, None, reason)

    # --- loading ------------------------------------------------------------------------

    def convert(self, text: str, name: str, repo: str | None) -> ImportResult:
        main = load_yaml(text, self.display)
        if main is None:
            raise LoadError(self.display, 1, "the file is empty")
        if not isinstance(main, MarkedDict):
            raise LoadError(self.display, 1, "the top level must be a mapping of jobs and keywords")
        self.config = IncludeReader(self.root, self.omit, self.fail).merged(main, self.display)
        # Refused before the costly steps: a 2 MiB file of thousands of jobs must not take
        # seconds to be told it has too many (parallel only adds jobs).
        jobs = [k for k in self.config if k not in GLOBAL_KEYWORDS and not str(k).startswith(".")]
        if len(jobs) > MAX_JOBS:
            raise LoadError(
                self.display, 1, f"{len(jobs)} jobs: a pipeline has at most {MAX_JOBS} jobs"
            )
        self._resolve_extends()
        self.config = self._resolve_references(self.config, 0)  # type: ignore[assignment]
        manifest = self._manifest(name, repo)
        self._validate(manifest)
        return ImportResult(manifest, sorted(set(self.omissions)))

    def _resolve_extends(self) -> None:
        resolved: dict[str, MarkedDict] = {}

        def resolve(key: str, chain: list[str]) -> MarkedDict:
            if key in resolved:
                return resolved[key]
            entry = self.config[key]
            parents = entry.get("extends")
            if parents is None:
                resolved[key] = entry
                return entry
            names = parents if isinstance(parents, list) else [parents]
            if len(chain) > MAX_EXTENDS_DEPTH:
                raise self.fail(
                    entry, "extends", f"{key}: extends nests deeper than {MAX_EXTENDS_DEPTH} levels"
                )
            base = MarkedDict()
            for parent in names:
                if not isinstance(parent, str):
                    raise self.fail(entry, "extends", f"{key}: extends entries must be names")
                if parent in chain or parent == key:
                    cycle = " -> ".join([*chain, key, parent])
                    raise self.fail(entry, "extends", f"{key}: extends cycle: {cycle}")
                target = self.config.get(parent)
                if not isinstance(target, dict):
                    raise self.fail(entry, "extends", self._unknown_extends(key, parent))
                base = deep_merge(base, resolve(parent, [*chain, key]))
            own = MarkedDict({k: v for k, v in entry.items() if k != "extends"})
            merged = deep_merge(base, own.copy_marks(entry))
            merged.copy_marks(entry)
            resolved[key] = merged
            return merged

        for key, value in list(self.config.items()):
            if isinstance(value, dict) and key not in GLOBAL_KEYWORDS:
                self.config[key] = resolve(key, [])

    def _unknown_extends(self, key: str, parent: str) -> str:
        """Which key is unknown, and where it probably lives: a hidden job of another file."""
        message = f"{key}: unknown key in extends: {parent}"
        unresolved = sorted({o.what for o in self.omissions if o.where == "include"})
        if unresolved:
            return (
                f"{message}; it is probably defined by an include Conveyor does not resolve "
                f"({'; '.join(unresolved)})"
            )
        return f"{message}; if another file defines it, this file needs the `include` of it"

    def _resolve_references(self, value: Any, depth: int) -> Any:
        if isinstance(value, Reference):
            if depth > MAX_REFERENCE_DEPTH:
                raise LoadError(value.file, value.line, "!reference nests too deeply")
            target: Any = self.config
            for part in value.path:
                if not isinstance(target, dict) or part not in target:
                    path = ", ".join(value.path)
                    raise LoadError(value.file, value.line, f"!reference [{path}] not found")
                target = target[part]
            return self._resolve_references(target, depth + 1)
        if isinstance(value, dict):
            out = MarkedDict({k: self._resolve_references(v, depth) for k, v in value.items()})
            return out.copy_marks(value)
        if isinstance(value, list):
            return [self._resolve_references(v, depth) for v in value]
        return value

    # --- conversion ---------------------------------------------------------------------

    def _manifest(self, name: str, repo: str | None) -> dict[str, Any]:
        config = self.config
        defaults = self._defaults()
        spec: dict[str, Any] = {}
        if repo:
            spec["source"] = {"url": repo}
        image = defaults.get("image")
        variables = self._variables(config.get("variables"), "variables", config)
        if variables:
            spec["variables"] = variables
        stages = self._stages()
        spec["stages"] = stages
        workflow = self._workflow(config.get("workflow"))
        if isinstance(config.get("workflow"), MarkedDict):
            self._unavailable_variables("workflow", config["workflow"])
        if "variables" in config:
            own = MarkedDict({"variables": config["variables"]}).copy_marks(config)
            self._unavailable_variables("(pipeline)", own)
        if workflow:
            spec["workflow"] = workflow
        auto_cancel = self._auto_cancel(config.get("workflow"))
        if auto_cancel:
            spec["autoCancel"] = auto_cancel
        jobs = []
        for key, value in config.items():
            if key in GLOBAL_KEYWORDS or str(key).startswith("."):
                continue
            if not isinstance(value, dict):
                raise self.fail(config, key, f"job {key}: config should be a mapping")
            job = self._job(key, value, defaults, stages)
            if job is not None:
                jobs.append(job)
        jobs = self._expand_parallel(jobs)
        for job in jobs:
            self._drop_needs_on_dropped(job)
            self._check_variables(job, spec.get("variables", {}), workflow)
        self._self_references("variables", spec.get("variables", {}))
        if not jobs:
            raise self.fail(config, None, "the file defines no jobs")
        if image and not self.without_default_image:
            # Every job takes default:image: it is the pipeline's image.
            spec["image"] = image
            for job in jobs:
                if job["name"] in self.default_image_jobs:
                    del job["image"]
        spec["jobs"] = jobs
        return {
            "apiVersion": API_VERSION,
            "kind": "Pipeline",
            "metadata": {"name": name},
            "spec": spec,
        }

    def _check_variables(
        self, job: dict[str, Any], pipeline: dict[str, str], workflow: dict[str, Any] | None
    ) -> None:
        """GitLab refuses a pipeline whose job variables refer to each other in a cycle
        ("circular variable reference detected"), whichever rules match; a variable that
        refers to itself is said (GitLab leaves such a reference to the runner)."""
        own = job.get("variables", {})
        base = [{**pipeline, **own}]
        for rule in (workflow or {}).get("rules", []):
            base.append({**pipeline, **rule.get("variables", {}), **own})
        sets = list(base)
        for rule in job.get("rules") or []:
            sets += [{**b, **rule.get("variables", {})} for b in base]
        for variables in sets:
            cycle = reference_cycle(variables)
            if cycle:
                node = self.config.get(job["name"])
                raise self.fail(
                    node if isinstance(node, MarkedDict) else self.config,
                    "variables" if isinstance(node, MarkedDict) else None,
                    f"job {job['name']}: circular variable reference: {' -> '.join(cycle)}",
                )
        self._self_references(job["name"], own)

    def _self_references(self, where: str, variables: Mapping[str, str]) -> None:
        for name, value in variables.items():
            if name in references(value):
                self.omit(
                    where,
                    "variables",
                    f"{name} refers to itself: Conveyor expands that to the value it overrides "
                    "(empty when none); GitLab hands it to the runner unexpanded",
                )

    def _defaults(self) -> dict[str, Any]:
        """Converted `default:` values (and the legacy top-level image, services, ...)."""
        config = self.config
        raw: dict[str, Any] = {}
        for key in LEGACY_DEFAULT_KEYS:
            if key in config and config[key] is not None:
                raw[key] = config[key]
        default = config.get("default")
        if default is not None and not isinstance(default, dict):
            raise self.fail(config, "default", "default: must be a mapping")
        for key, value in (default or {}).items():
            if key in DEFAULT_KEYS:
                if value is not None:
                    raw[key] = value
            elif key in UNSUPPORTED_JOB_KEYS:
                self.omit("default", key, UNSUPPORTED_JOB_KEYS[key])
            else:
                self.omit("default", key, "unknown default keyword, dropped")
        out: dict[str, Any] = {}
        for key, value in raw.items():
            out[key] = self._field(key, value, "default", default or config)
        return {k: v for k, v in out.items() if v is not None}

    def _stages(self) -> list[str]:
        stages = self.config.get("stages", self.config.get("types"))
        if stages is None:
            names = list(DEFAULT_STAGES)
        elif isinstance(stages, list) and all(isinstance(s, str) for s in stages):
            names = list(stages)
        else:
            raise self.fail(self.config, "stages", "stages must be a list of names")
        names = [s for s in dict.fromkeys(names) if s not in (".pre", ".post")]
        return [".pre", *names, ".post"]  # GitLab's implicit first and last stages

    def _workflow(self, workflow: Any) -> dict[str, Any] | None:
        if workflow is None:
            return None
        if not isinstance(workflow, dict):
            raise self.fail(self.config, "workflow", "workflow must be a mapping")
        for key in workflow:
            if key not in ("rules", "auto_cancel"):
                self.omit("workflow", key, "not supported, dropped")
        rules = workflow.get("rules")
        if not rules:
            return None
        converted = self._rules(rules, "workflow", workflow, workflow=True)
        return {"rules": converted}

    def _tags(self, value: Any, where: str, node: Any) -> list[str]:
        """Runner tags, kept: the operator maps them to nodes (--tag-selector). GitLab expands
        variables in tags; Conveyor takes them as written."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
            raise self.fail(node, "tags", f"{where}: tags must be a list of names")
        if any("$" in t for t in value):
            self.omit(where, "tags", "variables in tags are not expanded: the tag is as written")
        return list(dict.fromkeys(value))

    def _interruptible(self, value: Any, where: str, node: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(node, "interruptible", f"{where}: interruptible is true or false")
        return value

    def _auto_cancel(self, workflow: Any) -> str | None:
        """workflow:auto_cancel:on_new_commit: GitLab's own default (the project setting)
        cannot be read from the file; Conveyor's default is none."""
        if not isinstance(workflow, dict) or "auto_cancel" not in workflow:
            return None
        settings = workflow["auto_cancel"]
        if not isinstance(settings, dict):
            raise self.fail(workflow, "auto_cancel", "workflow:auto_cancel must be a mapping")
        for key in settings:
            if key != "on_new_commit":
                self.omit("workflow", f"auto_cancel:{key}", "not supported, dropped")
        mode = settings.get("on_new_commit")
        if mode is None:
            return None
        if mode == "interruptible":
            self.omit(
                "workflow",
                "auto_cancel:on_new_commit",
                "interruptible (cancel only interruptible jobs) runs as conservative: a run is "
                "cancelled only while none of its non-interruptible jobs has started",
            )
            return "conservative"
        if mode not in AUTO_CANCEL_VALUES:
            raise self.fail(settings, "on_new_commit", f"unknown auto_cancel:on_new_commit {mode}")
        return str(mode)

    def _job(
        self, name: str, job: MarkedDict, defaults: dict[str, Any], stages: list[str]
    ) -> dict[str, Any] | None:
        job = MarkedDict({k: v for k, v in job.items() if v is not None}).copy_marks(job)
        if "trigger" in job:
            self.omit(name, "trigger", "downstream pipelines are not supported; job dropped")
            self.dropped_jobs.add(name)
            return None
        out: dict[str, Any] = {"name": name}
        stage = job.get("stage", job.get("type", "test"))
        if not isinstance(stage, str) or stage not in stages:
            raise self.fail(job, "stage", f"job {name}: chosen stage {stage} does not exist")
        out["stage"] = stage
        inherited = self._inherited_defaults(name, job, defaults)
        if "image" not in job:
            # inherit:default false (or a list without image): no default:image, the
            # operator's default image instead (GitLab: the runner's).
            if "image" in inherited:
                self.default_image_jobs.add(name)
            elif "image" in defaults:
                self.without_default_image = True
        keys = (
            "image", "services", "variables", "before_script", "script", "after_script", "tags",
            "artifacts", "cache",
        )  # fmt: skip
        for key in keys:
            value = job[key] if key in job else inherited.get(key)
            if key in job:
                value = self._field(key, value, name, job)
            if value:
                out[camel(key)] = value
        if "script" not in out:
            raise self.fail(job, None, f"job {name}: a job needs a script (or a trigger)")
        self._needs(name, job, out)
        if "dependencies" in job:
            out["dependencies"] = self._dependencies(job["dependencies"], name, job)
        if "rules" in job:
            for legacy in ("only", "except"):
                if legacy in job:
                    raise self.fail(job, legacy, f"job {name}: {legacy} may not be used with rules")
            out["rules"] = self._rules(job["rules"], name, job, workflow=False)
        for key in ("only", "except"):
            if key in job:
                out[key] = self._policy(job[key], name, key, job)
        self._when(name, job, out)
        self._allow_failure(name, job, out)
        for key in ("retry", "timeout"):
            value = self._field(key, job[key], name, job) if key in job else inherited.get(key)
            if value:
                out[key] = value
        if "environment" in job:
            environment = self._environment(job["environment"], name, job)
            if environment:
                out["environment"] = environment
        if "resource_group" in job:
            out["resourceGroup"] = self._resource_group(job["resource_group"], name, job)
        if "parallel" in job:
            self.instances[name] = self._parallel(job["parallel"], name, job)
        interruptible = (
            self._interruptible(job["interruptible"], name, job)
            if "interruptible" in job
            else inherited.get("interruptible")
        )
        if interruptible:
            out["interruptible"] = True
        handled = {
            "stage", "type", "image", "services", "variables", "before_script", "script",
            "after_script", "needs", "rules", "only", "except", "when", "allow_failure", "retry",
            "timeout", "environment", "resource_group", "inherit", "extends", "parallel",
            "interruptible", "tags", "artifacts", "cache", "dependencies",
        }  # fmt: skip
        for key in job:
            if key in handled:
                continue
            if key in UNSUPPORTED_JOB_KEYS:
                if key == "start_in" and job.get("when") == "delayed":
                    continue  # converted with `when: delayed`
                self.omit(name, key, UNSUPPORTED_JOB_KEYS[key])
            else:
                self.omit(name, key, "unknown keyword, dropped")
        if name == "pages" and "pages" not in job:
            # GitLab publishes the `public` artifact of a job named pages as the site.
            self.omit(name, "pages", UNSUPPORTED_JOB_KEYS["pages"])
        self._unavailable_variables(name, job)
        return out

    def _unavailable_variables(self, where: str, node: MarkedDict) -> None:
        """Say where the file uses a predefined variable Conveyor cannot set, or a merge request
        pipeline, with the job, key and line: such a job runs differently from GitLab."""
        defined = set(self.config.get("variables") or {}) | set(node.get("variables") or {})
        for key, value in node.items():
            if key in ("extends", "inherit"):
                continue
            for text in _strings(value):
                used = set(references(text)) - defined
                for name in sorted(used):
                    template = UNAVAILABLE_VARIABLES.get(name)
                    if template is None and name.startswith(MERGE_REQUEST_PREFIXES):
                        template = "Conveyor runs no merge request pipelines: {name} is never set"
                    if template is not None:
                        what = template.format(name=name)
                        self.omit(where, key, f"{what} ({node.file}:{node.line_of(key)})")
                if "merge_request_event" in text or "external_pull_request_event" in text:
                    self.omit(
                        where,
                        key,
                        "Conveyor runs no merge request pipelines: a condition on them never "
                        f"holds ({node.file}:{node.line_of(key)})",
                    )

    def _inherited_defaults(
        self, name: str, job: MarkedDict, defaults: dict[str, Any]
    ) -> dict[str, Any]:
        inherit = job.get("inherit")
        allowed: set[str] = set(DEFAULT_KEYS)
        if isinstance(inherit, dict):
            spec = inherit.get("default", True)
            if spec is False:
                allowed = set()
            elif isinstance(spec, list):
                allowed = {str(k) for k in spec}
            variables = inherit.get("variables", True)
            if variables is not True:
                self.omit(
                    name,
                    "inherit",
                    "inherit:variables not supported; the job sees every pipeline variable",
                )
        elif inherit is not None:
            raise self.fail(job, "inherit", f"job {name}: inherit must be a mapping")
        return {k: v for k, v in defaults.items() if k in allowed}

    # --- fields -------------------------------------------------------------------------

    def _field(self, key: str, value: Any, where: str, node: Any) -> Any:
        converters: dict[str, Callable[[Any, str, Any], Any]] = {
            "image": self._image,
            "services": self._services,
            "before_script": lambda v, w, n: self._script(v, w, "before_script", n),
            "script": lambda v, w, n: self._script(v, w, "script", n),
            "after_script": lambda v, w, n: self._script(v, w, "after_script", n),
            "variables": lambda v, w, n: self._variables(v, w, n),
            "retry": self._retry,
            "timeout": self._timeout,
            "interruptible": self._interruptible,
            "tags": self._tags,
            "artifacts": self._artifacts,
            "cache": self._caches,
        }
        return converters[key](value, where, node)

    def _image(self, value: Any, where: str, node: Any) -> str | None:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("name"), str):
            for key, extra in value.items():
                if key == "name":
                    continue
                if key == "entrypoint" and extra in ([], [""]):
                    continue  # the script's shell replaces the entrypoint anyway
                self.omit(where, f"image:{key}", "not supported, dropped")
            return str(value["name"])
        raise self.fail(node, "image", f"{where}: image must be a name or {{name: ...}}")

    def _services(self, value: Any, where: str, node: Any) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(node, "services", f"{where}: services must be a list")
        out = []
        for item in value:
            if isinstance(item, str):
                out.append({"name": item})
                continue
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise self.fail(node, "services", f"{where}: a service needs a name")
            service: dict[str, Any] = {"name": item["name"]}
            alias = item.get("alias")
            if alias is not None:
                first = str(alias).split(",")[0].strip()

                if re.match(SERVICE_ALIAS_PATTERN, first) and len(first) <= 63:
                    service["alias"] = first
                    if "," in str(alias):
                        self.omit(where, "services:alias", f"only the first alias of {alias} kept")
                else:
                    self.omit(where, "services:alias", f"alias {alias!r} is not a DNS label")
            for key in ("command", "entrypoint"):
                if key in item and item[key] is not None:
                    raw = item[key]
                    service[key] = [str(x) for x in (raw if isinstance(raw, list) else [raw])]
            if item.get("variables"):
                service["variables"] = self._variables(item["variables"], where, item)
            for key in item:
                if key not in ("name", "alias", "command", "entrypoint", "variables"):
                    self.omit(where, f"services:{key}", "not supported, dropped")
            out.append(service)
        return out

    def _script(self, value: Any, where: str, key: str, node: Any) -> list[str]:
        lines: list[str] = []

        def walk(item: Any, depth: int) -> None:
            if depth > MAX_SCRIPT_NESTING:
                raise self.fail(node, key, f"{where}: {key} nests lists too deeply")
            if isinstance(item, list):
                for sub in item:
                    walk(sub, depth + 1)
            elif isinstance(item, str | int | float) and not isinstance(item, bool):
                lines.append(str(item))
            else:
                raise self.fail(node, key, f"{where}: {key} must be strings or lists of strings")

        walk(value, 0)
        return lines

    def _variables(self, value: Any, where: str, node: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(node, "variables", f"{where}: variables must be a mapping")

        out: dict[str, str] = {}
        for name, raw in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
                self.omit(where, "variables", f"{name}: not a valid variable name, dropped")
                continue
            literal = False
            if isinstance(raw, dict):
                for extra in raw:
                    if extra not in ("value", "description", "options", "expand"):
                        self.omit(where, "variables", f"{name}: {extra} dropped")
                literal = raw.get("expand") is False
                raw = raw.get("value", "")
            if raw is None:
                continue  # `null` removes a variable inherited through extends
            if isinstance(raw, bool):
                raw = "true" if raw else "false"
            if not isinstance(raw, str | int | float):
                raise self.fail(node, "variables", f"{where}: variable {name} must be a string")
            # expand: false (docs.gitlab.com/ci/yaml/#variablesexpand): the value with its `$`
            # doubled expands to exactly the written text, wherever it is used.
            out[str(name)] = literal_value(str(raw)) if literal else str(raw)
        return out

    def _retry(self, value: Any, where: str, node: Any) -> dict[str, Any] | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"max": value}
        if not isinstance(value, dict):
            raise self.fail(node, "retry", f"{where}: retry must be a number or a mapping")
        maximum = value.get("max", 0)
        if not isinstance(maximum, int) or not 0 <= maximum <= 2:
            raise self.fail(node, "retry", f"{where}: retry max must be 0, 1 or 2")
        if maximum == 0:
            return None
        out: dict[str, Any] = {"max": maximum}
        when = value.get("when")
        if when is not None:
            kinds = when if isinstance(when, list) else [when]
            kept = [k for k in kinds if k in RETRY_WHEN_VALUES]
            for kind in kinds:
                if kind not in RETRY_WHEN_VALUES:
                    self.omit(where, "retry:when", f"{kind} is not a failure kind Conveyor tells")
            if not kept:
                self.omit(where, "retry", "no supported retry:when left; retry dropped")
                return None
            out["when"] = sorted(set(kept))
        codes = value.get("exit_codes")
        if codes is not None:
            out["exitCodes"] = sorted(
                {int(c) for c in (codes if isinstance(codes, list) else [codes])}
            )
        return out

    def _timeout(self, value: Any, where: str, node: Any) -> str:
        try:
            return to_compact(parse_human_duration(value))
        except ValueError as exc:
            raise self.fail(node, "timeout", f"{where}: {exc}") from exc

    def _environment(self, value: Any, where: str, node: Any) -> dict[str, Any] | None:
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            raise self.fail(node, "environment", f"{where}: environment needs a name")
        out = {"name": value["name"]}
        if value.get("url"):
            out["url"] = str(value["url"])
        for key, extra in value.items():
            if key in ("name", "url"):
                continue
            if key == "action" and extra == "start":
                continue  # the default
            if key == "action" and extra == "stop":
                out["action"] = "stop"  # a native deploy stops by deleting what was applied
                continue
            if key == "on_stop":
                # The stop job is a job of the pipeline like any other: play it to stop.
                self.omit(
                    where,
                    "environment:on_stop",
                    f"the link to {extra!r} is not kept: play {extra!r} to stop the environment",
                )
                continue
            if key == "auto_stop_in":
                self.omit(
                    where,
                    "environment:auto_stop_in",
                    f"{extra!r}: environments are not stopped automatically; play the stop job",
                )
                continue
            self.omit(where, f"environment:{key}", f"{extra!r} not supported, dropped")
        return out

    def _resource_group(self, value: Any, where: str, node: Any) -> str:
        # GitLab's own limits: these characters, 255 at most.
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_./{}$ -]{1,255}", value):
            raise self.fail(
                node,
                "resource_group",
                f"{where}: resource_group must be 1-255 letters, digits, spaces "
                "and - _ . / $ { }",
            )
        return value  # variables in it are expanded per job when the run starts, as GitLab does

    def _needs(self, name: str, job: MarkedDict, out: dict[str, Any]) -> None:
        if "needs" not in job:
            return
        needs = job["needs"]
        if not isinstance(needs, list):
            raise self.fail(job, "needs", f"job {name}: needs must be a list")
        required: set[str] = set()
        optional: set[str] = set()
        without: set[str] = set()  # needs:artifacts: false
        for entry in needs:
            if isinstance(entry, str):
                required.add(entry)
                continue
            if not isinstance(entry, dict):
                raise self.fail(job, "needs", f"job {name}: bad needs entry {entry!r}")
            if "pipeline" in entry or "project" in entry:
                self.omit(name, "needs", f"cross-pipeline need {dict(entry)!r} dropped")
                continue
            target = entry.get("job")
            if not isinstance(target, str):
                raise self.fail(job, "needs", f"job {name}: a needs entry needs a job name")
            artifacts = entry.get("artifacts", True)
            if not isinstance(artifacts, bool):
                raise self.fail(job, "needs", f"job {name}: needs:artifacts is true or false")
            if not artifacts:
                without.add(target)
            if "parallel" in entry:
                self.matrix_needs[(name, target)] = self._matrix_filter(
                    entry["parallel"], name, job
                )
            (optional if entry.get("optional") is True else required).add(target)
        out["needs"] = sorted(required)
        if optional - required:
            out["optionalNeeds"] = sorted(optional - required)
            if not required:
                del out["needs"]
        if without:
            out["needsWithoutArtifacts"] = sorted(without)

    def _dependencies(self, value: Any, name: str, job: MarkedDict) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
            raise self.fail(job, "dependencies", f"job {name}: dependencies must be job names")
        return sorted(set(value))

    def _artifacts(self, value: Any, where: str, node: Any) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            raise self.fail(node, "artifacts", f"{where}: artifacts must be a mapping")
        out: dict[str, Any] = {}
        for key in ("paths", "exclude"):
            if value.get(key) is not None:
                out[key] = self._path_list(value[key], where, f"artifacts:{key}", node)
        if value.get("untracked") is not None:
            if not isinstance(value["untracked"], bool):
                raise self.fail(node, "artifacts", f"{where}: artifacts:untracked is a boolean")
            if value["untracked"]:
                out["untracked"] = True
        if value.get("name") is not None:
            out["name"] = str(value["name"])
        when = value.get("when")
        if when is not None:
            if when not in ARTIFACT_WHEN_VALUES:
                raise self.fail(
                    node,
                    "artifacts",
                    f"{where}: artifacts:when must be one of " + ", ".join(ARTIFACT_WHEN_VALUES),
                )
            if when != "on_success":
                out["when"] = when
        if value.get("expire_in") is not None:
            out["expireIn"] = self._expire_in(value["expire_in"], where, node)
        reports = value.get("reports")
        if reports is not None:
            if not isinstance(reports, dict):
                raise self.fail(node, "artifacts", f"{where}: artifacts:reports must be a mapping")
            kept: dict[str, list[str]] = {}
            for kind, files in reports.items():
                if kind in REPORT_KINDS:
                    kept[REPORT_KINDS[kind]] = self._path_list(
                        files, where, f"artifacts:reports:{kind}", node
                    )
                else:
                    self.omit(
                        where,
                        f"artifacts:reports:{kind}",
                        "Conveyor reads only junit and container_scanning reports: this one is "
                        "not kept (list it in artifacts:paths to keep the file)",
                    )
            if kept:
                out["reports"] = kept
        for key in value:
            if key not in ARTIFACT_KEYS:
                self.omit(where, f"artifacts:{key}", "not supported, dropped")
        return out or None

    def _expire_in(self, value: Any, where: str, node: Any) -> str:
        text = str(value).strip()
        if text.lower() == "never":
            return "never"
        try:
            seconds = parse_human_duration(value)
        except ValueError as exc:
            raise self.fail(node, "artifacts", f"{where}: artifacts:expire_in: {exc}") from exc
        if seconds <= 0:
            raise self.fail(node, "artifacts", f"{where}: artifacts:expire_in must be positive")
        return text if isinstance(value, str) else f"{seconds} seconds"

    def _path_list(self, value: Any, where: str, key: str, node: Any) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(p, str | int | float) and not isinstance(p, bool) for p in items):
            raise self.fail(node, key.split(":")[0], f"{where}: {key} must be paths")
        return [str(p) for p in items if str(p)]

    def _caches(self, value: Any, where: str, node: Any) -> list[dict[str, Any]]:
        """GitLab `cache`: one mapping or a list of at most 4; `[]` (or `{}`) means none, and
        overrides `default:cache`."""
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_CACHES:
            raise self.fail(node, "cache", f"{where}: at most {MAX_CACHES} caches per job")
        out = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(node, "cache", f"{where}: a cache must be a mapping")
            if not item:
                continue
            cache = self._cache(item, where, node)
            if not cache.get("paths") and not cache.get("untracked"):
                # GitLab's runner archives nothing for it either.
                self.omit(where, "cache", f"cache {index} has no paths: nothing is cached")
                continue
            out.append(cache)
        return out

    def _cache(self, item: dict[str, Any], where: str, node: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        key = item.get("key")
        if isinstance(key, dict):
            files = key.get("files")
            if files is None and key.get("files_commits") is not None:
                # GitLab 18.4's key from the files' last commits: the key from their content
                # changes no more often, and only when a cache made for them could be wrong.
                files = key["files_commits"]
                self.omit(
                    where,
                    "cache:key:files_commits",
                    "approximated as cache:key:files (the files' content, not their last commits)",
                )
            if not isinstance(files, list) or not 1 <= len(files) <= MAX_CACHE_KEY_FILES:
                raise self.fail(
                    node, "cache", f"{where}: cache:key:files must list one or two files"
                )
            out["keyFiles"] = {"files": [str(f) for f in files]}
            if key.get("prefix") is not None:
                out["keyFiles"]["prefix"] = str(key["prefix"])
            for extra in key:
                if extra not in ("files", "files_commits", "prefix"):
                    self.omit(where, f"cache:key:{extra}", "not supported, dropped")
        elif key is not None:
            if not isinstance(key, str | int | float) or isinstance(key, bool):
                raise self.fail(node, "cache", f"{where}: cache:key is a string or {{files}}")
            text = str(key)
            try:
                check_cache_key(text)
            except CacheKeyError as exc:
                raise self.fail(node, "cache", f"{where}: cache:key {text!r}: {exc}") from exc
            out["key"] = text
        if item.get("paths") is not None:
            out["paths"] = self._path_list(item["paths"], where, "cache:paths", node)
        if item.get("untracked"):
            out["untracked"] = True
        policy = item.get("policy")
        if policy is not None:
            if policy not in CACHE_POLICIES:
                # GitLab allows a variable here; Conveyor's policy is part of the spec.
                self.omit(
                    where, "cache:policy", f"{policy!r} is not pull, push or pull-push: pull-push"
                )
            elif policy != "pull-push":
                out["policy"] = policy
        when = item.get("when")
        if when is not None:
            if when not in ARTIFACT_WHEN_VALUES:
                raise self.fail(
                    node, "cache", f"{where}: cache:when must be on_success, on_failure or always"
                )
            if when != "on_success":
                out["when"] = when
        fallback = item.get("fallback_keys")
        if fallback is not None:
            if not isinstance(fallback, list) or len(fallback) > MAX_FALLBACK_KEYS:
                raise self.fail(node, "cache", f"{where}: cache:fallback_keys lists at most 5 keys")
            out["fallbackKeys"] = [str(k) for k in fallback]
        for extra in item:
            if extra not in CACHE_KEYS:
                self.omit(where, f"cache:{extra}", "not supported, dropped")
        # unprotect: Conveyor has no protected refs, every cache is shared as GitLab's unprotected
        return out

    def _parallel(self, value: Any, name: str, job: MarkedDict) -> list[tuple[str, dict[str, str]]]:
        """GitLab's `parallel: N` (jobs `name 1/N` .. `name N/N`) or `parallel: matrix:` (one
        job per combination, `name: [v1, v2]`, with those variables)."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= MAX_PARALLEL:
                raise self.fail(job, "parallel", f"job {name}: parallel must be 1-{MAX_PARALLEL}")
            return [(f"{name} {i}/{value}", {}) for i in range(1, value + 1)]
        matrix = value.get("matrix") if isinstance(value, dict) else None
        if not isinstance(matrix, list) or not matrix:
            raise self.fail(
                job, "parallel", f"job {name}: parallel is a number or {{matrix: [...]}}"
            )
        out: list[tuple[str, dict[str, str]]] = []
        for entry in matrix:
            axes = self._matrix_entry(entry, name, job)
            for combination in itertools.product(*axes.values()):
                variables = dict(zip(axes, combination, strict=True))
                out.append((f"{name}: [{', '.join(combination)}]", variables))
        if len(out) > MAX_PARALLEL:
            raise self.fail(
                job,
                "parallel",
                f"job {name}: the matrix makes {len(out)} jobs (at most {MAX_PARALLEL})",
            )
        if len({n for n, _ in out}) != len(out):
            raise self.fail(job, "parallel", f"job {name}: the matrix repeats a combination")
        return out

    def _matrix_entry(self, entry: Any, name: str, job: MarkedDict) -> dict[str, list[str]]:
        if not isinstance(entry, dict) or not entry:
            raise self.fail(job, "parallel", f"job {name}: a matrix entry maps variables to values")
        axes: dict[str, list[str]] = {}
        for var, values in entry.items():
            values = values if isinstance(values, list) else [values]
            if not values or not all(isinstance(v, str | int | float) for v in values):
                raise self.fail(
                    job, "parallel", f"job {name}: matrix variable {var} needs values (strings)"
                )
            axes[str(var)] = [str(v) for v in values]
        return axes

    def _matrix_filter(self, value: Any, name: str, job: MarkedDict) -> list[dict[str, list[str]]]:
        matrix = value.get("matrix") if isinstance(value, dict) else None
        if not isinstance(matrix, list) or not matrix:
            raise self.fail(job, "needs", f"job {name}: needs:parallel takes {{matrix: [...]}}")
        return [self._matrix_entry(entry, name, job) for entry in matrix]

    def _expand_parallel(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Parallel jobs become their instances; a need on one means all its instances (or,
        with needs:parallel:matrix, those whose variables match)."""
        if not self.instances:
            return jobs
        out: list[dict[str, Any]] = []
        for job in jobs:
            for key in ("needs", "optionalNeeds", "dependencies", "needsWithoutArtifacts"):
                if key in job:
                    job[key] = sorted(
                        {n for need in job[key] for n in self._needed(job["name"], need)}
                    )
            instances = self.instances.get(job["name"])
            if instances is None:
                out.append(job)
                continue
            if job["name"] in self.default_image_jobs:
                self.default_image_jobs |= {instance for instance, _ in instances}
            for index, (instance, variables) in enumerate(instances, start=1):
                parallel = {"CI_NODE_INDEX": str(index), "CI_NODE_TOTAL": str(len(instances))}
                out.append(
                    {
                        **job,
                        "name": instance,
                        "variables": {**job.get("variables", {}), **variables, **parallel},
                    }
                )
        return out

    def _needed(self, job: str, need: str) -> list[str]:
        instances = self.instances.get(need)
        if instances is None:
            return [need]
        filters = self.matrix_needs.get((job, need))
        if filters is None:
            return [name for name, _ in instances]
        chosen = [
            name
            for name, variables in instances
            if any(all(variables.get(k) in v for k, v in f.items()) for f in filters)
        ]
        if not chosen:
            raise self.fail(
                self.config, None, f"job {job}: needs:parallel:matrix matches no job of {need}"
            )
        return chosen

    def _drop_needs_on_dropped(self, job: dict[str, Any]) -> None:
        for key in ("needs", "optionalNeeds", "dependencies", "needsWithoutArtifacts"):
            if key in job:
                gone = [n for n in job[key] if n in self.dropped_jobs]
                for need in gone:
                    self.omit(job["name"], key, f"{need} was dropped (trigger job)")
                job[key] = [n for n in job[key] if n not in self.dropped_jobs]

    def _when(self, name: str, job: MarkedDict, out: dict[str, Any]) -> None:
        when = job.get("when")
        if when is None:
            return
        if when == "delayed":
            if "start_in" not in job:
                raise self.fail(job, "when", f"job {name}: when: delayed needs start_in")
            try:
                seconds = parse_human_duration(job["start_in"])
            except ValueError as exc:
                raise self.fail(job, "start_in", f"job {name}: start_in: {exc}") from exc
            if not 0 < seconds <= START_IN_MAX_SECONDS:
                raise self.fail(
                    job, "start_in", f"job {name}: start_in must be more than 0 and at most a week"
                )
            out["when"], out["startIn"] = "delayed", to_compact(seconds)
            return
        if when not in ("on_success", "on_failure", "always", "manual", "never"):
            raise self.fail(job, "when", f"job {name}: unknown when: {when}")
        if when != "on_success":
            out["when"] = when

    def _allow_failure(self, name: str, job: MarkedDict, out: dict[str, Any]) -> None:
        value = job.get("allow_failure")
        if value is None:
            return
        if isinstance(value, bool):
            out["allowFailure"] = value
        elif isinstance(value, dict) and "exit_codes" in value:
            codes = value["exit_codes"]
            codes = codes if isinstance(codes, list) else [codes]
            out["allowFailureExitCodes"] = sorted({int(c) for c in codes})
        else:
            raise self.fail(job, "allow_failure", f"job {name}: bad allow_failure")

    def _rules(
        self, rules: Any, where: str, node: MarkedDict, *, workflow: bool
    ) -> list[dict[str, Any]]:
        if not isinstance(rules, list):
            raise self.fail(node, "rules", f"{where}: rules must be a list")
        rules = self._flat(rules, node, where, "rules")
        out = []
        for index, rule in enumerate(rules):
            if not isinstance(rule, dict):
                raise self.fail(node, "rules", f"{where}: rules[{index}] must be a mapping")
            converted: dict[str, Any] = {}
            for key, value in rule.items():
                if value is None:
                    continue
                label = f"rules[{index}]:{key}"
                if key == "if":
                    problem = check_expression(str(value))
                    if problem:
                        raise self.fail(
                            rule, "if", f"{where}: rules[{index}]: invalid if: {problem}"
                        )
                    converted["if"] = str(value)
                elif key in ("changes", "exists"):
                    paths, extra = value, {}
                    if isinstance(value, dict):
                        paths = value.get("paths", [])
                        extra = {k: v for k, v in value.items() if k != "paths"}
                    if not isinstance(paths, list):
                        paths = [paths]
                    converted[key] = [str(p) for p in paths]
                    for sub, detail in extra.items():
                        if key == "changes" and sub == "compare_to":
                            converted["changesCompareTo"] = str(detail)
                        else:
                            self.omit(where, f"{label}:{sub}", "not supported, dropped")
                elif key == "when":
                    allowed = (
                        ("always", "never")
                        if workflow
                        else ("on_success", "on_failure", "always", "manual", "never")
                    )
                    if value == "delayed" and not workflow:
                        self.omit(where, label, "delayed not supported; on_success used")
                        converted["when"] = "on_success"
                    elif value in allowed:
                        converted["when"] = value
                    else:
                        raise self.fail(rule, "when", f"{where}: rules[{index}]: bad when {value}")
                elif key == "allow_failure" and not workflow:
                    if isinstance(value, bool):
                        converted["allowFailure"] = value
                    else:
                        self.omit(where, label, "exit_codes in rules not supported, dropped")
                elif key == "variables":
                    converted["variables"] = self._variables(value, where, rule)
                else:
                    self.omit(where, label, "not supported, dropped")
            out.append(converted)
        return out

    def _flat(self, items: list[Any], node: MarkedDict, where: str, key: str) -> list[Any]:
        """Nested lists flattened, as GitLab does for `!reference` tags in rules
        (`rules: [!reference [.r, rules], {when: never}]`; docs.gitlab.com/ci/yaml/
        #reference-tags)."""
        out: list[Any] = []

        def walk(value: Any, depth: int) -> None:
            if depth > MAX_SCRIPT_NESTING:
                raise self.fail(node, key, f"{where}: {key} nests lists too deeply")
            if isinstance(value, list):
                for item in value:
                    walk(item, depth + 1)
            else:
                out.append(value)

        walk(items, 0)
        return out

    def _policy(self, value: Any, where: str, key: str, node: MarkedDict) -> dict[str, Any]:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            value = {"refs": value}
        if not isinstance(value, dict):
            raise self.fail(node, key, f"job {where}: {key} must be a list or a mapping")
        out: dict[str, Any] = {}
        for sub, items in value.items():
            if items is None:
                continue
            if sub in ("refs", "changes", "variables"):
                if isinstance(items, dict) and sub == "changes":
                    items = items.get("paths", [])
                items = items if isinstance(items, list) else [items]
                out[sub] = [str(i) for i in items]
                if sub == "variables":
                    for expression in out[sub]:
                        problem = check_expression(expression)
                        if problem:
                            raise self.fail(node, key, f"job {where}: {key}:variables: {problem}")
            elif sub == "kubernetes":
                if items != "active":
                    raise self.fail(node, key, f"job {where}: {key}:kubernetes must be active")
                out["kubernetes"] = "active"
                self.omit(
                    where,
                    f"{key}:kubernetes",
                    "Conveyor has no Kubernetes integration flag; `active` is never true",
                )
            else:
                self.omit(where, f"{key}:{sub}", "not supported, dropped")
        return out

    # --- checks -------------------------------------------------------------------------

    def _validate(self, manifest: dict[str, Any]) -> None:
        try:
            pipeline = Pipeline.from_dict(manifest)
        except ModelError as exc:
            raise self._located(exc.path, str(exc)) from exc
        assert pipeline.spec is not None
        problems = validate_pipeline(pipeline.spec)
        if problems:
            raise LoadError(self.display, None, "; ".join(problems))

    def _located(self, path: str, message: str) -> LoadError:
        """A model error on spec.jobs[i]... mapped back to the job's line when possible."""

        match = re.match(r"spec\.jobs\[(\d+)\]", path)
        if match:
            jobs = [
                k for k in self.config if k not in GLOBAL_KEYWORDS and not str(k).startswith(".")
            ]
            jobs = [k for k in jobs if k not in self.dropped_jobs]
            index = int(match.group(1))
            if index < len(jobs):
                node = self.config[jobs[index]]
                if isinstance(node, MarkedDict):
                    return LoadError(node.file, node.line, f"job {jobs[index]}: {message}")
        return LoadError(self.display, None, message)


def _strings(value: Any) -> list[str]:
    """Every string in a YAML value, nested lists and mappings included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared defaults (services, scripts) are written out in full in every job


# Booleans to YAML 1.1 readers (kubectl's among them) that PyYAML writes bare: a script line `y`
# would be applied as `true`.
_YAML11_BOOL_ONLY = re.compile(r"^(y|Y|n|N)$")


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if _YAML11_BOOL_ONLY.match(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(MarkedDict, _Dumper.represent_dict)


def dump_manifest(manifest: dict[str, Any]) -> str:
    return yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
