"""Artifacts and caches, the pure rules (GitLab's semantics): which jobs' artifacts a job downloads,
the cache keys it tries, where objects live in the store, when they expire and whether they are
kept. No I/O: the data plane (store, transfer binary, status) calls these.

GitLab sources: `doc/ci/yaml` (`artifacts`, `dependencies`, `needs:artifacts`, `cache`),
`lib/gitlab/ci/pipeline/seed/build/cache.rb` (keys from files: the files' blob ids since GitLab
18.4, `hash_of_file_contents`), `lib/gitlab/ci/build/cache.rb` (the default prefix, `cache_prefix`),
`Ci::Build#cache` and the runner's key handling (fallback keys, CACHE_FALLBACK_KEY).
"""

from __future__ import annotations

import datetime
import hashlib
import posixpath
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote

from conveyor.api.durations import parse_human_duration
from conveyor.api.pipeline import (
    ArtifactReports,
    Artifacts,
    Cache,
    PipelineJob,
    PipelineSpec,
)
from conveyor.api.pipelinerun import ArtifactRecord, JunitSummary
from conveyor.engine.variables.expand import expand

DEFAULT_ARCHIVE_NAME = "artifacts"  # GitLab's default artifacts:name
DEFAULT_CACHE_KEY = "default"  # GitLab's key when none is given
CACHE_FALLBACK_KEY_VARIABLE = "CACHE_FALLBACK_KEY"
# The report a `scan` job writes in its working directory (GitLab's container scanning schema).
CONTAINER_SCANNING_REPORT = "gl-container-scanning-report.json"
DEFAULT_EXPIRE_IN = "30 days"  # GitLab.com's default expiry of job artifacts
NEVER = "never"

ARTIFACTS_ROOT = "artifacts"
CACHES_ROOT = "caches"

Lookup = Callable[[str], str | None]


@dataclass(frozen=True)
class KeptRecord:
    """What a finished attempt kept, as its status.jobs entry records it: the files in the
    store (empty: read, nothing kept) and what its JUnit reports say."""

    artifacts: tuple[ArtifactRecord, ...]
    tests: JunitSummary | None = None


class CacheKeyError(ValueError):
    """A cache key GitLab refuses as written (`/` in it, `.` or `..`), or one that is empty
    once its variables are expanded and it is sanitised as the runner does."""


# --- which artifacts a job downloads -------------------------------------------------------


def artifact_sources(
    spec: PipelineSpec, job_name: str, present: Collection[str] | None = None
) -> tuple[str, ...]:
    """The jobs whose artifacts `job_name` downloads, in pipeline order (later ones are
    extracted over earlier ones).

    GitLab: `dependencies: [...]` names exactly them (`[]`: none); otherwise a `needs` job gets
    its needs whose `artifacts` is not false, and a stage job every job of the earlier stages.
    `present`: the jobs in the run (rules may exclude some); default every job."""
    job = spec.job(job_name)
    if job is None:
        raise KeyError(job_name)
    names = [j.name for j in spec.jobs]
    available = set(names) if present is None else set(present) & set(names)
    if job.dependencies is not None:
        wanted = set(job.dependencies)
    else:
        needs = job.dag_needs(available)
        if needs is not None:
            wanted = set(needs) - set(job.needs_without_artifacts)
        else:
            index = spec.stages.index(job.stage) if job.stage in spec.stages else 0
            earlier = set(spec.stages[:index])
            wanted = {j.name for j in spec.jobs if j.stage in earlier}
    wanted &= available
    wanted.discard(job_name)
    stage_index = {s: i for i, s in enumerate(spec.stages)}
    ordered = sorted(
        (j for j in spec.jobs if j.name in wanted), key=lambda j: stage_index.get(j.stage, 0)
    )
    return tuple(j.name for j in ordered)


