"""Artifacts and caches on the real nodes, through the local S3 store (versitygw, built from the
Go module proxy): files a job keeps reach exactly the jobs GitLab's rules say, a job image with
no tar/curl uploads them, team members download them byte for byte with `conveyor artifacts`
(an ArtifactDownload the operator answers, no store credentials), one namespace's presigned URLs
never open another's objects, and caches carry over between runs."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import json
import socket
import tarfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conveyor import (
    STORE_SECRET,
    Conveyor,
    Operator,
    add_environment,
    bind,
    conveyor_cli,
    job_status,
    operator_with,
    phase,
    pipeline,
    run,
    store_info,
)
from tests.e2e.realnode import RealNodes
from tests.e2e.support import STATE, Clusters, wait_for_object, wait_until

NO_TOOLS = "conveyor-test/shell-only:1"  # dash, cat and sleep only (hack/images/shell-only.sh)


def _store_client() -> Any:
    from conveyor.store.client import StoreClient
    from conveyor.store.config import StoreConfig
    from conveyor.store.sigv4 import Credentials

    info = store_info()
    assert info, "the local clusters run no artifact store (.cluster/store.json)"
    config = StoreConfig(info["endpoint"], info["bucket"], "conveyor-system", STORE_SECRET)
    return StoreClient(config, Credentials(info["accessKey"], info["secretKey"]))


def _logs(clusters: Clusters, ns: str, run_name: str, job: str) -> list[str]:
    out = conveyor_cli(clusters, "logs", run_name, job, "-n", ns)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _plan_of(conveyor: Conveyor, run_name: str, job: str) -> dict[str, Any]:
    """The transfer plan a job's pod holds (its presigned URLs), read from the Secret its pod
    mounts (as the cluster's admin: `view` may not read it)."""
    for item in conveyor.jobs(run_name):
        if item.metadata.annotations.get("conveyor.dev/job") == job:
            (volume,) = [v for v in item.spec.template.spec.volumes if v.secret is not None
                         and v.name == "conveyor-transfer-plan"]  # fmt: skip
            secret = client.CoreV1Api(conveyor.api.api_client).read_namespaced_secret(
                volume.secret.secret_name, conveyor.ns
            )
            return json.loads(base64.b64decode(secret.data["plan.json"]))
    raise AssertionError(f"no Job for {job} of {run_name}")


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


ARTIFACT_JOBS = [
    {
        # No tar, gzip, curl or wget in its image: the transfer binary uploads.
        "name": "build",
        "stage": "build",
        "image": NO_TOOLS,
        "script": [
            "for t in tar gzip curl wget busybox; do "
            'if command -v "$t"; then echo "the image has $t"; exit 9; fi; done',
            "echo built-by-build > app.txt",
            "echo not-kept > notes.txt",
        ],
        "artifacts": {"paths": ["app.txt"], "expireIn": "2 hours"},
    },
    {
        "name": "docs",
        "stage": "build",
        "image": "busybox:1.36",
        "script": ["mkdir -p site/deep", "echo docs > site/deep/index.html", "echo x > site/x.log"],
        "artifacts": {"paths": ["site/"], "exclude": ["site/*.log"]},
    },
    {
        "name": "data",
        "stage": "build",
        "image": "busybox:1.36",
        "script": [
            "head -c 300000 /dev/urandom > blob.bin",
            "sha256sum blob.bin | cut -d' ' -f1 > blob.sha256",
        ],
        "artifacts": {"paths": ["blob.*"]},
    },
    {
        "name": "test",
        "stage": "test",
        "image": "busybox:1.36",
        "script": [
            'test "$(cat app.txt)" = built-by-build',
            "test -f site/deep/index.html",
            "test ! -e site/x.log",  # excluded
            "test ! -e notes.txt",  # not in paths
            "test -f blob.bin",
        ],
    },
    {
        "name": "isolated",
        "stage": "test",
        "image": "busybox:1.36",
        "dependencies": [],
        "script": ["test ! -e app.txt", "test ! -e site", "test ! -e blob.bin"],
    },
    {
        "name": "deploy",
        "stage": "deploy",
        "image": NO_TOOLS,
        "needs": ["build"],
        "script": [
            'test "$(cat app.txt)" = built-by-build',
            "test ! -e site",
            "test ! -e blob.bin",
        ],
    },
]


def test_artifacts_reach_later_jobs_by_gitlabs_rules_and_download_byte_identical(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes, tmp_path: Path
) -> None:
    conveyor.create(
        pipeline("arts", ARTIFACT_JOBS, stages=["build", "test", "deploy"], **real.placement())
    )
    conveyor.create(run("arts-1", "arts"))
    done = conveyor.wait_finished("arts-1", timeout=300)
    for job in ("build", "docs", "data", "test", "isolated", "deploy"):
        assert job_status(done, job)["phase"] == "Succeeded", (job, done["status"]["jobs"])
    assert done["status"]["phase"] == "Succeeded"
    # What the script container ran in the job without tools: the binary's copy, not a tar.
    assert "Uploading artifacts..." in _logs(clusters, conveyor.ns, "arts-1", "build")

    # The record: name, size, digest, expiry (expireIn: 2 hours), after the upload.
    def recorded() -> Any:
        entry = job_status(conveyor.get_run("arts-1"), "data")
        return entry.get("artifacts")

    (record,) = wait_until(recorded, timeout=30, what="status.jobs[data].artifacts")
    assert record["name"] == "artifacts.tar.gz" and record["kind"] == "archive"
    assert record["size"] > 300000 and record["digest"].startswith("sha256:")
    (build_record,) = job_status(conveyor.get_run("arts-1"), "build")["artifacts"]
    assert "expiresAt" in build_record
    assert job_status(done, "test").get("artifacts") is None  # it keeps none

    # A developer with `edit` downloads what the pod wrote, byte for byte (the pod's own sha256),
    # without the store's credentials: `conveyor artifacts` asks the operator with an
    # ArtifactDownload (the built-in `edit` has it by aggregation), then deletes it.
    bind(clusters, conveyor.ns, [("developer", "edit"), ("approver1", "view")])
    for user in ("developer", "approver1"):
        _wait_can_create_downloads(clusters, conveyor.ns, user)
    out = conveyor_cli(
        clusters,
        "artifacts",
        "arts-1",
        "data",
        "-o",
        str(tmp_path / "dl"),
        "-n",
        conveyor.ns,
        context="ci-as-developer",
    )
    assert out.returncode == 0, out.stderr
    blob = (tmp_path / "dl" / "blob.bin").read_bytes()
    assert len(blob) == 300000
    assert hashlib.sha256(blob).hexdigest() == (tmp_path / "dl" / "blob.sha256").read_text().strip()
    assert record["digest"] in out.stdout
    assert "X-Amz-Signature" not in out.stdout + out.stderr
    assert _downloads(conveyor) == []  # the CLI deleted its request
    # `view` downloads too (GitLab's Reporters can): an approver reads what they approve.
    out = conveyor_cli(
        clusters,
        "artifacts",
        "arts-1",
        "build",
        "-o",
        str(tmp_path / "viewer"),
        "-n",
        conveyor.ns,
        context="ci-as-approver1",
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "viewer" / "app.txt").read_text() == "built-by-build\n"
    # A job that kept nothing: the operator says so, and nothing is written.
    none = conveyor_cli(
        clusters, "artifacts", "arts-1", "test", "-o", str(tmp_path / "none"), "-n", conveyor.ns,
        context="ci-as-developer",
    )  # fmt: skip
    assert none.returncode == 1
    assert "job test of run arts-1 (attempt 1) kept no artifacts" in none.stderr
    assert none.stderr.rstrip().endswith("(NoArtifacts)"), none.stderr
    assert not (tmp_path / "none").exists()

    # The platform's direct path needs the store's Secret, which `edit` cannot read.
    info = store_info()
    assert info
    denied = conveyor_cli(
        clusters,
        "artifacts",
        "arts-1",
        "data",
        "--direct",
        "-o",
        str(tmp_path / "no"),
        "-n",
        conveyor.ns,
        "--store-endpoint",
        info["endpoint"],
        context="ci-as-developer",
    )
    assert denied.returncode != 0
    assert "artifact-store" in denied.stderr or "forbidden" in denied.stderr.lower(), denied.stderr
    assert not (tmp_path / "no" / "blob.bin").exists()
    # ... and works for the platform (the cluster's admin here).
    direct = conveyor_cli(
        clusters,
        "artifacts",
        "arts-1",
        "data",
        "--direct",
        "-o",
        str(tmp_path / "direct"),
        "-n",
        conveyor.ns,
        "--store-endpoint",
        info["endpoint"],
        "--store-secret",
        f"conveyor-system/{STORE_SECRET}",
    )
    assert direct.returncode == 0, direct.stderr
    assert (tmp_path / "direct" / "blob.bin").read_bytes() == blob


def _wait_can_create_downloads(clusters: Clusters, ns: str, user: str) -> None:
    """Until the built-in role the user is bound to has aggregated Conveyor's rules."""
    wait_until(
        lambda: clusters.kubectl(
            "ci", "auth", "can-i", "create", "artifactdownloads.conveyor.dev", "-n", ns,
            "--as", user, check=False,
        ).returncode == 0,
        what=f"{user} may create artifactdownloads in {ns}",
    )  # fmt: skip


def _downloads(conveyor: Conveyor) -> list[dict[str, Any]]:
    return conveyor.api.list_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", conveyor.ns, "artifactdownloads"
    )["items"]


