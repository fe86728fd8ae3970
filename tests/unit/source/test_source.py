"""conveyor.source against real repositories made with the git CLI (file:// URLs), no mocks."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from conveyor.source import RepoCache, SourceUnavailable
from conveyor.source import errors as reasons

ZERO = "0" * 40
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


class Origin:
    """A working repository that stands for the remote (file:// URL)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (str) or delete (None) files, commit, return the sha."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                git(self.path, "rm", "-q", name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                git(self.path, "add", name)
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return git(self.path, "rev-parse", ref)

    def __call__(self, *args: str) -> str:
        return git(self.path, *args)


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    return Origin(tmp_path / "origin")


@pytest.fixture
def cache(tmp_path: Path) -> RepoCache:
    return RepoCache(tmp_path / "cache")


# -- refs and commits -----------------------------------------------------------------------


def test_resolve_branch_then_tag_and_full_ref_names(origin: Origin, cache: RepoCache) -> None:
    first = origin.commit({"a.txt": "1"}, "first")
    origin("tag", "-a", "v1.0", "-m", "release")  # annotated: resolves to the commit
    origin("tag", "same", first)
    second = origin.commit({"a.txt": "2"}, "second")
    origin("branch", "same")  # a branch and a tag named alike: the branch wins, as in GitLab

    assert cache.resolve(origin.url, None, "main") == second
    assert cache.resolve(origin.url, None, "refs/heads/main") == second
    assert cache.resolve(origin.url, None, "v1.0") == first
    assert cache.resolve(origin.url, None, "refs/tags/v1.0") == first
    assert cache.resolve(origin.url, None, "same") == second
    assert cache.resolve(origin.url, None, "refs/tags/same") == first
    assert cache.is_tag(origin.url, None, "v1.0")
    assert not cache.is_tag(origin.url, None, "main")
    assert not cache.is_tag(origin.url, None, "same")
    assert cache.is_tag(origin.url, None, "refs/tags/same")


def test_unknown_or_malformed_ref_is_ref_not_found(origin: Origin, cache: RepoCache) -> None:
    origin.commit({"a": "1"})
    for ref in ("nope", "main~1", "-h", "main..main"):
        with pytest.raises(SourceUnavailable) as err:
            cache.resolve(origin.url, None, ref)
        assert err.value.reason == reasons.REF_NOT_FOUND
        assert origin.url in str(err.value)
    with pytest.raises(SourceUnavailable) as err:
        cache.commit_message(origin.url, None, "1" * 40)
    assert err.value.reason == reasons.SHA_NOT_FOUND


def test_commit_message(origin: Origin, cache: RepoCache) -> None:
    sha = origin.commit({"a": "1"}, "Fix the build [skip ci]\n\nLonger body.")
    message = cache.commit_message(origin.url, None, sha)
    assert message == "Fix the build [skip ci]\n\nLonger body.\n"
    assert cache.commit_message(origin.url, None, sha[:10]).startswith("Fix the build")


# -- changed paths --------------------------------------------------------------------------


def test_changed_paths_of_a_single_commit(origin: Origin, cache: RepoCache) -> None:
    before = origin.commit({"a.txt": "1", "src/main.go": "x"})
    sha = origin.commit({"src/main.go": "y", "docs/new.md": "n"})
    assert cache.changed_paths(origin.url, None, sha, before) == {"src/main.go", "docs/new.md"}


def test_changed_paths_of_a_multi_commit_push_cover_every_pushed_commit(
    origin: Origin, cache: RepoCache
) -> None:
    before = origin.commit({"a.txt": "1"})
    origin.commit({"src/one.go": "1"})
    origin.commit({"src/two.go": "2"})
    sha = origin.commit({"README.md": "r"})
    assert cache.changed_paths(origin.url, None, sha, before) == {
        "src/one.go",
        "src/two.go",
        "README.md",
    }


def test_without_before_sha_the_last_commit_is_compared_with_its_parent(
    origin: Origin, cache: RepoCache
) -> None:
    origin.commit({"a.txt": "1"})
    origin.commit({"b.txt": "1"})
    sha = origin.commit({"c.txt": "1"})
    assert cache.changed_paths(origin.url, None, sha, None) == {"c.txt"}
    assert cache.changed_paths(origin.url, None, sha, ZERO) == {"c.txt"}
    assert cache.changed_paths(origin.url, None, sha, sha) == frozenset()


def test_a_root_commit_changes_all_its_files(origin: Origin, cache: RepoCache) -> None:
    root = origin.commit({"a.txt": "1", "dir/b.txt": "2"})
    assert cache.changed_paths(origin.url, None, root, None) == {"a.txt", "dir/b.txt"}
    assert cache.changed_paths(origin.url, None, root, ZERO) == {"a.txt", "dir/b.txt"}


def test_unknown_before_sha_gives_none(origin: Origin, cache: RepoCache) -> None:
    sha = origin.commit({"a.txt": "1"})
    assert cache.changed_paths(origin.url, None, sha, "deadbeef" * 5) is None
    assert cache.changed_paths(origin.url, None, sha, "not-a-sha") is None


def test_renames_give_both_paths_and_deletions_count(origin: Origin, cache: RepoCache) -> None:
    before = origin.commit({"old/name.txt": "same content\n" * 20, "gone.txt": "x"})
    (origin.path / "new").mkdir()
    origin("mv", "old/name.txt", "new/name.txt")
    sha = origin.commit({"gone.txt": None}, "rename and delete")
    assert cache.changed_paths(origin.url, None, sha, before) == {
        "old/name.txt",
        "new/name.txt",
        "gone.txt",
    }


def test_changed_paths_since_uses_the_merge_base(origin: Origin, cache: RepoCache) -> None:
    origin.commit({"a.txt": "1"})
    origin("checkout", "-q", "-b", "feature")
    origin.commit({"feature/one.txt": "1"})
    tip = origin.commit({"feature/two.txt": "2"})
    origin("checkout", "-q", "main")
    origin.commit({"main-only.txt": "m"})  # after the fork: not part of the feature's changes
    assert cache.changed_paths_since(origin.url, None, "main", tip) == {
        "feature/one.txt",
        "feature/two.txt",
    }
    assert cache.changed_paths_since(origin.url, None, "no-such-branch", tip) is None


# -- trees ----------------------------------------------------------------------------------


def test_files_lists_every_file(origin: Origin, cache: RepoCache) -> None:
    sha = origin.commit({"a.txt": "1", "deep/er/b.yaml": "2", ".gitlab-ci.yml": "3"})
    assert cache.files(origin.url, None, sha) == {"a.txt", "deep/er/b.yaml", ".gitlab-ci.yml"}


def test_read_file_and_read_tree_with_a_cap(origin: Origin, tmp_path: Path) -> None:
    sha = origin.commit(
        {
            "templates/deploy.yaml": "kind: Deployment\n",
            "templates/sub/svc.yaml": "kind: Service\n",
            "other.txt": "x" * 100,
        }
    )
    cache = RepoCache(tmp_path / "cache", max_read_bytes=50)
    assert cache.read_file(origin.url, None, sha, "templates/deploy.yaml") == b"kind: Deployment\n"
    assert cache.read_tree(origin.url, None, sha, "templates/") == {
        "templates/deploy.yaml": b"kind: Deployment\n",
        "templates/sub/svc.yaml": b"kind: Service\n",
    }
    assert cache.read_tree(origin.url, None, sha, "missing") == {}
    with pytest.raises(SourceUnavailable, match="read cap of 50 bytes") as err:
        cache.read_file(origin.url, None, sha, "other.txt")
    assert err.value.reason == reasons.TOO_LARGE
    with pytest.raises(SourceUnavailable, match="read cap of 50 bytes"):
        cache.read_tree(origin.url, None, sha, "")
    with pytest.raises(SourceUnavailable) as err:
        cache.read_file(origin.url, None, sha, "templates/nope.yaml")
    assert err.value.reason == reasons.PATH_NOT_FOUND
    with pytest.raises(SourceUnavailable):
        cache.read_file(origin.url, None, sha, "../other.txt")


# -- remote queries -------------------------------------------------------------------------


def test_branch_heads_ask_the_remote_without_fetching(origin: Origin, cache: RepoCache) -> None:
    first = origin.commit({"a": "1"})
    cache.fetch(origin.url, None)
    clone = cache.cached_path(origin.url)
    assert clone is not None
    origin("branch", "feature")
    second = origin.commit({"a": "2"})
    assert cache.branch_heads(origin.url, None) == {"main": second, "feature": first}
    assert git(clone, "rev-parse", "refs/heads/main") == first  # the clone was not touched
    assert cache.default_branch(origin.url, None) == "main"


# -- fetching -------------------------------------------------------------------------------


def test_a_new_commit_is_fetched_when_asked_for(origin: Origin, tmp_path: Path) -> None:
    first = origin.commit({"a": "1"})
    cache = RepoCache(tmp_path / "cache", min_fetch_interval=3600)
    assert cache.resolve(origin.url, None, "main") == first
    second = origin.commit({"b": "2"}, "second")
    # A missing sha is fetched even inside the interval...
    assert cache.commit_message(origin.url, None, second) == "second\n"
    origin("checkout", "-q", "-b", "feature")
    third = origin.commit({"c": "3"})
    # ...and so is a missing branch.
    assert cache.resolve(origin.url, None, "feature") == third


def test_min_fetch_interval_keeps_warm_caches_off_the_network(
    origin: Origin, tmp_path: Path
) -> None:
    first = origin.commit({"a": "1"})
    lazy = RepoCache(tmp_path / "lazy", min_fetch_interval=3600)
    eager = RepoCache(tmp_path / "eager", min_fetch_interval=0)
    assert lazy.resolve(origin.url, None, "main") == first
    assert eager.resolve(origin.url, None, "main") == first
    second = origin.commit({"a": "2"})
    assert lazy.resolve(origin.url, None, "main") == first  # known ref, fetched recently
    assert eager.resolve(origin.url, None, "main") == second


def test_deleted_branches_and_tags_are_pruned(origin: Origin, tmp_path: Path) -> None:
    origin.commit({"a": "1"})
    origin("branch", "old")
    origin("tag", "t1")
    cache = RepoCache(tmp_path / "cache", min_fetch_interval=0)
    cache.fetch(origin.url, None, refs=["old", "t1"])
    origin("branch", "-D", "old")
    origin("tag", "-d", "t1")
    for ref in ("old", "t1"):
        with pytest.raises(SourceUnavailable, match=f"ref {ref} not found"):
            cache.resolve(origin.url, None, ref)


def test_concurrent_fetches_of_one_repository_do_not_corrupt_it(
    origin: Origin, tmp_path: Path
) -> None:
    for i in range(5):
        origin.commit({f"f{i}": str(i)})
    cache = RepoCache(tmp_path / "cache", min_fetch_interval=0)
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    seen: list[str] = []

    def work() -> None:
        try:
            start.wait()
            for _ in range(8):
                cache.fetch(origin.url, None)
                seen.append(cache.resolve(origin.url, None, "main"))
                cache.files(origin.url, None, seen[-1])
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    origin.commit({"late": "x"})
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(seen) == {origin.head()}
    clone = cache.cached_path(origin.url)
    assert clone is not None
    git(clone, "fsck", "--strict")
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")] == []


def test_least_recently_used_clone_is_evicted(tmp_path: Path) -> None:
    origins = {name: Origin(tmp_path / name) for name in ("a", "b", "c")}
    for o in origins.values():
        o.commit({"x": "1"})
    cache = RepoCache(tmp_path / "cache", max_repos=2)
    cache.fetch(origins["a"].url, None)
    cache.fetch(origins["b"].url, None)
    cache.resolve(origins["a"].url, None, "main")  # a is now more recent than b
    cache.fetch(origins["c"].url, None)
    assert cache.cached_path(origins["a"].url) is not None
    assert cache.cached_path(origins["b"].url) is None
    assert cache.cached_path(origins["c"].url) is not None
    clones = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(clones) == 2
    # An evicted repository is simply cloned again.
    assert cache.resolve(origins["b"].url, None, "main") == origins["b"].head()


def test_max_bytes_keeps_only_what_fits(tmp_path: Path) -> None:
    a, b = Origin(tmp_path / "a"), Origin(tmp_path / "b")
    a.commit({"x": "1"})
    b.commit({"y": "2"})
    cache = RepoCache(tmp_path / "cache", max_bytes=1)  # smaller than any clone
    cache.fetch(a.url, None)
    cache.fetch(b.url, None)
    assert cache.cached_path(a.url) is None
    assert cache.cached_path(b.url) is not None  # the most recent one always stays


def test_a_new_cache_adopts_clones_on_disk(origin: Origin, tmp_path: Path) -> None:
    sha = origin.commit({"a": "1"})
    RepoCache(tmp_path / "cache").fetch(origin.url, None)
    again = RepoCache(tmp_path / "cache")
    assert again.cached_path(origin.url) is not None
    assert again.files(origin.url, None, sha) == {"a"}


def test_cache_paths_never_contain_the_url_and_differ_per_credentials(
    origin: Origin, cache: RepoCache
) -> None:
    origin.commit({"a": "1"})
    cache.fetch(origin.url, None)
    cache.fetch(origin.url, {"token": "t0ken"})
    public = cache.cached_path(origin.url)
    private = cache.cached_path(origin.url, {"token": "t0ken"})
    assert public is not None and private is not None and public != private
    assert "origin" not in public.name and "t0ken" not in private.name


# -- failures -------------------------------------------------------------------------------


def test_unreachable_repository(tmp_path: Path, cache: RepoCache) -> None:
    url = (tmp_path / "does-not-exist").as_uri()
    with pytest.raises(SourceUnavailable) as err:
        cache.resolve(url, None, "main")
    assert err.value.reason == reasons.UNREACHABLE
    assert str(err.value).startswith(f"repository {url}: unreachable (fetch): ")
    assert "does not appear to be a git repository" in str(err.value)
    assert cache.cached_path(url) is None
    with pytest.raises(SourceUnavailable, match="unreachable"):
        cache.branch_heads(url, None)


@pytest.mark.parametrize(
    "url", ["/srv/repo.git", "-oProxyCommand=x", "ftp://host/r.git", "https://", "ext::sh -c x"]
)
def test_invalid_urls_are_refused(cache: RepoCache, url: str) -> None:
    with pytest.raises(SourceUnavailable) as err:
        cache.resolve(url, None, "main")
    assert err.value.reason == reasons.INVALID


def test_file_urls_can_be_disallowed(origin: Origin, tmp_path: Path) -> None:
    origin.commit({"a": "1"})
    cache = RepoCache(tmp_path / "cache", allowed_schemes={"https", "ssh"})
    with pytest.raises(SourceUnavailable, match="scheme file is not allowed"):
        cache.resolve(origin.url, None, "main")


# -- git_facts ------------------------------------------------------------------------------


def test_git_facts(tmp_path: Path, cache: RepoCache) -> None:
    origin = Origin(tmp_path / "group" / "project.git")
    before = origin.commit({"a.txt": "1", "src/x.go": "1"})
    origin("checkout", "-q", "-b", "feature")
    origin.commit({"src/x.go": "2"})
    sha = origin.commit({"docs/d.md": "d"}, "docs [ci skip]")
    origin("checkout", "-q", "main")  # the remote's HEAD: its default branch
    resolved, facts = cache.git_facts(origin.url, None, "feature", None, before, ["main"])
    assert resolved == sha
    assert not facts.ref_is_tag
    assert facts.commit_message == "docs [ci skip]\n"
    assert facts.commit_author == "Dev <dev@example.com>"  # CI_COMMIT_AUTHOR
    assert facts.commit_timestamp and "T" in facts.commit_timestamp  # ISO 8601
    assert facts.default_branch == "main"
    assert facts.changed_paths == {"src/x.go", "docs/d.md"}
    assert facts.changed_paths_since == {"main": {"src/x.go", "docs/d.md"}}
    assert facts.files == {"a.txt", "src/x.go", "docs/d.md"}
    assert facts.project_path is not None and facts.project_path.endswith("group/project")

    origin("tag", "v2")
    resolved, facts = cache.git_facts(origin.url, None, "v2", sha, ZERO, files=False)
    assert resolved == sha and facts.ref_is_tag
    assert facts.changed_paths == {"docs/d.md"} and facts.files is None


# -- cache:key:files ------------------------------------------------------------------------


def test_blob_ids_of_key_files_as_gitlab_finds_them(origin: Origin, cache: RepoCache) -> None:
    sha = origin.commit(
        {
            "deps.lock": "v1",
            "package.json": "{}",
            "a/package.json": "{1}",
            "b/c/package.json": "{2}",
            "dir/x": "in a folder",
        }
    )
    os.symlink("deps.lock", origin.path / "link")
    origin("add", "link")
    sha = origin.commit({})

    def blob(path: str) -> str:
        return origin("rev-parse", f"{sha}:{path}")

    patterns = ["deps.lock", "**/package.json", "*.json", "dir", "./deps.lock", "none", "link"]
    found = cache.blob_ids(origin.url, None, sha, patterns)
    assert found == {
        "deps.lock": (blob("deps.lock"),),
        # GitLab's wildcard: `**/` needs a folder, so the root's package.json is not one.
        "**/package.json": (blob("a/package.json"), blob("b/c/package.json")),
        "*.json": (blob("package.json"),),  # `*` never crosses a `/`
        "dir": (),  # a folder names no blob
        "./deps.lock": (),  # GitLab takes the path as written
        "none": (),
        "link": (blob("link"),),  # a symlink is a blob
    }
    # Content, not history: a commit that leaves deps.lock alone keeps its blob id, one that
    # changes it does not.
    later = origin.commit({"other.txt": "x"})
    assert cache.blob_ids(origin.url, None, later, ["deps.lock"]) == {
        "deps.lock": found["deps.lock"]
    }
    changed = origin.commit({"deps.lock": "v2"})
    assert cache.blob_ids(origin.url, None, changed, ["deps.lock"]) != {
        "deps.lock": found["deps.lock"]
    }
    with pytest.raises(SourceUnavailable) as err:
        cache.blob_ids(origin.url, None, "f" * 40, ["deps.lock"])
    assert err.value.reason == reasons.SHA_NOT_FOUND


def test_key_file_blobs_through_the_sources_pool(origin: Origin, tmp_path: Path) -> None:
    import asyncio

    from conveyor.api import parse_pipeline_spec
    from conveyor.reconcile.sources import Sources

    sha = origin.commit({"deps.lock": "v1"})
    sources = Sources(None, tmp_path / "sources", local=True)  # type: ignore[arg-type]
    spec = parse_pipeline_spec(
        {"source": {"url": origin.url}, "jobs": [{"name": "j", "script": ["x"]}]}
    )
    found = asyncio.run(sources.key_file_blobs("ns", spec, sha, ["deps.lock", "none"]))
    assert found == {"deps.lock": (origin("rev-parse", f"{sha}:deps.lock"),), "none": ()}
    # Without a source no file exists: the key is PREFIX-default, as GitLab's for missing files.
    sourceless = parse_pipeline_spec({"jobs": [{"name": "j", "script": ["x"]}]})
    assert asyncio.run(sources.key_file_blobs("ns", sourceless, sha, ["deps.lock"])) == {
        "deps.lock": ()
    }
