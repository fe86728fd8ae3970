"""Real image builds on the real node: rootless BuildKit (`build` jobs) and Docker-in-Docker
(`services: [docker:dind]`), pushing to the local registry; every digest is checked against what
the registry itself serves."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conveyor import (
    Conveyor,
    Operator,
    conveyor_cli,
    job_status,
    operator_with,
    operator_without,
    pipeline,
    platform_options,
    run,
)
from tests.e2e.gitrepo import go_app_repo
from tests.e2e.realnode import RealNodes, git_http_handler, serve
from tests.e2e.support import Clusters, wait_until

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
USER, PASSWORD = "builder", "s3cret-push"


def registry_digest(registry: str, repository: str, tag: str, auth: str | None = None) -> str:
    """The digest the registry serves for repository:tag (its Docker-Content-Digest)."""
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFEST_TYPES},
    )
    if auth:
        req.add_header("Authorization", f"Basic {auth}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Docker-Content-Digest"]


@contextmanager
def auth_registry(host: str, root: Path) -> Iterator[str]:
    """A second registry (Debian's docker-registry, as the local one) that requires htpasswd
    credentials, on host:<free port>; yields its address."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc's crypt makes bcrypt hashes, the only kind the registry reads

        hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (root / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {"addr": f"{host}:{port}"},
                "auth": {"htpasswd": {"realm": "conveyor-e2e", "path": str(root / "htpasswd")}},
            }
        )
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(root / "config.yml")], stdout=log, stderr=log
    )
    address = f"{host}:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
        except urllib.error.HTTPError as e:
            return e.code == 401
        except OSError:
            return False
        return False

    try:
        wait_until(answers, timeout=30, what="the registry with credentials")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def private_registry(real: RealNodes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with auth_registry(real.host_ip, tmp_path_factory.mktemp("auth-registry")) as address:
        yield address


@pytest.fixture(scope="module")
def build_operator(
    operator: Operator, real: RealNodes, private_registry: str
) -> Iterator[Operator]:
    """The operator as a platform runs it for builds: CI_REGISTRY is the local registry, which
    also mirrors the public images (plain HTTP, as the nodes' containerd reaches it), and Docker
    daemons may run privileged."""
    with operator_with(
        operator,
        *platform_options(real),
        "--insecure-registry",
        private_registry,
        "--privileged-services",
    ) as op:
        yield op


def privileged_namespace(clusters: Clusters, namespace: str) -> None:
    """As a user sets it up: rootless BuildKit (seccomp/AppArmor Unconfined) and dockerd
    (privileged) are allowed only at Pod Security level `privileged`."""
    clusters.kubectl(
        "ci", "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged"
    )


@dataclass(frozen=True)
class Repo:
    conveyor: Conveyor  # of the test's (privileged) namespace
    url: str  # the go-app repository over HTTP
    sha: str  # master's head


BROKEN_DOCKERFILE = "FORM golang:1.23-alpine\nRUN go build ./...\n"
DIND_DOCKERFILE = "FROM busybox:1.36\nCOPY index.html /www/index.html\n"


@pytest.fixture
def builds(
    build_operator: Operator, clusters: Clusters, namespace: str, real: RealNodes, tmp_path: Path
) -> Iterator[Repo]:
    """A privileged namespace and the go-app repository served over HTTP (master, and a branch
    `broken` whose Dockerfile is not one)."""
    privileged_namespace(clusters, namespace)
    root = tmp_path / "git"
    root.mkdir()
    work = go_app_repo(tmp_path / "go-app")
    sha = work.head()
    work.git("checkout", "-q", "-b", "broken")
    (work.path / "src" / "Dockerfile").write_text(BROKEN_DOCKERFILE)
    work.git("commit", "-q", "-a", "-m", "a typo in the Dockerfile")
    work.git("checkout", "-q", "master")
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work.path), str(root / "go-app.git")], check=True
    )
    with serve(real.host_ip, git_http_handler(root)) as port:
        yield Repo(Conveyor(clusters, namespace), f"http://{real.host_ip}:{port}/go-app.git", sha)


def logs(clusters: Clusters, conveyor: Conveyor, run_name: str, job: str) -> str:
    out = conveyor_cli(clusters, "logs", run_name, job, "-c", "script", "-n", conveyor.ns)
    return out.stdout + out.stderr


def build_job(name: str, image: str, **build: Any) -> dict[str, Any]:
    return {
        "name": name,
        "stage": "build",
        "build": {"image": image, "context": "src", **build},
        "timeout": "20m",
    }


def test_docker_in_docker_without_privileged_services_fails_saying_why(
    operator: Operator, clusters: Clusters, namespace: str, real: RealNodes
) -> None:
    """The session's operator started again without --privileged-services."""
    privileged_namespace(clusters, namespace)
    conveyor = Conveyor(clusters, namespace)
    conveyor.create(
        pipeline(
            "dind",
            [
                {
                    "name": "docker-build",
                    "stage": "build",
                    "image": "docker:27",
                    "services": [{"name": "docker:dind"}],
                    "script": ["docker info"],
                }
            ],
            **real.placement(),
        )
    )
    with operator_without(operator, "--privileged-services"):
        conveyor.create(run("dind-1", "dind"))
        done = conveyor.wait_finished("dind-1", timeout=300)
    status = job_status(done, "docker-build")
    assert done["status"]["phase"] == "Failed"
    assert status["exitCode"] == 1
    assert "--privileged-services" in status["message"], status
    assert "docker:dind" in status["message"], status


def test_a_rootless_build_pushes_and_its_digest_is_the_registry_s_and_a_rebuild_uses_the_cache(
    builds: Repo, clusters: Clusters, real: RealNodes
) -> None:
    conveyor = builds.conveyor
    repository = f"{conveyor.ns}/go-app"
    conveyor.create(
        pipeline(
            "build",
            [
                build_job(
                    "image",
                    f"$CI_REGISTRY/{repository}:$CI_COMMIT_SHORT_SHA",
                    cache={"image": f"$CI_REGISTRY/{repository}/cache:main"},
                )
            ],
            source={"url": builds.url},
            **real.placement(),
        )
    )
    conveyor.create(run("build-1", "build", ref="master"))
    done = conveyor.wait_finished("build-1", timeout=1200)
    first = logs(clusters, conveyor, "build-1", "image")
    status = job_status(done, "image")
    assert status["exitCode"] == 0, first
    served = registry_digest(real.registry, repository, builds.sha[:8])
    assert status["imageDigest"] == served, first
    # The pod ran on the real node, as uid 1000, unprivileged.
    pods = client.CoreV1Api(clusters.api("ci")).list_namespaced_pod(conveyor.ns).items
    assert {p.spec.node_name for p in pods} == {real.nodes["ci"]["name"]}
    script = next(c for p in pods for c in p.spec.containers if c.name == "script")
    assert script.security_context.run_as_user == 1000
    assert not script.security_context.privileged
    # The base images came through the mirror under their public names, and the cache was
    # exported beside the image.
    assert "docker.io/library/golang:1.23-alpine" in first, first
    assert "gcr.io/distroless/static:nonroot" in first, first
    assert registry_digest(real.registry, f"{repository}/cache", "main").startswith("sha256:")
    assert not [line for line in first.splitlines() if "go build" in line and "CACHED" in line]

    # The same commit again, on a fresh builder: the steps come from the registry's cache.
    conveyor.create(run("build-2", "build", ref="master"))
    again = conveyor.wait_finished("build-2", timeout=1200)
    second = logs(clusters, conveyor, "build-2", "image")
    assert job_status(again, "image")["exitCode"] == 0, second
    assert "importing cache manifest from" in second, second
    lines = second.splitlines()
    step = next(line.split()[0] for line in lines if "RUN CGO_ENABLED=0 go build" in line)
    assert f"{step} CACHED" in lines, second
    # The same image: same layers, same digest.
    assert job_status(again, "image")["imageDigest"] == served


def test_a_build_pushes_with_credentials_to_a_registry_that_requires_them(
    builds: Repo, clusters: Clusters, real: RealNodes, private_registry: str
) -> None:
    conveyor = builds.conveyor
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{private_registry}/v2/", timeout=5)
    assert refused.value.code == 401
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = {"auths": {private_registry: {"auth": auth}}}
    client.CoreV1Api(clusters.api("ci")).create_namespaced_secret(
        conveyor.ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="regcred"),
            type="kubernetes.io/dockerconfigjson",
            string_data={".dockerconfigjson": json.dumps(config)},
        ),
    )
    repository = f"{conveyor.ns}/go-app"
    conveyor.create(
        pipeline(
            "private",
            [build_job("image", f"{private_registry}/{repository}:v1", registrySecret="regcred")],
            source={"url": builds.url},
            **real.placement(),
        )
    )
    conveyor.create(run("private-1", "private", ref="master"))
    done = conveyor.wait_finished("private-1", timeout=1200)
    log = logs(clusters, conveyor, "private-1", "image")
    status = job_status(done, "image")
    assert status["exitCode"] == 0, log
    assert status["imageDigest"] == registry_digest(private_registry, repository, "v1", auth)
    # The credentials are a file for the builder: never in the status, the log or the pod.
    assert PASSWORD not in json.dumps(done) and auth not in log
    pod = client.CoreV1Api(clusters.api("ci")).list_namespaced_pod(conveyor.ns).items[0]
    assert auth not in json.dumps(client.ApiClient().sanitize_for_serialization(pod))


def test_a_broken_dockerfile_fails_the_run_with_buildkit_s_message(
    builds: Repo, clusters: Clusters, real: RealNodes
) -> None:
    conveyor = builds.conveyor
    conveyor.create(
        pipeline(
            "broken",
            [build_job("image", f"$CI_REGISTRY/{conveyor.ns}/broken:1")],
            source={"url": builds.url},
            **real.placement(),
        )
    )
    conveyor.create(run("broken-1", "broken", ref="broken"))
    done = conveyor.wait_finished("broken-1", timeout=900)
    status = job_status(done, "image")
    assert done["status"]["phase"] == "Failed"
    assert status["exitCode"] != 0
    # BuildKit's own words, in the job's status.
    assert "dockerfile parse error" in status["message"], status
    assert "unknown instruction: FORM" in status["message"], status


def test_docker_in_docker_builds_and_pushes_as_the_article_runs_it(
    builds: Repo, clusters: Clusters, real: RealNodes
) -> None:
    conveyor = builds.conveyor
    image = f"{real.registry}/{conveyor.ns}/dind-app:$CI_COMMIT_SHORT_SHA"
    dockerfile = DIND_DOCKERFILE.replace("\n", "\\n")
    conveyor.create(
        pipeline(
            "dind",
            [
                {
                    "name": "docker-build",
                    "stage": "build",
                    "image": "docker:27",
                    "services": [{"name": "docker:27-dind", "alias": "docker"}],
                    "variables": {"DOCKER_HOST": "tcp://docker:2375", "DOCKER_TLS_CERTDIR": ""},
                    "script": [
                        "docker version",
                        f'printf "{dockerfile}" > src/Dockerfile.dind',
                        f"docker build -t {image} -f src/Dockerfile.dind src",
                        f"docker push {image}",
                        f"docker image inspect --format '{{{{index .RepoDigests 0}}}}' {image}",
                    ],
                    "timeout": "20m",
                }
            ],
            source={"url": builds.url},
            **real.placement(),
        )
    )
    conveyor.create(run("dind-1", "dind", ref="master"))
    done = conveyor.wait_finished("dind-1", timeout=1200)
    log = logs(clusters, conveyor, "dind-1", "docker-build")
    assert job_status(done, "docker-build")["exitCode"] == 0, log
    digest = registry_digest(real.registry, f"{conveyor.ns}/dind-app", builds.sha[:8])
    assert f"@{digest}" in log, log
    assert "Server:" in log, log  # the service's daemon answered


def image_file(registry: str, repository: str, tag: str, path: str) -> bytes:
    """The content of file `path` in the image repository:tag, read from its layers as the
    registry serves them (the last layer that has it wins)."""

    def get(url: str, accept: str | None = None) -> bytes:
        req = urllib.request.Request(f"http://{registry}/v2/{repository}/{url}")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=30) as r:
            return bytes(r.read())

    manifest = json.loads(get(f"manifests/{tag}", MANIFEST_TYPES))
    if "manifests" in manifest:  # an index: the image of a platform, not an attestation
        entry = next(
            m for m in manifest["manifests"] if m.get("platform", {}).get("os") != "unknown"
        )
        manifest = json.loads(get(f"manifests/{entry['digest']}", MANIFEST_TYPES))
    found = None
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(get(f"blobs/{layer['digest']}"))) as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == path.lstrip("/") and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    found = extracted.read()
    if found is None:
        raise AssertionError(f"{path} is in none of the layers of {repository}:{tag}")
    return found


def test_a_build_gets_the_artifacts_of_the_jobs_it_needs_in_its_context(
    builds: Repo, clusters: Clusters, real: RealNodes
) -> None:
    """GitLab's usual split: a job compiles and keeps what it made, the image job packages it.
    Here the compiling job writes the context itself (its Dockerfile too): the build can only
    succeed if the artifact was extracted into its checkout, and the pushed image holds the
    very bytes the job wrote."""
    conveyor = builds.conveyor
    repository = f"{conveyor.ns}/packaged"
    conveyor.create(
        pipeline(
            "package",
            [
                {
                    "name": "compile",
                    "stage": "build",
                    "image": "busybox:1.36",
                    "script": [
                        "mkdir -p out",
                        'printf "made by %s\\n" "$CI_JOB_ID" > out/stamp.txt',
                        "printf 'FROM scratch\\nCOPY stamp.txt /stamp.txt\\n' > out/Dockerfile",
                    ],
                    "artifacts": {"paths": ["out/"]},
                },
                {
                    "name": "image",
                    "stage": "package",
                    "needs": ["compile"],
                    "build": {"image": f"$CI_REGISTRY/{repository}:1", "context": "out"},
                    "timeout": "20m",
                },
            ],
            stages=["build", "package"],
            source={"url": builds.url},
            **real.placement(),
        )
    )
    conveyor.create(run("package-1", "package", ref="master"))
    done = conveyor.wait_finished("package-1", timeout=1200)
    log = logs(clusters, conveyor, "package-1", "image")
    assert done["status"]["phase"] == "Succeeded", (done["status"], log)
    compile_job = job_status(done, "compile")["jobName"]
    # The image holds what the compile job wrote, byte for byte.
    assert image_file(real.registry, repository, "1", "stamp.txt") == (
        f"made by {compile_job}\n".encode()
    )
    assert job_status(done, "image")["imageDigest"] == registry_digest(
        real.registry, repository, "1"
    )
    # The download was checked against the digest recorded when compile ended.
    pods = client.CoreV1Api(clusters.api("ci")).list_namespaced_pod(conveyor.ns).items
    image_job = job_status(done, "image")["jobName"]
    pod = next(p for p in pods if p.metadata.labels.get("job-name") == image_job)
    assert [c.name for c in pod.spec.init_containers] == ["checkout", "artifacts"]
    builder = pod.spec.containers[0]
    assert not [m for m in builder.volume_mounts if m.mount_path == "/conveyor/plan"]
