"""GitLab's predefined variables: those of git data (commit message, ref kind, before SHA), the
project's, the environment's slug, and a job's whole predefined set.

Pure: the operator reads git once when a run starts, keeps the facts in the run's
`status.evaluation` (`refIsTag`, `commitMessage`, `defaultBranch`), and both the rule evaluator
and the Job builder derive the variables from them with these functions.
"""

from __future__ import annotations

import datetime
import hashlib
import posixpath
import re
from typing import Protocol
from urllib.parse import urlsplit

from conveyor.api.meta import ZERO_SHA
from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.names import ref_slug, slug

BUILDS_DIR = "/builds"  # CI_BUILDS_DIR: where job pods check out


class RegistryNames(Protocol):
    """The operator's registry, for CI_REGISTRY and CI_REGISTRY_IMAGE (kube.jobspec.JobOptions
    has them)."""

    @property
    def registry(self) -> str | None: ...
    @property
    def registry_image(self) -> str | None: ...


ENVIRONMENT_SLUG_MAX = 24
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def environment_slug(name: str) -> str:
    """CI_ENVIRONMENT_SLUG: GitLab's DNS-safe form of an environment name (lowercase letters,
    digits and single dashes, starting with a letter, at most 24 characters). A name that
    does not survive that unchanged (uppercase, `/`, too long) is cut to 17 characters and gets
    a 6-character suffix derived from the name, so distinct names keep distinct slugs
    (docs.gitlab.com/ci/variables/predefined_variables: "truncated to 24 characters", a suffix
    "added to uppercase environment names")."""
    slugged = re.sub(r"[^a-z0-9]", "-", name.lower())
    if not slugged[:1].isalpha() or not slugged[:1].isascii():
        slugged = "env-" + slugged
    slugged = re.sub(r"-+", "-", slugged)
    if len(slugged) > ENVIRONMENT_SLUG_MAX or slugged != name:
        return f"{slugged[:17]}-{_name_suffix(name)}"
    return slugged.rstrip("-")


def _name_suffix(name: str) -> str:
    number = int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16)
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
    return (digits or "0")[-6:]


def commit_title(message: str) -> str:
    """CI_COMMIT_TITLE: the full first line of the message."""
    return message.split("\n", 1)[0].rstrip("\r")


def commit_description(message: str) -> str:
    """CI_COMMIT_DESCRIPTION: GitLab gives the message without its first line when the title is
    shorter than 100 characters, else the whole message."""
    title = commit_title(message)
    if len(title) < 100:
        return message.split("\n", 1)[1].lstrip("\n") if "\n" in message else ""
    return message


def git_variables(
    *,
    ref: str,
    ref_is_tag: bool | None,
    sha: str | None,
    before_sha: str | None,
    commit_message: str | None,
    default_branch: str | None,
    pipeline_source: str,
    commit_author: str | None = None,
    commit_timestamp: str | None = None,
) -> dict[str, str]:
    """The git-derived predefined variables GitLab sets; `ref_is_tag=None` (unknown) sets
    neither CI_COMMIT_BRANCH nor CI_COMMIT_TAG, and a None message sets no message variables."""
    out = {
        "CI_COMMIT_SHA": sha or "",
        "CI_COMMIT_SHORT_SHA": (sha or "")[:8],
        "CI_COMMIT_REF_NAME": ref,
        "CI_COMMIT_REF_SLUG": ref_slug(ref),
        "CI_COMMIT_BEFORE_SHA": before_sha or ZERO_SHA,
        "CI_PIPELINE_SOURCE": pipeline_source,
    }
    if ref_is_tag is True:
        out["CI_COMMIT_TAG"] = ref
    elif ref_is_tag is False:
        out["CI_COMMIT_BRANCH"] = ref
    if commit_message is not None:
        out["CI_COMMIT_MESSAGE"] = commit_message
        out["CI_COMMIT_TITLE"] = commit_title(commit_message)
        out["CI_COMMIT_DESCRIPTION"] = commit_description(commit_message)
    if default_branch:
        out["CI_DEFAULT_BRANCH"] = default_branch
    if commit_author:
        out["CI_COMMIT_AUTHOR"] = commit_author
    if commit_timestamp:
        out["CI_COMMIT_TIMESTAMP"] = commit_timestamp
    return out


_SCP_URL = re.compile(r"^[A-Za-z0-9._-]+@(?P<host>[A-Za-z0-9.-]+):(?P<path>.*)$")