def validate_artifacts(spec: PipelineSpec) -> list[str]:
    """Problems of `dependencies`, `needsWithoutArtifacts`, `artifacts` and `cache`, each
    naming the job and field (GitLab's pipeline-creation errors)."""
    problems: list[str] = []
    by_name = {j.name: j for j in spec.jobs}
    stage_index = {s: i for i, s in enumerate(spec.stages)}
    for job in spec.jobs:
        needs = {*(job.needs or ()), *job.optional_needs}
        is_dag = job.needs is not None or bool(job.optional_needs)
        for dependency in job.dependencies or ():
            other = by_name.get(dependency)
            if other is None:
                problems.append(
                    f"job '{job.name}': dependencies: job '{dependency}' does not exist in the "
                    "pipeline"
                )
            elif is_dag:
                if dependency not in needs:
                    problems.append(
                        f"job '{job.name}': dependencies: '{dependency}' should be part of needs"
                    )
            elif stage_index.get(other.stage, 0) >= stage_index.get(job.stage, 0):
                problems.append(
                    f"job '{job.name}': dependencies: '{dependency}' is not in an earlier stage "
                    f"(it is in '{other.stage}')"
                )
        for need in job.needs_without_artifacts:
            if need not in needs:
                problems.append(
                    f"job '{job.name}': needsWithoutArtifacts: '{need}' is not in needs or "
                    "optionalNeeds"
                )
        if job.artifacts is not None and job.artifacts.expire_in is not None:
            try:
                expire_seconds(job.artifacts.expire_in)
            except ValueError as err:
                problems.append(f"job '{job.name}': artifacts.expireIn: {err}")
        for index, cache in enumerate(job.cache):
            where = f"job '{job.name}': cache[{index}]"
            if cache.key is not None:
                # GitLab checks the key as written; once expanded, the runner sanitises it.
                try:
                    check_cache_key(cache.key)
                except CacheKeyError as err:
                    problems.append(f"{where}: key {cache.key!r}: {err}")
            if not cache.paths and not cache.untracked:
                problems.append(f"{where}: paths: give paths or untracked: true")
    return problems


# --- artifacts: what is kept, under which name, until when ----------------------------------


def keeps_artifacts(job: PipelineJob) -> bool:
    """A scripted job with artifacts, or a Trivy scan (its GitLab report; Clair's image has no
    shell to run the upload from). Build jobs run the builder's image: none."""
    if job.build is not None:
        return False
    if job.scan is not None:
        return job.scan.scanner != "clair"
    return effective_artifacts(job) is not None


def effective_artifacts(job: PipelineJob) -> Artifacts | None:
    """The job's artifacts, with what Conveyor adds: a `scan` job keeps its GitLab container
    scanning report (`gl-container-scanning-report.json`) as a `container_scanning` report."""
    artifacts = job.artifacts
    if job.scan is None:
        return artifacts
    if artifacts is None:
        artifacts = Artifacts(when="always")  # the report matters most when the scan fails
    reports = artifacts.reports or ArtifactReports()
    if CONTAINER_SCANNING_REPORT not in reports.container_scanning:
        reports = replace(
            reports,
            container_scanning=(*reports.container_scanning, CONTAINER_SCANNING_REPORT),
        )
    return replace(artifacts, reports=reports)


def report_paths(artifacts: Artifacts | None) -> dict[str, tuple[str, ...]]:
    """Report kind (the status' ArtifactRecord.kind: `junit`, `container_scanning`) -> globs."""
    if artifacts is None or artifacts.reports is None:
        return {}
    reports = artifacts.reports
    out = {"junit": reports.junit, "container_scanning": reports.container_scanning}
    return {kind: paths for kind, paths in out.items() if paths}


def should_upload(artifacts: Artifacts | None, succeeded: bool) -> bool:
    """Whether the job's archive (`paths`, `untracked`) is kept, given its script's result.

    GitLab: `when: on_success` (default) only for a successful job, `on_failure` only for a
    failed one, `always` both. A job whose failure is allowed has failed for this purpose.
    Reports do not follow `when`: see `should_upload_reports`."""
    if artifacts is None:
        return False
    if artifacts.when == "always":
        return True
    return succeeded == (artifacts.when == "on_success")


def has_archive(artifacts: Artifacts | None) -> bool:
    """Whether the job makes an archive: it has `paths` or `untracked` (GitLab makes none for a
    job with reports only)."""
    return artifacts is not None and (bool(artifacts.paths) or artifacts.untracked)


def should_upload_reports(artifacts: Artifacts | None) -> bool:
    """Whether the job's reports are kept: whenever it has some, whatever its result (GitLab
    uploads reports with `when: always`, so a failed test job still shows its tests)."""
    return bool(report_paths(artifacts))