def _request(run_name: str, job: str) -> dict[str, Any]:
    return {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "ArtifactDownload",
        "metadata": {"generateName": f"{run_name}-"},
        "spec": {"run": run_name, "job": job},
    }


def test_a_download_request_gets_one_objects_url_from_its_own_namespace_only(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes, tmp_path: Path
) -> None:
    """An ArtifactDownload as the developer (`edit`): its answer is a GET of exactly the
    archive, for a few minutes; another namespace's run is not found; only the operator
    writes the answer (a developer's status patch and an admin's are refused); an outsider
    cannot ask; the URL is in no event and no operator log line; the request goes after
    its TTL."""
    jobs = [
        {
            "name": "make",
            "stage": "build",
            "image": "busybox:1.36",
            "script": ["echo mine > mine.txt"],
            "artifacts": {"paths": ["mine.txt"]},
        },
        {"name": "lint", "stage": "build", "image": "busybox:1.36", "script": ["true"]},
    ]
    conveyor.create(pipeline("dl", jobs, stages=["build"], **real.placement()))
    conveyor.create(run("dl-1", "dl"))
    done = conveyor.wait_finished("dl-1", timeout=240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    wait_until(
        lambda: job_status(conveyor.get_run("dl-1"), "make").get("artifacts"),
        what="status.jobs[make].artifacts",
    )
    ns = conveyor.ns
    bind(clusters, ns, [("developer", "edit")])
    _wait_can_create_downloads(clusters, ns, "developer")
    developer = client.CustomObjectsApi(clusters.api("ci-as-developer"))
    group = ("conveyor.dev", "v1alpha1")

    created = developer.create_namespaced_custom_object(
        *group, ns, "artifactdownloads", _request("dl-1", "make")
    )
    name = created["metadata"]["name"]
    answered = wait_for_object(
        functools.partial(developer.list_namespaced_custom_object, *group, ns, "artifactdownloads"),
        name,
        lambda o: (o.get("status") or {}).get("phase"),
    )
    status = answered["status"]
    assert status["phase"] == "Ready", status
    (record,) = job_status(conveyor.get_run("dl-1"), "make")["artifacts"]
    assert (status["digest"], status["size"], status["attempt"]) == (
        record["digest"],
        record["size"],
        1,
    )
    url = status["url"]
    with urllib.request.urlopen(url, timeout=10) as resp:
        data = resp.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == record["digest"]
    # GET of that one object only: not a PUT over it, not another object with its signature.
    put = urllib.request.Request(url, data=b"replaced", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=10)
    assert refused.value.code == 403
    parts = urllib.parse.urlsplit(url)
    manifest = parts._replace(path=parts.path.replace("archive.tar.gz", "manifest.json"))
    assert _store_client().head(manifest.path.split("/", 2)[2]) is not None  # it is there
    assert _http_status(urllib.parse.urlunsplit(manifest)) == 403
    with urllib.request.urlopen(url, timeout=10) as resp:  # untouched
        assert resp.read() == data

    # Only the operator writes the answer: not the developer (RBAC), nor an admin (admission).
    forged = {"status": {"digest": "sha256:" + "0" * 64, "url": "http://evil.example/x"}}
    for context, words in (("ci-as-developer", "forbidden"), ("ci", "Conveyor operator only")):
        api = client.CustomObjectsApi(clusters.api(context))
        with pytest.raises(client.ApiException) as denied:
            api.patch_namespaced_custom_object_status(*group, ns, "artifactdownloads", name, forged)
        assert denied.value.status == 403, (context, denied.value.body)
        assert words in denied.value.body, denied.value.body
    again = developer.get_namespaced_custom_object(*group, ns, "artifactdownloads", name)
    assert again["status"] == status
    # Nor does the request change to ask for something else once answered.
    with pytest.raises(client.ApiException) as immutable:
        conveyor.api.patch_namespaced_custom_object(
            *group, ns, "artifactdownloads", name, {"spec": {"job": "lint"}}
        )
    assert immutable.value.status == 422 and "immutable" in immutable.value.body

    # The URL is a bearer credential: in no event, and not in the operator's log.
    signature = dict(urllib.parse.parse_qsl(parts.query))["X-Amz-Signature"]
    events = client.CoreV1Api(clusters.api("ci")).list_namespaced_event(ns)
    assert signature not in json.dumps([e.to_dict() for e in events.items], default=str)
    assert signature not in (STATE / "logs" / "conveyor-operator.log").read_text(errors="replace")

    # Another namespace's run is not found from here: the operator looks in the request's own.
    other_ns = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other_ns)))
    try:
        bind(clusters, other_ns, [("developer", "edit")])
        _wait_can_create_downloads(clusters, other_ns, "developer")
        out = conveyor_cli(
            clusters, "artifacts", "dl-1", "make", "-o", str(tmp_path / "x"), "-n", other_ns,
            context="ci-as-developer",
        )  # fmt: skip
        assert out.returncode == 1
        assert f"no PipelineRun dl-1 in namespace {other_ns} (RunNotFound)" in out.stderr
        assert not (tmp_path / "x").exists()
    finally:
        core.delete_namespace(other_ns)

    # Someone with no role in the namespace cannot ask at all.
    outsider = client.CustomObjectsApi(clusters.api("ci-as-outsider"))
    with pytest.raises(client.ApiException) as denied:
        outsider.create_namespaced_custom_object(
            *group, ns, "artifactdownloads", _request("dl-1", "make")
        )
    assert denied.value.status == 403

    # The operator deletes requests past their TTL (--artifact-download-ttl, 60s here).
    wait_until(
        lambda: name not in {d["metadata"]["name"] for d in _downloads(conveyor)},
        timeout=180,
        what=f"artifactdownload {name} deleted after its TTL",
    )


