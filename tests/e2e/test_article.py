"""The article's own `.gitlab-ci.yml` (examples/go-app/.gitlab-ci.yml, the seed's, unchanged),
imported and run on the real node with the images its jobs name: each job ends as it would on
GitLab, for GitLab's reasons. The platform runs the operator as the article's runner was set up:
CI_REGISTRY is the local registry (which holds the team's own images, `encompass-dind` and
`kubectl_deployer`), and Docker-in-Docker services may run privileged."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conveyor import (
    Conveyor,
    Operator,
    conveyor_cli,
    job_status,
    operator_with,
    phase,
    platform_options,
    run,
)
from tests.e2e.gitrepo import GitRepo, go_app_repo
from tests.e2e.realnode import RealNodes, git_http_handler, serve
from tests.e2e.support import Clusters
from tests.e2e.test_gitlab import import_gitlab


@pytest.fixture
def article(
    operator: Operator, clusters: Clusters, namespace: str, tmp_path: Path
) -> Iterator[tuple[Conveyor, GitRepo, Path]]:
    """The seed's repository served over HTTP, its pipeline imported into a namespace at Pod
    Security `privileged` (its jobs all have a docker:dind service), every job on the real node,
    and an operator that allows privileged services."""
    real = RealNodes.load()
    # The article's team keeps its own job image in its registry: Docker's client with git,
    # which the catalogue's docker:latest is.
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{real.registry}/library/docker:latest",
            f"docker://{real.registry}/operations/images/encompass-dind:18.03.0-ce",
        ],
        check=True,
    )
    clusters.kubectl(
        "ci", "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged"
    )
    root = tmp_path / "git"
    root.mkdir()
    work = go_app_repo(tmp_path / "go-app")
    bare = root / "go-app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    with serve(real.host_ip, git_http_handler(root)) as port:
        url = f"http://{real.host_ip}:{port}/go-app.git"
        code, manifest, stderr = import_gitlab(work.path / ".gitlab-ci.yml", "go-app", url)
        assert code in (0, 3), stderr
        manifest["spec"].update(real.placement())  # the platform's runner: the real node
        conveyor = Conveyor(clusters, namespace)
        conveyor.create(manifest)
        with operator_with(operator, *platform_options(real), "--privileged-services"):
            yield conveyor, work, bare


def push(work: GitRepo, bare: Path, message: str, files: dict[str, str]) -> tuple[str, str]:
    before = work.head()
    after = work.commit(message, files)
    subprocess.run(["git", "push", "-q", str(bare), "master"], cwd=work.path, check=True)
    return before, after


def script_log(clusters: Clusters, conveyor: Conveyor, name: str, job: str) -> str:
    out = conveyor_cli(clusters, "logs", name, job, "-c", "script", "-n", conveyor.ns)
    return out.stdout + out.stderr


def test_the_articles_pipeline_ends_job_by_job_as_on_gitlab(
    article: tuple[Conveyor, GitRepo, Path], clusters: Clusters
) -> None:
    conveyor, work, bare = article

    # A push that changes the Go code: its test job runs in golang:alpine, which has no Docker
    # client, so the article's `docker version` line ends it with 127; the later stages are
    # skipped, the manual prod deploy too.
    before, after = push(work, bare, "a faster handler", {"src/server.go": "\n// faster\n"})
    revision = {"ref": "master", "sha": after, "beforeSha": before}
    conveyor.create(run("go", "go-app", revision=revision, pipelineSource="push"))
    done = conveyor.wait_finished("go", timeout=900)
    log = script_log(clusters, conveyor, "go", "test")
    test = job_status(done, "test")
    assert (test["phase"], test["exitCode"]) == ("Failed", 127), (test, log)
    assert "$ docker version" in log.splitlines(), log
    assert "docker: command not found" in log or "docker: not found" in log, log
    for job in ("build", "container-scan", "k8s-deploy-test", "k8s-deploy-prod"):
        assert job_status(done, job)["phase"] == "Skipped", (job, done["status"])
    assert phase(done) == "Failed"

    # A push that changes only the Dockerfile: no test job (`changes: src/*.go`). The build job
    # runs in the team's encompass-dind image beside docker:stable-dind. Docker's dind images
    # enable TLS since 19.03 (DOCKER_TLS_CERTDIR=/certs: the daemon listens on 2376 only), and
    # the article still points DOCKER_HOST at tcp://localhost:2375, so `docker version` prints
    # its client and fails to reach the daemon (exit 1), as it does on GitLab with these
    # images; the scan and deploy stages are skipped.
    before, after = push(work, bare, "a smaller image", {"src/Dockerfile": "\n# smaller\n"})
    revision = {"ref": "master", "sha": after, "beforeSha": before}
    conveyor.create(run("image", "go-app", revision=revision, pipelineSource="push"))
    done = conveyor.wait_finished("image", timeout=900)
    jobs = {j["name"] for j in done["status"]["jobs"]}
    assert "test" not in jobs or job_status(done, "test")["phase"] == "Skipped", done["status"]
    build_log = script_log(clusters, conveyor, "image", "build")
    build = job_status(done, "build")
    assert (build["phase"], build["exitCode"]) == ("Failed", 1), (build, build_log)
    lines = build_log.splitlines()
    assert "$ docker version" in lines and "Client:" in lines, build_log
    assert (
        "Cannot connect to the Docker daemon at tcp://localhost:2375. "
        "Is the docker daemon running?" in lines
    ), build_log
    for job in ("container-scan", "k8s-deploy-test", "k8s-deploy-prod"):
        assert job_status(done, job)["phase"] == "Skipped", (job, done["status"])
    assert phase(done) == "Failed"