def archive_name(artifacts: Artifacts | None, lookup: Lookup = lambda _: None) -> str:
    """The archive's name without extension: artifacts.name with variables expanded (GitLab
    default `artifacts`); `/` become `-` so the name stays one object name component."""
    if artifacts is None or not artifacts.name:
        return DEFAULT_ARCHIVE_NAME
    name = expand(artifacts.name, lookup).replace("/", "-").strip()
    return name if name not in ("", ".", "..") else DEFAULT_ARCHIVE_NAME


def expire_seconds(expire_in: str) -> int | None:
    """Seconds in a GitLab `expire_in` (`30 mins`, `1 week`, `3600`); None for `never`.
    Raises ValueError naming the text."""
    text = expire_in.strip()
    if text.lower() == NEVER:
        return None
    seconds = parse_human_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be more than 0 seconds: {expire_in!r}")
    return seconds


def expires_at(
    artifacts: Artifacts | None,
    finished_at: datetime.datetime,
    default_expire_in: str | None = DEFAULT_EXPIRE_IN,
) -> datetime.datetime | None:
    """When the job's artifacts expire: `finished_at` plus `expireIn` (else the operator's
    default); None: never (`never`, or no default)."""
    text = artifacts.expire_in if artifacts is not None else None
    text = text or default_expire_in
    if not text:
        return None
    seconds = expire_seconds(text)
    return None if seconds is None else finished_at + datetime.timedelta(seconds=seconds)


# --- object names ---------------------------------------------------------------------------


def _component(text: str) -> str:
    """One path component of an object name: job names may hold `/`, spaces and `:`."""
    return quote(text, safe="")


def run_prefix(namespace: str, run: str, run_uid: str = "") -> str:
    """Every artifact of a run is under this prefix (deleted with the run)."""
    owner = f"{run}-{run_uid}" if run_uid else run
    return f"{ARTIFACTS_ROOT}/{namespace}/{owner}/"


def namespace_prefix(namespace: str) -> str:
    """Every artifact of a namespace; one namespace's objects never share another's prefix."""
    return f"{ARTIFACTS_ROOT}/{namespace}/"


def artifact_prefix(namespace: str, run: str, job: str, attempt: int, run_uid: str = "") -> str:
    """The objects of one attempt of one job: `artifacts/NS/RUN[-UID]/JOB/ATTEMPT/`."""
    return f"{run_prefix(namespace, run, run_uid)}{_component(job)}/{attempt}/"


def artifact_object(
    namespace: str, run: str, job: str, attempt: int, file_name: str, run_uid: str = ""
) -> str:
    """The object of one file of an attempt (its archive, or a report by its file name)."""
    return artifact_prefix(namespace, run, job, attempt, run_uid) + _component(file_name)


def cache_object(namespace: str, pipeline: str, key: str) -> str:
    """The object of a cache: per namespace and pipeline (GitLab: per project), by key."""
    return f"{CACHES_ROOT}/{namespace}/{_component(pipeline)}/{_component(key)}"


# --- caches ---------------------------------------------------------------------------------


def check_cache_key(key: str) -> str:
    """`key` if GitLab accepts it, else CacheKeyError: no `/` (nor `%2F`), not `.`/`..` (nor
    `%2E`), not empty."""
    if not key.strip():
        raise CacheKeyError("must not be empty")
    if "/" in key or "%2f" in key.lower():
        raise CacheKeyError("must not contain '/' (or %2F)")
    if key in (".", "..") or key.lower() in ("%2e", "%2e%2e"):
        raise CacheKeyError("must not be '.' or '..' (or %2E)")
    return key


def sanitize_cache_key(key: str) -> str:
    """An expanded key as GitLab's runner sanitises it (`sanitizeCacheKey`): `%2F`/`%2E` and
    `\\` decoded to `/` and `.`, the path cleaned and rooted so it cannot climb out (`a/../b`
    is `b`), trailing spaces of the last component dropped. Raises CacheKeyError when nothing is
    left (the runner then skips that key)."""
    decoded = key
    for encoded, plain in (("%2f", "/"), ("%2F", "/"), ("%2e", "."), ("%2E", ".")):
        decoded = decoded.replace(encoded, plain)
    cleaned = posixpath.normpath("/" + decoded.replace("\\", "/").lstrip("/"))
    while cleaned:
        cut = cleaned.rfind("/")
        folder, last = cleaned[: cut + 1], cleaned[cut + 1 :].rstrip()
        if not last:
            cleaned = folder[:-1]
            continue
        return posixpath.join(folder[1:], last) if folder[1:] else last
    raise CacheKeyError(f"cache key {key!r} could not be sanitized")