@contextmanager
def _forwarder(upstream: tuple[str, int]) -> Iterator[tuple[int, list[int]]]:
    """A TCP forwarder on 127.0.0.1 in front of `upstream`, as a load balancer in front of a
    store would be: (its port, a list that grows by one per connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed
            seen.append(1)
            out = socket.create_connection(upstream, timeout=10)
            threading.Thread(target=pump, args=(conn, out), daemon=True).start()
            threading.Thread(target=pump, args=(out, conn), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        listener.close()


def test_download_urls_name_the_store_as_users_reach_it(
    conveyor: Conveyor, operator: Operator, clusters: Clusters, real: RealNodes, tmp_path: Path
) -> None:
    """--artifact-download-endpoint: the operator reaches the store at one address, users at
    another (here a forwarder on 127.0.0.1, as a load balancer would be): download URLs are
    signed for the users' address, and the download goes through it."""
    info = store_info()
    assert info
    host, port = info["endpoint"].split("://", 1)[1].rsplit(":", 1)
    conveyor.create(
        pipeline(
            "pub",
            [
                {
                    "name": "make",
                    "stage": "build",
                    "image": "busybox:1.36",
                    "script": ["echo published > pub.txt"],
                    "artifacts": {"paths": ["pub.txt"]},
                }
            ],
            stages=["build"],
            **real.placement(),
        )
    )
    bind(clusters, conveyor.ns, [("developer", "edit")])
    with _forwarder((host, int(port))) as (public, seen):
        endpoint = f"http://127.0.0.1:{public}"
        with operator_with(operator, "--artifact-download-endpoint", endpoint):
            conveyor.create(run("pub-1", "pub"))
            done = conveyor.wait_finished("pub-1", timeout=240)
            assert done["status"]["phase"] == "Succeeded", done["status"]
            wait_until(
                lambda: job_status(conveyor.get_run("pub-1"), "make").get("artifacts"),
                what="status.jobs[make].artifacts",
            )
            _wait_can_create_downloads(clusters, conveyor.ns, "developer")
            before = len(seen)
            out = conveyor_cli(
                clusters, "artifacts", "pub-1", "make", "-o", str(tmp_path), "-n", conveyor.ns,
                context="ci-as-developer",
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            assert (tmp_path / "pub.txt").read_text() == "published\n"
            assert len(seen) > before  # through the users' address


def test_one_namespaces_job_cannot_fetch_anothers_artifacts(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    jobs = [
        {
            "name": "make",
            "stage": "build",
            "image": "busybox:1.36",
            "script": ["echo mine > mine.txt"],
            "artifacts": {"paths": ["mine.txt"]},
        },
        {"name": "use", "stage": "test", "image": "busybox:1.36", "script": ["cat mine.txt"]},
    ]
    conveyor.create(pipeline("iso", jobs, **real.placement()))
    conveyor.create(run("iso-1", "iso"))
    done = conveyor.wait_finished("iso-1", timeout=240)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    victim = done["metadata"]

    other = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        wait_until(
            lambda: core.read_namespaced_service_account("default", other),
            what=f"serviceaccount default in {other}",
        )
        thief = Conveyor(clusters, other)
        thief.create(pipeline("iso", jobs, **real.placement()))
        thief.create(run("iso-1", "iso"))
        stolen = thief.wait_finished("iso-1", timeout=240)
        assert stolen["status"]["phase"] == "Succeeded", stolen["status"]
        # Everything the other namespace's `use` job held: presigned URLs of its own objects.
        plan = _plan_of(thief, "iso-1", "use")
        (own,) = plan["downloads"]
        assert _http_status(own["url"]) == 200  # the URL works for what it was made for
        mine = urllib.parse.urlsplit(own["url"])
        target = (
            f"/{store_info()['bucket']}/artifacts/{conveyor.ns}/"  # type: ignore[index]
            f"iso-1-{victim['uid']}/make/1/archive.tar.gz"
        )
        assert _store_client().head(target.split("/", 2)[2]) is not None  # it is there
        # The same signature on the victim's object, its own prefix rewritten: refused.
        forged = urllib.parse.urlunsplit(mine._replace(path=target))
        assert _http_status(forged) == 403
        # And with no signature at all.
        bare = urllib.parse.urlunsplit(mine._replace(path=target, query=""))
        assert _http_status(bare) == 403
        # No credential of the store anywhere in the Jobs the namespace holds.
        specs = json.dumps([j.to_dict() for j in thief.jobs()], default=str)
        assert store_info()["secretKey"] not in specs  # type: ignore[index]
    finally:
        core.delete_namespace(other)


def test_a_cache_written_by_one_run_is_read_by_the_next(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    jobs = [
        {
            "name": "fill",
            "stage": "build",
            "image": "busybox:1.36",
            "cache": [{"key": "deps", "paths": ["vendor/"]}],
            "script": [
                "if [ -f vendor/stamp ]; then echo HIT $(cat vendor/stamp); "
                "else echo MISS; mkdir -p vendor; echo $CI_PIPELINE_ID > vendor/stamp; fi"
            ],
        },
        {
            "name": "read",
            "stage": "test",
            "image": "busybox:1.36",
            "cache": [
                {
                    "key": "fresh",
                    "fallbackKeys": ["absent", "deps"],
                    "paths": ["vendor/"],
                    "policy": "pull",
                }
            ],
            "script": ["test -f vendor/stamp", "echo changed > vendor/stamp"],
        },
    ]
    conveyor.create(pipeline("cached", jobs, **real.placement()))
    conveyor.create(run("cached-1", "cached"))
    first = conveyor.wait_finished("cached-1", timeout=240)
    assert first["status"]["phase"] == "Succeeded", first["status"]
    assert "MISS" in _logs(clusters, conveyor.ns, "cached-1", "fill")
    conveyor.create(run("cached-2", "cached"))
    second = conveyor.wait_finished("cached-2", timeout=240)
    assert second["status"]["phase"] == "Succeeded", second["status"]
    hit = [line for line in _logs(clusters, conveyor.ns, "cached-2", "fill") if "HIT" in line]
    assert hit, "run 2 did not read the cache run 1 wrote"
    # `read` found `deps` through its fallback keys, and with policy pull uploaded nothing.
    store = _store_client()
    assert store.head(f"caches/{conveyor.ns}/cached/deps") is not None
    assert store.head(f"caches/{conveyor.ns}/cached/fresh") is None


def test_an_artifact_over_the_limit_fails_its_job_saying_so(
    operator: Operator, conveyor: Conveyor, real: RealNodes
) -> None:
    jobs = [
        {
            "name": "big",
            "stage": "build",
            "image": "busybox:1.36",
            "script": ["head -c 200000 /dev/urandom > big.bin"],
            "artifacts": {"paths": ["big.bin"]},
        }
    ]
    with operator_with(operator, "--artifact-max-size", "100Ki"):
        conveyor.create(pipeline("limited", jobs, **real.placement()))
        conveyor.create(run("limited-1", "limited"))
        done = conveyor.wait_finished("limited-1", timeout=240)
    big = job_status(done, "big")
    assert big["phase"] == "Failed" and big["reason"] == "ArtifactsFailed", big
    assert "over the limit of 102400 bytes" in big["message"], big
    assert (
        _store_client().head(
            f"artifacts/{conveyor.ns}/limited-1-{done['metadata']['uid']}/big/1/archive.tar.gz"
        )
        is None
    )


JUNIT = (
    '<testsuite name="unit" tests="3">'
    '<testcase classname="app" name="adds"/>'
    '<testcase classname="app" name="divides"><failure message="by zero"/></testcase>'
    '<testcase classname="app" name="later"><skipped/></testcase>'
    "</testsuite>"
)


def test_junit_reports_show_in_get_and_objects_go_with_expiry_and_with_their_run(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    jobs = [
        {
            "name": "unit",
            "stage": "test",
            "image": "busybox:1.36",
            "script": [f"echo '{JUNIT}' > report.xml"],
            "artifacts": {"reports": {"junit": ["report.xml"]}, "expireIn": "3 seconds"},
        },
        {
            "name": "keep",
            "stage": "test",
            "image": "busybox:1.36",
            "script": ["echo kept > keep.txt"],
            "artifacts": {"paths": ["keep.txt"]},
        },
    ]
    conveyor.create(pipeline("rep", jobs, **real.placement()))
    conveyor.create(run("rep-1", "rep"))
    done = conveyor.wait_finished("rep-1", timeout=240)
    assert done["status"]["phase"] == "Succeeded", done["status"]

    def tests_recorded() -> Any:
        return job_status(conveyor.get_run("rep-1"), "unit").get("tests")

    tests = wait_until(tests_recorded, timeout=30, what="status.jobs[unit].tests")
    assert (tests["total"], tests["passed"], tests["failed"], tests["skipped"]) == (3, 1, 1, 1)
    assert tests["failedTests"] == ["app.divides"]
    shown = conveyor_cli(clusters, "get", "rep-1", "-n", conveyor.ns)
    assert shown.returncode == 0, shown.stderr
    assert "1 passed, 1 failed, 1 skipped" in shown.stdout, shown.stdout

    store = _store_client()
    uid = done["metadata"]["uid"]
    unit = f"artifacts/{conveyor.ns}/rep-1-{uid}/unit/1/archive.tar.gz"
    keep = f"artifacts/{conveyor.ns}/rep-1-{uid}/keep/1/archive.tar.gz"
    # `expireIn: 3 seconds`: the operator's sweep (every 5 s here) deletes it; `keep` stays.
    wait_until(lambda: store.head(unit) is None, timeout=60, what="the expired archive gone")
    assert store.head(keep) is not None
    # The run deleted: its objects go too.
    conveyor.api.delete_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", conveyor.ns, "pipelineruns", "rep-1"
    )
    wait_until(
        lambda: not list(store.list(f"artifacts/{conveyor.ns}/rep-1-{uid}/")),
        timeout=60,
        what="the deleted run's objects gone",
    )


def test_a_trivy_scan_keeps_its_gitlab_report_as_an_artifact(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes, tmp_path: Path
) -> None:
    from tests.e2e.test_scans import PLANTED, REPORT, by_digest

    vulnerable = by_digest(real.registry, "library/debian", "bookworm-slim")
    conveyor.create(
        pipeline(
            "scanned",
            [
                {
                    "name": "scan",
                    "stage": "scan",
                    "scan": {"image": vulnerable},
                    "allowFailure": True,
                    "timeout": "10m",
                }
            ],
            stages=["scan"],
            **real.placement(),
        )
    )
    conveyor.create(run("scanned-1", "scanned"))
    done = conveyor.wait_finished("scanned-1", timeout=600)
    scan = job_status(done, "scan")
    assert scan["phase"] == "Failed" and scan.get("findings", {}).get("HIGH") == 1, scan

    def recorded() -> Any:
        return job_status(conveyor.get_run("scanned-1"), "scan").get("artifacts")

    wait_until(recorded, timeout=30, what="status.jobs[scan].artifacts")
    out = conveyor_cli(
        clusters, "artifacts", "scanned-1", "scan", "-o", str(tmp_path), "-n", conveyor.ns
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / REPORT).read_text())
    assert PLANTED in {v["id"] for v in report["vulnerabilities"]}


def _archive(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_an_archive_replaced_in_the_store_never_reaches_an_approved_job(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    targets: None,
    target_namespace: str,
    tmp_path: Path,
) -> None:
    """The production gate with artifacts. A `view` user finds no upload URL in any Job or pod
    (the plan is a Secret's, and `view` reads no Secret); whoever holds one anyway (an `edit`
    user who read the Secret, a leaked log) and replaces a build's archive after its job ended
    gets nothing into the approved prod job: it checks the digest recorded when the build
    ended (which its Approval covers), refuses the archive and fails, its script never run."""
    ns = conveyor.ns
    grants = [("outsider", "view"), ("approver1", "view"), ("approver1", "conveyor-approver")]
    bind(clusters, ns, grants)
    add_environment(clusters, ns, "prod", "prod", target_namespace, "--approvers", "approver1")
    jobs = [
        {
            "name": "build",
            "stage": "build",
            "image": NO_TOOLS,
            "script": ["echo built-by-build > app.txt"],
            "artifacts": {"paths": ["app.txt"]},
        },
        {
            "name": "ship",
            "stage": "deploy",
            "image": NO_TOOLS,
            "environment": {"name": "prod"},
            "script": ['echo "SHIPPING $(cat app.txt)"'],
        },
    ]
    conveyor.create(pipeline("gated", jobs, stages=["build", "deploy"], **real.placement()))
    conveyor.create(run("gated-1", "gated"))
    waiting = conveyor.wait_run("gated-1", lambda r: phase(r) == "WaitingForApproval", timeout=240)
    # The Approval is asked for once the build's archive is recorded: it covers that digest.
    (record,) = job_status(waiting, "build")["artifacts"]
    assert record["digest"].startswith("sha256:")

    # `view` sees the Jobs and pods, with no URL in them, and cannot read the plan's Secret.
    viewer = clusters.api("ci-as-outsider")
    seen = json.dumps(
        [
            *(j.to_dict() for j in client.BatchV1Api(viewer).list_namespaced_job(ns).items),
            *(p.to_dict() for p in client.CoreV1Api(viewer).list_namespaced_pod(ns).items),
        ],
        default=str,
    )
    assert "conveyor-transfer-plan" in seen and "X-Amz-Signature" not in seen
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(viewer).list_namespaced_secret(ns)
    assert denied.value.status == 403

    # Whoever holds the build's upload URL replaces its archive, after its record.
    upload = _plan_of(conveyor, "gated-1", "build")["artifacts"]["url"]
    evil = _archive({"app.txt": "replaced\n", "planted.sh": "echo owned\n"})
    request = urllib.request.Request(upload, data=evil, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200  # the store took it: only the digest check stands between

    # A download of it now fails its digest check, nothing extracted (the approver's `view`
    # may download).
    _wait_can_create_downloads(clusters, ns, "approver1")
    fetched = conveyor_cli(
        clusters, "artifacts", "gated-1", "build", "-o", str(tmp_path / "got"), "-n", ns,
        context="ci-as-approver1",
    )  # fmt: skip
    assert fetched.returncode == 1
    assert "not the one its job uploaded" in fetched.stderr, fetched.stderr
    assert "nothing extracted" in fetched.stderr and not (tmp_path / "got").exists()

    gate = wait_until(
        lambda: next(
            (
                a
                for a in conveyor.api.list_namespaced_custom_object(
                    "conveyor.dev", "v1alpha1", ns, "approvals"
                )["items"]
                if a["spec"]["pipelineRun"] == "gated-1"
            ),
            None,
        ),
        what="the approval of gated-1",
    )
    approved = conveyor_cli(
        clusters, "approve", gate["metadata"]["name"], "-n", ns, context="ci-as-approver1"
    )
    assert approved.returncode == 0, approved.stderr
    done = conveyor.wait_finished("gated-1", timeout=240)
    ship = job_status(done, "ship")
    assert ship["phase"] == "Failed", ship
    assert ship.get("reason") == "ArtifactsDownloadFailed", ship
    assert "not the one its job uploaded" in ship.get("message", ""), ship
    assert record["digest"].removeprefix("sha256:") in ship["message"]
    out = conveyor_cli(clusters, "logs", "gated-1", "ship", "-n", ns)
    assert "SHIPPING" not in out.stdout and "owned" not in out.stdout


NON_ROOT = "conveyor-test/nonroot-shell:1"  # dash, cat and sleep, run as user 1000


def test_a_job_image_that_is_not_root_writes_its_checkout_and_downloaded_artifacts(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    """As with GitLab's Kubernetes executor (its helper's umask 0000): the checkout and the
    artifacts are written by root in init containers, and a job image that runs as another user
    still edits checked-out files, adds files beside them, and adds and replaces files in the
    directories its artifacts came in."""
    from tests.e2e.gitrepo import new_repo
    from tests.e2e.test_runner import publish

    root, base = git_server
    publish(new_repo(tmp_path / "app", {"README.md": "app\n", "src/main.txt": "v1\n"}), root, "app")
    jobs = [
        {
            "name": "build",
            "stage": "build",
            "image": "busybox:1.36",  # as root
            "script": ["mkdir -p out/deep", "echo built > out/deep/app.txt"],
            "artifacts": {"paths": ["out/"]},
        },
        {
            "name": "edit",
            "stage": "test",
            "image": NON_ROOT,
            "script": [
                # The script's own user id, from /proc (the image has no `id`).
                "while read -r k v _; do case $k in Uid:) echo uid=$v;; esac; done"
                " </proc/self/status",
                "echo edited >> README.md",  # a checked-out file
                "echo new > src/new.txt",  # a checked-out directory
                "echo more > out/deep/more.txt",  # a downloaded directory
                'test "$(cat out/deep/app.txt)" = built',
                "echo OK-AS-NON-ROOT",
            ],
        },
    ]
    conveyor.create(
        pipeline(
            "nonroot",
            jobs,
            stages=["build", "test"],
            source={"url": f"{base}/app.git"},
            **real.placement(),
        )
    )
    conveyor.create(run("nonroot-1", "nonroot", ref="main"))
    done = conveyor.wait_finished("nonroot-1", timeout=300)
    log = "\n".join(_logs(clusters, conveyor.ns, "nonroot-1", "edit"))
    assert job_status(done, "edit")["phase"] == "Succeeded", (done["status"], log)
    assert "OK-AS-NON-ROOT" in log
    assert "uid=1000" in log  # the script did not run as root
