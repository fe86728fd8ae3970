"""GitLab's `cache:key:files` and `untracked: true` on the real nodes, from a git repository
served over HTTP: the operator keys a cache by the files' git blob ids at each run's commit
(a commit that leaves the file alone keeps the key, one that changes it does not), and an
`untracked` archive keeps what the script made and what git ignores, never a tracked file,
whatever the job's image holds (busybox: no git)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e.conveyor import (
    STORE_SECRET,
    Conveyor,
    conveyor_cli,
    job_status,
    pipeline,
    run,
    store_info,
)
from tests.e2e.gitrepo import GitRepo, new_repo
from tests.e2e.realnode import RealNodes
from tests.e2e.support import Clusters

IMAGE = "busybox:1.36"  # no git in it: the checkout's list says what git tracks


def _store_client() -> Any:
    from conveyor.store.client import StoreClient
    from conveyor.store.config import StoreConfig
    from conveyor.store.sigv4 import Credentials

    info = store_info()
    assert info, "the local clusters run no artifact store (.cluster/store.json)"
    config = StoreConfig(info["endpoint"], info["bucket"], "conveyor-system", STORE_SECRET)
    return StoreClient(config, Credentials(info["accessKey"], info["secretKey"]))


def _publish(work: GitRepo, root: Path, name: str) -> Path:
    bare = root / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    return bare


def _logs(clusters: Clusters, ns: str, run_name: str, job: str, container: str) -> str:
    out = conveyor_cli(clusters, "logs", run_name, job, "-n", ns, "-c", container)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _push(work: GitRepo, bare: Path) -> None:
    work.git("push", "-q", str(bare), f"HEAD:refs/heads/{work.branch}")


def _run_at(conveyor: Conveyor, name: str, pipeline_name: str, sha: str) -> dict[str, Any]:
    conveyor.create(run(name, pipeline_name, revision={"ref": "main", "sha": sha}))
    done = conveyor.wait_finished(name, timeout=240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    return done


def _key(work: GitRepo, sha: str) -> str:
    """GitLab's key for `key: {files: [deps.lock]}`, the first cache of its job: the prefix
    `0_deps` (the index and the file's name up to its first `.`) and the SHA-1 of the file's
    blob id at the commit."""
    blob = work.git("rev-parse", f"{sha}:deps.lock")
    return "0_deps-" + hashlib.sha1(blob.encode()).hexdigest()


def test_a_cache_keyed_by_files_follows_their_content_across_commits(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    work = new_repo(tmp_path / "app", {"deps.lock": "left-pad 1.0\n", "app.txt": "1\n"})
    bare = _publish(work, root, "keyed")
    first = work.head()
    jobs = [
        {
            "name": "deps",
            "stage": "build",
            "image": IMAGE,
            "cache": [{"keyFiles": {"files": ["deps.lock"]}, "paths": ["vendor/"]}],
            "script": [
                'if [ -f vendor/stamp ]; then echo "HIT $(cat vendor/stamp)"; '
                'else echo MISS; mkdir -p vendor; echo "$CI_COMMIT_SHA" > vendor/stamp; fi'
            ],
        }
    ]
    conveyor.create(
        pipeline("keyed", jobs, source={"url": f"{base}/keyed.git"}, **real.placement())
    )
    ns = conveyor.ns

    # Run 1: no cache yet; it saves under the key of deps.lock's content.
    _run_at(conveyor, "keyed-1", "keyed", first)
    key1 = _key(work, first)
    assert "MISS" in _logs(clusters, ns, "keyed-1", "deps", "script")
    assert f"No cache for key {key1}" in _logs(clusters, ns, "keyed-1", "deps", "artifacts")
    assert f"Created cache {key1}" in _logs(clusters, ns, "keyed-1", "deps", "script")

    # Run 2: a commit that leaves deps.lock alone: the same key, the cache run 1 wrote.
    second = work.commit("app only", {"app.txt": "2\n"})
    _push(work, bare)
    _run_at(conveyor, "keyed-2", "keyed", second)
    assert _key(work, second) == key1
    assert f"Cache {key1} restored" in _logs(clusters, ns, "keyed-2", "deps", "artifacts")
    assert f"HIT {first}" in _logs(clusters, ns, "keyed-2", "deps", "script")

    # Run 3: deps.lock changed: a new key, nothing restored, a new cache saved.
    third = work.commit("bump", {"deps.lock": "left-pad 1.1\n"})
    _push(work, bare)
    _run_at(conveyor, "keyed-3", "keyed", third)
    key3 = _key(work, third)
    assert key3 != key1
    downloads = _logs(clusters, ns, "keyed-3", "deps", "artifacts")
    assert f"No cache for key {key3}" in downloads and key1 not in downloads
    assert "MISS" in _logs(clusters, ns, "keyed-3", "deps", "script")
    store = _store_client()
    for key in (key1, key3):
        assert store.head(f"caches/{ns}/keyed/{key}") is not None, key


def _names(archive: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}


def test_untracked_artifacts_keep_made_and_ignored_files_never_tracked_ones(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    work = new_repo(
        tmp_path / "untracked",
        {".gitignore": "build/\n", "tracked.txt": "original\n", "src/main.c": "int main;\n"},
    )
    _publish(work, root, "untracked")
    jobs = [
        {
            "name": "make",
            "stage": "build",
            "image": IMAGE,
            "script": [
                "echo made > made.txt",
                "mkdir -p build src/gen && echo ignored > build/out.bin",
                "echo generated > src/gen/code.c",
                "echo changed >> tracked.txt",
                "echo noise > debug.log",
            ],
            "artifacts": {"untracked": True, "exclude": ["*.log"]},
            "cache": [{"key": "untracked", "untracked": True}],
        },
        {
            "name": "use",
            "stage": "test",
            "image": IMAGE,
            "script": [
                'test "$(cat made.txt)" = made',
                'test "$(cat build/out.bin)" = ignored',
                'test "$(cat src/gen/code.c)" = generated',
                'test "$(cat tracked.txt)" = original',  # its own checkout's, not overwritten
                "test ! -e debug.log",  # excluded
            ],
        },
        {
            # No checkout: git tracks nothing, so every file the script makes is untracked.
            "name": "bare",
            "stage": "build",
            "image": IMAGE,
            "variables": {"GIT_STRATEGY": "none"},
            "script": ["echo alone > alone.txt"],
            "artifacts": {"untracked": True, "name": "bare"},
        },
    ]
    source = {"url": f"{base}/untracked.git"}
    conveyor.create(
        pipeline("untracked", jobs, stages=["build", "test"], source=source, **real.placement())
    )
    done = _run_at(conveyor, "untracked-1", "untracked", work.head())
    for job in ("make", "use", "bare"):
        assert job_status(done, job)["phase"] == "Succeeded", (job, done["status"]["jobs"])

    store = _store_client()
    uid = done["metadata"]["uid"]
    archive = store.get(f"artifacts/{conveyor.ns}/untracked-1-{uid}/make/1/archive.tar.gz")
    assert archive is not None
    assert _names(archive) == {"made.txt", "build/out.bin", "src/gen/code.c"}
    cache = store.get(f"caches/{conveyor.ns}/untracked/untracked")
    assert cache is not None
    # A cache has no `exclude`: the log is in it; tracked files and .git never are.
    assert _names(cache) == {"made.txt", "build/out.bin", "src/gen/code.c", "debug.log"}
    alone = store.get(f"artifacts/{conveyor.ns}/untracked-1-{uid}/bare/1/archive.tar.gz")
    assert alone is not None and _names(alone) == {"alone.txt"}
