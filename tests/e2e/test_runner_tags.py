"""GitLab runner tags select nodes: the tests' operator maps tag `docker` to the real node
(TAG_OPTIONS: its label and the toleration of its taint). An imported .gitlab-ci.yml job tagged
`docker` lands on the real node and really runs; a job whose tag nobody maps fails, naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client

from tests.e2e.conveyor import Conveyor, conveyor_cli, job_status, run
from tests.e2e.gitrepo import new_repo
from tests.e2e.realnode import RealNodes
from tests.e2e.support import Clusters

GITLAB_CI = """\
stages: [test]
default:
  image: busybox:1.36
  tags: [docker]
on-the-real-node:
  stage: test
  script:
    - cat README
    - echo "kernel says $(uname -s), host $(hostname)"
needs-a-gpu:
  stage: test
  tags: [docker, gpu]
  script:
    - echo never runs
"""


def test_an_imported_job_with_a_tag_runs_on_the_node_the_tag_maps_to(
    conveyor: Conveyor,
    clusters: Clusters,
    real: RealNodes,
    git_server: tuple[Path, str],
    tmp_path: Path,
) -> None:
    root, base = git_server
    work = new_repo(tmp_path / "work", {"README": "tagged checkout\n", ".gitlab-ci.yml": GITLAB_CI})
    bare = root / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(bare)], check=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            "import-gitlab",
            str(work.path / ".gitlab-ci.yml"),
            "--name",
            "tagged",
            "--repo",
            f"{base}/app.git",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr  # tags are no longer an omission
    manifest = yaml.safe_load(proc.stdout)
    jobs = {j["name"]: j for j in manifest["spec"]["jobs"]}
    assert jobs["on-the-real-node"]["tags"] == ["docker"]
    assert "nodeSelector" not in manifest["spec"]  # the tag alone places the job
    conveyor.create(manifest)
    conveyor.create(run("tagged-1", "tagged", ref="main"))
    done = conveyor.wait_finished("tagged-1", timeout=180)

    ran = job_status(done, "on-the-real-node")
    assert ran["phase"] == "Succeeded" and ran["exitCode"] == 0, done["status"]
    pods = client.CoreV1Api(clusters.api("ci")).list_namespaced_pod(conveyor.ns).items
    assert [p.spec.node_name for p in pods] == [real.nodes["ci"]["name"]]
    assert pods[0].spec.node_selector == real.node_selector
    logs = conveyor_cli(clusters, "logs", "tagged-1", "on-the-real-node", "-n", conveyor.ns)
    assert "tagged checkout" in logs.stdout.splitlines(), logs.stdout + logs.stderr
    assert "kernel says Linux, host " in logs.stdout

    unmapped = job_status(done, "needs-a-gpu")
    assert unmapped["phase"] == "Failed", done["status"]
    assert unmapped["reason"] == "UnmappedTag"
    assert "no node serves tag 'gpu'" in unmapped["message"]
    assert done["status"]["phase"] == "Failed"
    # No Job was made for it: nothing waits for a node that does not exist.
    assert {j.metadata.annotations["conveyor.dev/job"] for j in conveyor.jobs("tagged-1")} == {
        "on-the-real-node"
    }
