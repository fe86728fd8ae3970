"""The operator's git access: a pipeline's repository, read with the credentials of the Secret
it names, on a thread pool of its own (clones and fetches must not hold up Job creation)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.gitlab.context import GitFacts, compare_to_refs, uses_git_paths
from conveyor.kube.client import Kube
from conveyor.source import RepoCache, SourceUnavailable
from conveyor.triggers import parse_ls_remote, split_remote_refs

__all__ = ["SourceUnavailable", "Sources"]

# file:// is opt-in: with it a Pipeline could read any repository on the operator's filesystem.
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})


class Sources:
    def __init__(
        self, kube: Kube, cache_dir: Path, *, local: bool = False, threads: int = 4
    ) -> None:
        self.kube = kube
        schemes = REMOTE_SCHEMES | ({"file"} if local else set())
        self.cache = RepoCache(cache_dir, allowed_schemes=schemes)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="git")

    async def _run(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: call(*args, **kwargs))

    async def credentials(self, namespace: str, secret: str | None) -> dict[str, bytes] | None:
        if secret is None:
            return None
        try:
            return await self._run(self.kube.read_secret_data, namespace, secret)
        except ApiException as e:
            if e.status == 404:
                raise SourceUnavailable(f"credentials Secret {namespace}/{secret} not found") from e
            if e.status == 403:
                raise SourceUnavailable(
                    f"the operator may not read Secret {namespace}/{secret}: bind the ClusterRole "
                    f"conveyor-secret-reader to it in namespace {namespace}"
                ) from e
            raise

    async def facts(
        self, namespace: str, pipeline: PipelineSpec, run: PipelineRun
    ) -> tuple[str | None, GitFacts]:
        """The commit the run builds and what git says of it. A pipeline without a source has
        no git facts: changes count as unknown (true), as GitLab does for unknown pushes."""
        assert run.spec is not None
        revision = run.spec.revision
        if pipeline.source is None:
            return revision.sha, GitFacts()
        creds = await self.credentials(namespace, pipeline.source.credentials_secret)
        variables = {**pipeline.variables, **run.spec.variables}
        changes, exists = uses_git_paths(pipeline)
        wanted = revision.sha or await self.remote_head(namespace, pipeline, revision.ref)
        sha, facts = await self._run(
            self.cache.git_facts,
            pipeline.source.url,
            creds,
            revision.ref,
            wanted,
            revision.before_sha,
            compare_to_refs(pipeline, variables),
            changes=changes,
            files=exists,
        )
        if revision.before_sha is not None and set(revision.before_sha) == {"0"}:
            # A push of a new branch or tag: GitLab cannot say what changed, and counts every
            # `changes` rule as true. (No beforeSha at all diffs against the parent instead.)
            facts = dataclasses.replace(facts, changed_paths=None)
        return sha, facts

    async def key_file_blobs(
        self, namespace: str, pipeline: PipelineSpec, sha: str | None, patterns: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        """`cache:key:files` entry -> the blob ids at the run's commit of the files it names.
        Without a source (or a commit) no file exists: GitLab's key is then PREFIX-default."""
        if pipeline.source is None or not sha or not patterns:
            return {p: () for p in patterns}
        creds = await self.credentials(namespace, pipeline.source.credentials_secret)
        found: dict[str, tuple[str, ...]] = await self._run(
            self.cache.blob_ids, pipeline.source.url, creds, sha, list(patterns)
        )
        return found

    async def remote_head(self, namespace: str, pipeline: PipelineSpec, ref: str) -> str:
        """What `ref` points to on the remote now. Asked of the remote, not the cache: a cache
        fetched moments ago may hold the previous head, and a run of a ref builds its head."""
        branches, tags = await self.remote_refs(namespace, pipeline)
        short = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if not ref.startswith("refs/tags/") and short in branches:
            return branches[short]
        if short in tags:
            return tags[short]
        raise SourceUnavailable(f"ref {ref!r} does not exist in the repository")

    async def remote_refs(
        self, namespace: str, pipeline: PipelineSpec
    ) -> tuple[dict[str, str], dict[str, str]]:
        """(branches, tags) of the pipeline's repository -> commit, asked of the remote."""
        if pipeline.source is None:
            raise SourceUnavailable("the pipeline has no source to poll (spec.source.url)")
        creds = await self.credentials(namespace, pipeline.source.credentials_secret)
        text = await self._run(self.cache.ls_remote, pipeline.source.url, creds)
        return split_remote_refs(parse_ls_remote(text))

    async def deploy_inputs(
        self,
        namespace: str,
        pipeline: PipelineSpec,
        sha: str,
        before_sha: str | None,
        templates: str,
    ) -> tuple[dict[str, bytes], frozenset[str] | None]:
        """The templates folder at `sha`, and the paths the push changed (None: unknown)."""
        assert pipeline.source is not None
        url = pipeline.source.url
        creds = await self.credentials(namespace, pipeline.source.credentials_secret)
        prefix = templates.rstrip("/") + "/"
        files = await self._run(self.cache.read_tree, url, creds, sha, prefix)
        if not files:
            raise SourceUnavailable(f"no templates under {prefix} at commit {sha[:8]}")
        if before_sha is not None and set(before_sha) == {"0"}:
            return files, None  # a new branch or tag: what changed is unknown
        changed = await self._run(self.cache.changed_paths, url, creds, sha, before_sha)
        return files, changed