def files_digest(blob_ids: Sequence[str | None]) -> str:
    """GitLab's hash for `key:files`: SHA-1 of the files' git blob ids at the run's commit,
    sorted, unique, joined by `-`; `default` when none of the files exists (GitLab's
    `digest_from_hashes`)."""
    ids = sorted({b for b in blob_ids if b})
    if not ids:
        return DEFAULT_CACHE_KEY
    return hashlib.sha1("-".join(ids).encode()).hexdigest()  # GitLab's key: SHA-1


@dataclass(frozen=True)
class CacheKeys:
    """The keys of one cache of a job: `key` is where it is saved and tried first; then
    `fallbacks` in order (its fallbackKeys, then CACHE_FALLBACK_KEY)."""

    key: str
    fallbacks: tuple[str, ...] = ()

    @property
    def restore_order(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.key, *self.fallbacks)))


def cache_keys(
    cache: Cache,
    index: int,
    lookup: Lookup,
    blob_ids: Callable[[Sequence[str]], Sequence[str | None]] | None = None,
) -> CacheKeys:
    """The keys of the `index`-th cache of a job, variables expanded with `lookup` (the job's).

    `key` string: expanded. `keyFiles`: `PREFIX-HASH` with PREFIX the expanded prefix (default
    `key_files_prefix`) and HASH `files_digest` of `blob_ids(files)` (the blob ids at the run's
    commit of the files each pattern names; see `conveyor.gitlab.globs.key_file_match`). No
    key: `default`. Every key is then sanitised as the runner does (`sanitize_cache_key`).
    Raises CacheKeyError when the key is empty once sanitised (skip the cache, as the runner
    does); such fallback keys are left out."""
    if cache.key_files is not None:
        if blob_ids is None:
            raise ValueError("keyFiles needs the files' blob ids")
        prefix = (
            expand(cache.key_files.prefix, lookup)
            if cache.key_files.prefix
            else key_files_prefix(index, cache.key_files.files)
        )
        digest = files_digest(blob_ids(cache.key_files.files))
        key = "-".join(p for p in (prefix, digest) if p)
    elif cache.key is not None:
        key = expand(cache.key, lookup)
    else:
        key = DEFAULT_CACHE_KEY
    key = sanitize_cache_key(key)
    fallbacks: list[str] = []
    candidates = [expand(k, lookup) for k in cache.fallback_keys]
    global_fallback = lookup(CACHE_FALLBACK_KEY_VARIABLE)
    # The runner refuses a global fallback ending in -protected (it could read protected refs'
    # caches in GitLab); kept for fidelity.
    if global_fallback and not global_fallback.rstrip(". ").endswith("-protected"):
        candidates.append(global_fallback)
    for candidate in candidates:
        try:
            fallbacks.append(sanitize_cache_key(candidate))
        except CacheKeyError:
            continue
    return CacheKeys(key, tuple(k for k in dict.fromkeys(fallbacks) if k != key))


def key_files_prefix(index: int, files: Sequence[str]) -> str:
    """GitLab's prefix of a `key:files` key without `prefix`: the cache's index, `_`, and each
    file's name up to its first `.`, joined by `_` (`[deps.lock]` at index 0: `0_deps`), so two
    caches keyed by different files never share a key (GitLab issue 388374)."""
    if not files:
        return str(index)
    return f"{index}_" + "_".join(f.split(".")[0] for f in files)


def uses_untracked(job: PipelineJob) -> bool:
    """Whether the job archives git's untracked files (`artifacts:untracked` or a cache's
    `untracked`): its checkout then records which files git tracks."""
    artifacts = effective_artifacts(job)
    return bool(artifacts is not None and artifacts.untracked) or any(
        c.untracked for c in job.cache
    )


def cache_restores(cache: Cache) -> bool:
    """Restored before the script unless `policy: push`."""
    return cache.policy != "push"


def cache_saves(cache: Cache, succeeded: bool) -> bool:
    """Saved after the script unless `policy: pull`, and per its `when` (as artifacts)."""
    if cache.policy == "pull":
        return False
    if cache.when == "always":
        return True
    return succeeded == (cache.when == "on_success")


def normalize_path(path: str) -> str | None:
    """A path of `paths`/`exclude` relative to the checkout, normalised; None if it leaves the
    checkout (GitLab refuses paths outside the project directory)."""
    if path.startswith("/"):
        return None
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm
