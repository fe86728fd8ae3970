"""RepoCache: a bounded on-disk cache of bare clones, and the queries the operator makes on them.

Thread-safe: each repository has its own lock, held for a whole query (fetch included), so the
operator can call from a thread pool. Directories are named by an HMAC of the URL and the
credentials: no URL (which may carry a token) reaches the disk, and callers with different
credentials never share a clone, so one team's access never serves another's cached objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from conveyor.gitlab.context import GitFacts
from conveyor.source.credentials import (
    GitCredentials,
    SecretData,
    local_env,
    parse_credentials,
    remote_env,
)
from conveyor.source.gitrun import failure, run_git
from conveyor.source.repo import LocalRepo, is_full_sha, is_sha, is_zero_sha
from conveyor.source.urls import SCHEMES, GitUrl, parse_url

_log = logging.getLogger(__name__)

REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_KEY_FILE = ".key"
_ENTRY_NAME = re.compile(r"^[0-9a-f]{64}$")
_SCRATCH_PREFIXES = (".tmp-", ".trash-")
DEFAULT_MAX_READ_BYTES = 16 * 1024 * 1024


@dataclass(eq=False)
class _Entry:
    key: str
    path: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    fetched_at: float | None = None  # time.monotonic() of the last successful fetch
    size: int = 0
    evicted: bool = False


@dataclass(frozen=True)
class _Target:
    url: GitUrl
    credentials: GitCredentials
    key: str

    def secrets(self) -> tuple[str, ...]:
        return self.credentials.secrets()


def _dir_size(path: Path) -> int:
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):  # removed by a concurrent gc
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


class RepoCache:
    """Bare clones under `root`, at most `max_repos` of them (and `max_bytes` if set), least
    recently used evicted first. Every method takes the repository URL and the decoded data of
    its credentials Secret (or None) and raises SourceUnavailable on failure."""

    def __init__(
        self,
        root: Path,
        max_repos: int = 64,
        max_bytes: int | None = None,
        *,
        min_fetch_interval: float = 2.0,
        timeout: float = 120.0,
        max_read_bytes: int = DEFAULT_MAX_READ_BYTES,
        allowed_schemes: Iterable[str] = SCHEMES,
        default_branch_ttl: float = 60.0,
    ) -> None:
        if max_repos < 1:
            raise ValueError("max_repos must be at least 1")
        self.root = Path(root)
        self.max_repos = max_repos
        self.max_bytes = max_bytes
        self.min_fetch_interval = min_fetch_interval
        self.timeout = timeout
        self.max_read_bytes = max_read_bytes
        self.allowed_schemes = frozenset(allowed_schemes)
        self.default_branch_ttl = default_branch_ttl
        self._lock = threading.Lock()  # guards _entries and _default_branches
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._default_branches: dict[str, tuple[float, str | None]] = {}
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._hmac_key = self._load_key()
        self._adopt()

    # -- queries -----------------------------------------------------------------------------

    def fetch(
        self, url: str, credentials: SecretData | None = None, refs: Iterable[str] = ()
    ) -> None:
        """Bring the clone up to date (cloning it first), unless it was fetched less than
        `min_fetch_interval` ago and has every ref/sha of `refs`; raise if one is still missing."""
        wanted = [r for r in refs if r]
        with self._session(url, credentials, wanted) as repo:
            for item in wanted:
                if repo.resolve_ref(item) is not None:
                    continue
                if is_sha(item):
                    repo.require_commit(item)  # raises: sha not found
                repo.require_ref(item)

    def resolve(self, url: str, credentials: SecretData | None, ref: str) -> str:
        """Commit sha of `ref`: a branch, else a tag (`refs/heads/x`, `refs/tags/x` accepted)."""
        with self._session(url, credentials, [ref]) as repo:
            return repo.require_ref(ref)

    def is_tag(self, url: str, credentials: SecretData | None, ref: str) -> bool:
        with self._session(url, credentials, [ref]) as repo:
            repo.require_ref(ref)
            return bool(repo.is_tag(ref))

    def commit_message(self, url: str, credentials: SecretData | None, sha: str) -> str:
        with self._session(url, credentials, [sha]) as repo:
            return repo.commit_message(sha)

    def changed_paths(
        self, url: str, credentials: SecretData | None, sha: str, before_sha: str | None
    ) -> frozenset[str] | None:
        """Files touched by the push `before_sha..sha` (GitLab's push semantics); `sha~1..sha`
        without a before sha, all files for a root commit; None if `before_sha` is unknown."""
        wanted = [sha] if is_zero_sha(before_sha) else [sha, str(before_sha)]
        with self._session(url, credentials, wanted) as repo:
            return repo.changed_paths(sha, before_sha)

    def changed_paths_since(
        self, url: str, credentials: SecretData | None, ref: str, sha: str
    ) -> frozenset[str] | None:
        """`merge-base(ref, sha)..sha` (GitLab `changes:compare_to`); None if it can't be told."""
        with self._session(url, credentials, [sha, ref]) as repo:
            return repo.changed_paths_since(ref, sha)

    def files(self, url: str, credentials: SecretData | None, sha: str) -> frozenset[str]:
        with self._session(url, credentials, [sha]) as repo:
            return repo.files(sha)

    def read_file(self, url: str, credentials: SecretData | None, sha: str, path: str) -> bytes:
        with self._session(url, credentials, [sha]) as repo:
            return repo.read_file(sha, path)

    def read_tree(
        self, url: str, credentials: SecretData | None, sha: str, prefix: str
    ) -> dict[str, bytes]:
        """Files under folder `prefix` by full repository path, at most `max_read_bytes` in all."""
        with self._session(url, credentials, [sha]) as repo:
            return repo.read_tree(sha, prefix)

    def blob_ids(
        self, url: str, credentials: SecretData | None, sha: str, patterns: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        """`cache:key:files` entry -> the blob ids at `sha` of the files it names
        (`LocalRepo.blob_ids`)."""
        with self._session(url, credentials, [sha]) as repo:
            return repo.blob_ids(sha, patterns)

    def branch_heads(self, url: str, credentials: SecretData | None) -> dict[str, str]:
        """Remote branches -> sha, asked of the remote itself (no clone, no fetch)."""
        target = self._target(url, credentials)
        heads: dict[str, str] = {}
        for line in self._ls_remote(target, ["--heads"], []).decode().splitlines():
            sha, _, name = line.partition("\t")
            if name.startswith("refs/heads/"):
                heads[name.removeprefix("refs/heads/")] = sha
        return heads

    def ls_remote(self, url: str, credentials: SecretData | None) -> str:
        """`git ls-remote --heads --tags` of the remote, as text (no clone, no fetch)."""
        target = self._target(url, credentials)
        return self._ls_remote(target, ["--heads", "--tags"], []).decode()

    def default_branch(self, url: str, credentials: SecretData | None) -> str | None:
        """The branch the remote's HEAD points to (None for an empty repository); remembered
        for `default_branch_ttl` seconds."""
        target = self._target(url, credentials)
        with self._lock:
            cached = self._default_branches.get(target.key)
        if cached and time.monotonic() - cached[0] < self.default_branch_ttl:
            return cached[1]
        branch = None
        for line in self._ls_remote(target, ["--symref"], ["HEAD"]).decode().splitlines():
            head, _, name = line.partition("\t")
            if head.startswith("ref: refs/heads/") and name == "HEAD":
                branch = head.removeprefix("ref: refs/heads/")
        with self._lock:
            self._default_branches[target.key] = (time.monotonic(), branch)
        return branch

    def git_facts(
        self,
        url: str,
        credentials: SecretData | None,
        ref: str,
        sha: str | None,
        before_sha: str | None,
        compare_to: Iterable[str] = (),
        *,
        changes: bool = True,
        files: bool = True,
    ) -> tuple[str, GitFacts]:
        """(sha, facts) of a run at `ref` (`sha` if given, else the ref's head) in one fetch.
        `changes`/`files` False skip the diffs/listing (see `gitlab.context.uses_git_paths`)."""
        gurl = self._target(url, credentials).url
        compare = sorted({c for c in compare_to if c})
        before = None if is_zero_sha(before_sha) else before_sha
        wanted = [sha or ref, ref, *([before] if before and changes else []), *compare]
        with self._session(url, credentials, [w for w in wanted if w]) as repo:
            resolved = repo.require_commit(sha) if sha else repo.require_ref(ref)
            ref_is_tag = repo.is_tag(ref) if ref else None
            if ref_is_tag is None and ref.startswith("refs/tags/"):
                ref_is_tag = True
            author, timestamp = repo.commit_author(resolved)
            facts = GitFacts(
                ref_is_tag=bool(ref_is_tag),  # a deleted ref (run of an old sha) counts as branch
                commit_message=repo.commit_message(resolved),
                commit_author=author,
                commit_timestamp=timestamp,
                changed_paths=repo.changed_paths(resolved, before) if changes else None,
                changed_paths_since=(
                    {c: repo.changed_paths_since(c, resolved) for c in compare} if changes else {}
                ),
                files=repo.files(resolved) if files else None,
                project_path=gurl.project_path,
            )
        # Asked of the remote after the lock is released: it needs no clone.
        return resolved, replace(facts, default_branch=self.default_branch(url, credentials))

    def cached_path(self, url: str, credentials: SecretData | None = None) -> Path | None:
        """Where the clone of `url` (with these credentials) lives, if it is cached."""
        target = self._target(url, credentials)
        with self._lock:
            entry = self._entries.get(target.key)
        return entry.path if entry is not None and entry.path.exists() else None

    # -- sessions: lock, fetch as needed, read ----------------------------------------------

    def _target(self, url: str, credentials: SecretData | None) -> _Target:
        gurl = parse_url(url, self.allowed_schemes)
        creds = parse_credentials(credentials, gurl)
        material = f"{gurl.git_url}\0{creds.fingerprint()}".encode()
        key = hmac.new(self._hmac_key, material, hashlib.sha256).hexdigest()
        return _Target(gurl, creds, key)

    @contextmanager
    def _session(
        self, url: str, credentials: SecretData | None, wanted: Sequence[str]
    ) -> Iterator[LocalRepo]:
        target = self._target(url, credentials)
        entry = self._acquire(target.key)
        repo = LocalRepo(entry.path, target.url.display, self.timeout, self.max_read_bytes)
        try:
            self._ensure(entry, target, repo, wanted)
            yield repo
        finally:
            repo.close()
            if entry.path.exists():
                os.utime(entry.path)  # the LRU order survives restarts
            else:
                self._forget(entry)  # a clone that failed holds no slot
            entry.lock.release()
            self._evict()

    def _ensure(
        self, entry: _Entry, target: _Target, repo: LocalRepo, wanted: Sequence[str]
    ) -> None:
        """Fetch unless every wanted item is present and either the clone is fresh or all of
        them are full shas (immutable). One fetch at most: what is still missing after it is
        missing from the remote too, and the query reports it."""
        if entry.path.exists():
            missing = [w for w in wanted if not repo.has(w)]
            fresh = (
                entry.fetched_at is not None
                and time.monotonic() - entry.fetched_at < self.min_fetch_interval
            )
            immutable = bool(wanted) and all(is_full_sha(w) for w in wanted)
            if not missing and (fresh or immutable):
                return
        self._fetch(entry, target)
        repo.close()  # objects changed under GitPython's cat-file processes

    def _fetch(self, entry: _Entry, target: _Target) -> None:
        started = time.monotonic()
        if entry.path.exists():
            self._run_fetch(entry.path, target)
        else:
            # Clone into a scratch directory and rename: a half-made clone never looks cached.
            scratch = self.root / f".tmp-{secrets.token_hex(8)}"
            try:
                args = ["init", "--bare", "--quiet", "--template="]  # no sample hooks
                init = run_git(args, local_env(scratch), self.timeout)
                if not init.ok:
                    raise failure(init, target.url.display, "init", self.timeout)
                self._run_fetch(scratch, target)
                os.rename(scratch, entry.path)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        entry.fetched_at = time.monotonic()
        if self.max_bytes is not None:  # walking the clone costs; only max_bytes needs it
            entry.size = _dir_size(entry.path)
        _log.debug("fetched %s in %.2fs", target.url.display, entry.fetched_at - started)

    def _run_fetch(self, git_dir: Path, target: _Target) -> None:
        # No FETCH_HEAD (it would record the URL); gc runs separately, in the foreground.
        args = ["fetch", "--prune", "--quiet", "--no-write-fetch-head", "--no-auto-maintenance"]
        args += ["--", target.url.git_url, *REFSPECS]
        with remote_env(target.url, target.credentials, self.allowed_schemes, git_dir) as (
            env,
            workdir,
        ):
            result = run_git(args, env, self.timeout, cwd=workdir)
        if not result.ok:
            raise failure(result, target.url.display, "fetch", self.timeout, target.secrets())
        # Packs pile up fetch after fetch; `gc --auto` repacks only past git's thresholds.
        gc = run_git(["gc", "--auto", "--quiet"], local_env(git_dir), self.timeout, cwd=git_dir)
        if not gc.ok:
            _log.debug("gc of %s failed: %s", target.url.display, gc.stderr.strip()[:200])

    def _ls_remote(self, target: _Target, options: Sequence[str], patterns: Sequence[str]) -> bytes:
        argv = ["ls-remote", *options, "--", target.url.git_url, *patterns]
        with remote_env(target.url, target.credentials, self.allowed_schemes) as (env, workdir):
            result = run_git(argv, env, self.timeout, cwd=workdir)
        if not result.ok:
            raise failure(result, target.url.display, "ls-remote", self.timeout, target.secrets())
        return result.stdout

    # -- entries, locks, eviction ------------------------------------------------------------

    def _acquire(self, key: str) -> _Entry:
        """The entry of `key`, locked and most recently used."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._entries[key] = _Entry(key, self.root / key)
                self._entries.move_to_end(key)
            entry.lock.acquire()
            if not entry.evicted:
                return entry
            entry.lock.release()  # evicted while we waited: start over with a fresh entry

    def _forget(self, entry: _Entry) -> None:
        with self._lock:
            entry.evicted = True
            if self._entries.get(entry.key) is entry:
                del self._entries[entry.key]

    def _over_limit(self) -> bool:
        if len(self._entries) > self.max_repos:
            return True
        total = sum(e.size for e in self._entries.values())
        return self.max_bytes is not None and total > self.max_bytes

    def _evict(self) -> None:
        """Drop least recently used clones until within limits. Busy clones are skipped, and
        the most recent one is always kept (even alone over max_bytes)."""
        doomed: list[Path] = []
        with self._lock:
            for entry in list(self._entries.values())[:-1]:
                if not self._over_limit():
                    break
                if not entry.lock.acquire(blocking=False):
                    continue
                try:
                    entry.evicted = True
                    del self._entries[entry.key]
                    if entry.path.exists():
                        # Renamed at once, removed later: a new clone may take the name meanwhile.
                        trash = self.root / f".trash-{secrets.token_hex(8)}"
                        os.rename(entry.path, trash)
                        doomed.append(trash)
                finally:
                    entry.lock.release()
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        if doomed:
            _log.debug("evicted %d cached repositories", len(doomed))

    def _load_key(self) -> bytes:
        """The HMAC key of directory names, kept with the cache so names survive restarts."""
        path = self.root / _KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
            if len(key) >= 32:
                return key
            path.unlink()
            return self._load_key()
        key = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    def _adopt(self) -> None:
        """Register clones left by a previous process (oldest use first); drop scratch dirs."""
        found: list[tuple[float, _Entry]] = []
        for child in self.root.iterdir():
            if child.name.startswith(_SCRATCH_PREFIXES):
                shutil.rmtree(child, ignore_errors=True)
            elif _ENTRY_NAME.match(child.name) and child.is_dir():
                size = _dir_size(child) if self.max_bytes is not None else 0
                entry = _Entry(child.name, child, size=size)
                found.append((child.stat().st_mtime, entry))
        with self._lock:
            for _, entry in sorted(found, key=lambda f: f[0]):
                self._entries[entry.key] = entry
        self._evict()
