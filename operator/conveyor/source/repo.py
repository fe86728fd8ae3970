"""Reads of one cached bare repository. Not locked here: RepoCache holds the repository's lock
around every use. Plumbing commands (config-independent) for lists, GitPython for objects."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import git

from conveyor.gitlab.globs import is_key_file_pattern, key_file_match
from conveyor.source.credentials import local_env
from conveyor.source.errors import (
    INVALID,
    PATH_NOT_FOUND,
    REF_NOT_FOUND,
    SHA_NOT_FOUND,
    TOO_LARGE,
    SourceUnavailable,
)
from conveyor.source.gitrun import failure, run_git

ZERO_SHA = re.compile(r"^0+$")
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")
_FULL_SHA = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
# Revision syntax (~ ^ : @{ ..) or option-like names must not reach rev-parse as a ref name.
_BAD_REF = re.compile(r"(^-|\.\.|@\{|[\x00-\x20~^:?*\[\\\x7f]|^/|/$|\.lock$|^@$)")


def is_sha(text: str) -> bool:
    return bool(_SHA.match(text))


def is_full_sha(text: str) -> bool:
    return bool(_FULL_SHA.match(text))


def is_zero_sha(text: str | None) -> bool:
    return not text or bool(ZERO_SHA.match(text))


def ref_candidates(ref: str) -> list[str]:
    """Full ref names `ref` may mean, in GitLab's order: branch, then tag."""
    if not ref or _BAD_REF.search(ref):
        return []
    if ref.startswith(("refs/heads/", "refs/tags/")):
        return [ref]
    return [f"refs/heads/{ref}", f"refs/tags/{ref}"]


def _paths(out: bytes) -> frozenset[str]:
    # -z output: NUL-separated raw paths; surrogateescape keeps odd bytes round-trippable.
    return frozenset(p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p)


class LocalRepo:
    def __init__(self, path: Path, display: str, timeout: float, max_read_bytes: int) -> None:
        self.path = path
        self.display = display
        self.timeout = timeout
        self.max_read_bytes = max_read_bytes
        self._env = local_env(path)
        self._repo: git.Repo | None = None

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()  # ends GitPython's persistent cat-file processes
            self._repo = None

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.path)
        return self._repo

    def _git(self, *args: str) -> bytes:
        result = run_git(args, self._env, self.timeout, cwd=self.path)
        if not result.ok:
            raise failure(result, self.display, args[0], self.timeout)
        return result.stdout

    def _rev(self, name: str) -> str | None:
        result = run_git(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"],
            self._env,
            self.timeout,
            cwd=self.path,
        )
        return result.stdout.decode().strip() if result.ok else None

    # -- presence and resolution -------------------------------------------------------------

    def commit_sha(self, sha: str) -> str | None:
        """The full sha of commit `sha` (full or abbreviated), if the repository has it."""
        return self._rev(sha.lower()) if is_sha(sha) else None

    def resolve_ref(self, ref: str) -> str | None:
        """Commit sha of a branch or tag (branch first); a sha is accepted as itself."""
        for name in ref_candidates(ref):
            sha = self._rev(name)
            if sha:
                return sha
        return self.commit_sha(ref) if is_sha(ref) else None

    def has(self, item: str) -> bool:
        """Whether `item` (a sha or a ref) resolves, for deciding whether to fetch."""
        if is_full_sha(item):
            return self.commit_sha(item) is not None  # one rev-parse, not three
        return self.resolve_ref(item) is not None

    def require_commit(self, sha: str) -> str:
        found = self.commit_sha(sha)
        if found is None:
            raise SourceUnavailable(
                f"repository {self.display}: sha {sha[:64]} not found", SHA_NOT_FOUND
            )
        return found

    def require_ref(self, ref: str) -> str:
        found = self.resolve_ref(ref)
        if found is None:
            raise SourceUnavailable(
                f"repository {self.display}: ref {ref[:255]} not found", REF_NOT_FOUND
            )
        return found

    def is_tag(self, ref: str) -> bool | None:
        """True for a tag, False for a branch (branches win), None when neither exists."""
        if ref.startswith("refs/tags/"):
            return True
        if ref.startswith("refs/heads/"):
            return False
        for name in ref_candidates(ref):
            if self._rev(name):
                return name.startswith("refs/tags/")
        return None

    # -- commits and diffs -------------------------------------------------------------------

    def commit_message(self, sha: str) -> str:
        return str(self.repo.commit(self.require_commit(sha)).message)

    def commit_author(self, sha: str) -> tuple[str, str]:
        """(`Name <email>`, the commit's time in ISO 8601): CI_COMMIT_AUTHOR and
        CI_COMMIT_TIMESTAMP."""
        commit = self.repo.commit(self.require_commit(sha))
        author = f"{commit.author.name} <{commit.author.email}>"
        return author, commit.committed_datetime.isoformat()

    def diff(self, old: str, new: str) -> frozenset[str]:
        """Paths that differ between two commits; a rename counts as its delete and its add."""
        out = self._git("diff-tree", "-r", "-z", "--name-only", "--no-renames", old, new, "--")
        return _paths(out)

    def parent(self, sha: str) -> str | None:
        return self._rev(f"{sha}~1")

    def changed_paths(self, sha: str, before_sha: str | None) -> frozenset[str] | None:
        """Files touched by the push `before..sha`; `sha~1..sha` without a before sha (all
        files for a root commit); None when `before_sha` is not in the repository."""
        new = self.require_commit(sha)
        if is_zero_sha(before_sha):
            parent = self.parent(new)
            return self.diff(parent, new) if parent else self.files(new)
        assert before_sha is not None
        old = self.commit_sha(before_sha)
        if old is None:
            return None
        return frozenset() if old == new else self.diff(old, new)

    def changed_paths_since(self, ref: str, sha: str) -> frozenset[str] | None:
        """`merge-base(ref, sha)..sha` (GitLab `compare_to`); None when `ref` is unknown or the
        histories share no commit."""
        new = self.require_commit(sha)
        base_tip = self.resolve_ref(ref)
        if base_tip is None:
            return None
        result = run_git(["merge-base", base_tip, new], self._env, self.timeout, cwd=self.path)
        if result.returncode == 1 and not result.timed_out:
            return None  # unrelated histories
        if not result.ok:
            raise failure(result, self.display, "merge-base", self.timeout)
        return self.diff(result.stdout.decode().strip(), new)

    # -- trees -------------------------------------------------------------------------------

    def files(self, sha: str) -> frozenset[str]:
        """Every file (blob, including symlinks; not submodules) of the tree at `sha`."""
        commit = self.require_commit(sha)
        out = self._git("ls-tree", "-r", "-z", "--full-tree", commit)
        files = set()
        for entry in out.split(b"\0"):
            meta, _, path = entry.partition(b"\t")
            if path and meta.split(b" ")[1:2] == [b"blob"]:
                files.add(path.decode("utf-8", "surrogateescape"))
        return frozenset(files)

    def blob_ids(self, sha: str, patterns: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """For each `cache:key:files` entry, the blob ids at `sha` of the files it names, as
        GitLab finds them: a pattern (with `*`) every file it matches, any other entry the file
        of exactly that path. Blobs only (symlinks too, as GitLab's `blobs_at`): a folder or a
        submodule names none."""
        commit = self.require_commit(sha)
        out = self._git("ls-tree", "-r", "-z", "--full-tree", commit)
        blobs: dict[str, str] = {}
        for entry in out.split(b"\0"):
            meta, _, path = entry.partition(b"\t")
            fields = meta.split(b" ")
            if path and fields[1:2] == [b"blob"] and len(fields) == 3:
                blobs[path.decode("utf-8", "surrogateescape")] = fields[2].decode()
        found: dict[str, tuple[str, ...]] = {}
        for pattern in dict.fromkeys(patterns):
            if is_key_file_pattern(pattern):
                found[pattern] = tuple(b for p, b in blobs.items() if key_file_match(pattern, p))
            else:
                found[pattern] = (blobs[pattern],) if pattern in blobs else ()
        return found

    def _tree_item(self, sha: str, path: str) -> git.objects.base.IndexObject | None:
        tree = self.repo.commit(self.require_commit(sha)).tree
        clean = path.strip("/")
        if clean in ("", "."):
            return tree
        if any(part in ("", ".", "..") for part in clean.split("/")):
            raise SourceUnavailable(f"repository {self.display}: invalid path {path!r}", INVALID)
        try:
            return tree / clean
        except KeyError:
            return None

    def read_file(self, sha: str, path: str) -> bytes:
        item = self._tree_item(sha, path)
        if not isinstance(item, git.Blob):
            raise SourceUnavailable(
                f"repository {self.display}: file {path} not found at {sha[:12]}", PATH_NOT_FOUND
            )
        self._check_size(item.size, path)
        return bytes(item.data_stream.read())

    def read_tree(self, sha: str, prefix: str) -> dict[str, bytes]:
        """Files under folder `prefix` (keys: full repository paths); {} if there is none."""
        item = self._tree_item(sha, prefix)
        if item is None:
            return {}
        if not isinstance(item, git.Tree):
            raise SourceUnavailable(
                f"repository {self.display}: {prefix} is not a folder at {sha[:12]}", INVALID
            )
        blobs = [b for b in item.traverse() if isinstance(b, git.Blob)]
        self._check_size(sum(b.size for b in blobs), prefix or "/")
        return {str(b.path): bytes(b.data_stream.read()) for b in blobs}

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_read_bytes:
            raise SourceUnavailable(
                f"repository {self.display}: {what} is {size} bytes, over the read cap of "
                f"{self.max_read_bytes} bytes",
                TOO_LARGE,
            )