def project_variables(source_url: str | None, project: str, fallback_path: str) -> dict[str, str]:
    """The project and server variables GitLab derives from the project, here from the
    repository URL (https://git.example.com/team/app.git: CI_PROJECT_PATH team/app,
    CI_SERVER_URL https://git.example.com). Without a URL (or for file:// ones), the project
    path is `fallback_path` and no server variables are set. CI_PROJECT_ID is a stable number
    derived from the path (GitLab's is the project's database id)."""
    path, server = fallback_path, None
    host, port, protocol = "", None, "https"
    if source_url:
        scp = _SCP_URL.match(source_url)
        if scp and "://" not in source_url:
            host, raw_path = scp["host"], scp["path"]
        else:
            parts = urlsplit(source_url)
            host, raw_path = parts.hostname or "", parts.path
            if parts.scheme in ("http", "https"):
                # ssh and git URLs name a host whose web server is assumed on https's port.
                protocol, port = parts.scheme, parts.port
        repo_path = raw_path.strip("/").removesuffix(".git").strip("/")
        if host and repo_path:
            path = repo_path
            server = f"{protocol}://{host}" + (f":{port}" if port else "")
            port = port or (443 if protocol == "https" else 80)
    namespace, _, _ = path.rpartition("/")
    out = {
        "CI_PROJECT_ID": str(int(hashlib.sha256(path.encode("utf-8")).hexdigest()[:8], 16)),
        "CI_PROJECT_PATH": path,
        "CI_PROJECT_PATH_SLUG": ref_slug(path),
        "CI_PROJECT_NAMESPACE": namespace,
        "CI_PROJECT_ROOT_NAMESPACE": path.split("/", 1)[0] if namespace else "",
        "CI_PROJECT_TITLE": project,
    }
    if server is not None:
        out |= {
            "CI_SERVER_URL": server,
            "CI_SERVER_HOST": host,
            "CI_SERVER_PORT": str(port),
            "CI_SERVER_PROTOCOL": protocol,
            "CI_PROJECT_URL": f"{server}/{path}",
        }
    return out


def project_name(pipeline: PipelineSpec, run: PipelineRun) -> str:
    """CI_PROJECT_NAME: the repository's name, else the pipeline's, else the run's."""
    if pipeline.source is not None:
        base = posixpath.basename(pipeline.source.url.rstrip("/").split(":")[-1])
        base = base.removesuffix(".git")
        cleaned = slug(base)
        if cleaned:
            return cleaned
    return slug(run.pipeline_name or "") or slug(run.name) or "project"


def predefined_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob, options: RegistryNames
) -> dict[str, str]:
    """GitLab's predefined variables. The git facts (CI_COMMIT_MESSAGE/TITLE/DESCRIPTION,
    CI_COMMIT_BRANCH or CI_COMMIT_TAG, CI_DEFAULT_BRANCH) come from the run's
    `status.evaluation`, written when the run started; without it they are not set."""
    assert run.spec is not None
    revision = run.spec.revision
    project = project_name(pipeline, run)
    evaluation = run.status.evaluation
    git = git_variables(
        ref=revision.ref,
        ref_is_tag=evaluation.ref_is_tag if evaluation is not None else None,
        sha=revision.sha,
        before_sha=revision.before_sha,
        commit_message=evaluation.commit_message if evaluation is not None else None,
        default_branch=evaluation.default_branch if evaluation is not None else None,
        pipeline_source=run.spec.pipeline_source,
        commit_author=evaluation.commit_author if evaluation is not None else None,
        commit_timestamp=evaluation.commit_timestamp if evaluation is not None else None,
    )
    fallback_path = f"{run.metadata.namespace or 'default'}/{project}"
    out = {
        "CI": "true",
        "GITLAB_CI": "true",  # scripts test it to know they run under GitLab CI
        "CI_SERVER": "yes",
        "CONVEYOR": "true",
        **git,
        # Conveyor has no protected branches (Environments carry the protection).
        "CI_COMMIT_REF_PROTECTED": "false",
        "CI_PIPELINE_ID": run.metadata.uid or "",
        "CI_JOB_NAME": job.name,
        "CI_JOB_STAGE": job.stage,
        "CI_NODE_TOTAL": "1",  # parallel jobs carry their own
        "CI_PROJECT_NAME": project,
        "CI_BUILDS_DIR": BUILDS_DIR,
        "CI_PROJECT_DIR": f"{BUILDS_DIR}/{project}",
        **project_variables(
            pipeline.source.url if pipeline.source else None, project, fallback_path
        ),
    }
    if run.metadata.creation_timestamp is not None:
        created = run.metadata.creation_timestamp.astimezone(datetime.UTC)
        out["CI_PIPELINE_CREATED_AT"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if job.when == "manual":
        out["CI_JOB_MANUAL"] = "true"  # it runs because someone played it
    if options.registry:
        out["CI_REGISTRY"] = options.registry
    if options.registry_image:
        out["CI_REGISTRY_IMAGE"] = options.registry_image
    return out
