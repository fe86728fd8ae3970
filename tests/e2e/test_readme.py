"""The README's "Using it" block, run as it is written: its first two lines as the cluster's
admin (it says so), the rest as a developer who has only what those lines grant, in a fresh
namespace, with `kubectl` and `conveyor` from PATH and the kubeconfig the block changes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from kubernetes import client

from tests.e2e.conveyor import Conveyor
from tests.e2e.support import ROOT, Clusters, wait_until

ADMIN_LINES = 2  # "Create both first, as a cluster admin"


def using_it_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using it") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README: no sh block under Using it"
    return [line for line in block.group(1).splitlines() if line.strip()]


def codes(proc: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(m) for m in re.findall(r"^::rc \d+ (\d+)$", proc.stdout, re.M)]


def test_the_readmes_using_it_block_runs_line_by_line(
    conveyor: Conveyor, clusters: Clusters, tmp_path: Path
) -> None:
    del conveyor  # the operator runs; the block makes its own namespace
    ns = f"readme-{uuid.uuid4().hex[:6]}"
    lines = [line.replace("my-team", ns) for line in using_it_block()]
    assert lines[0].startswith("kubectl create namespace")
    assert "rolebinding" in lines[1] and "--group=developers" in lines[1]
    assert "import-gitlab" in lines[-1]

    # kubectl and conveyor as a user has them; a kubeconfig of their own, as the developer.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(clusters.kubectl_path)
    conveyor_bin = Path(sys.executable).parent / "conveyor"
    assert conveyor_bin.exists(), conveyor_bin
    (bin_dir / "conveyor").symlink_to(conveyor_bin)
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(clusters.kubeconfig, kubeconfig)
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    shutil.copy(ROOT / "examples" / "go-app" / ".gitlab-ci.yml", work / ".gitlab-ci.yml")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KUBECONFIG": str(kubeconfig)}

    def sh(script: list[str], context: str) -> subprocess.CompletedProcess[str]:
        subprocess.run(
            ["kubectl", "config", "use-context", context], env=env, check=True, capture_output=True
        )
        # As typed into an interactive shell: no `set -e`; each line's exit code is kept.
        numbered = "".join(f'{line}\necho "::rc {i} $?"\n' for i, line in enumerate(script))
        return subprocess.run(
            ["bash", "-c", numbered],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    core = client.CoreV1Api(clusters.api("ci"))
    try:
        admin = sh(lines[:ADMIN_LINES], "ci")
        assert codes(admin) == [0, 0], admin.stderr
        wait_until(
            lambda: core.read_namespaced_service_account("default", ns),
            what=f"serviceaccount default in {ns}",
        )
        developer = sh(lines[ADMIN_LINES:], "ci-as-developer")
        # Every line succeeds; import-gitlab may say 3: converted, what runs differently listed.
        *rest, imported = codes(developer)
        assert rest == [0] * len(rest) and imported in (0, 3), (developer.stdout, developer.stderr)
        out = developer.stdout
        # What each step shows: the runs, the jobs, the followed logs, the description.
        assert "NAME" in out and "STATUS" in out, out
        assert "release" in out, out
        run = json.loads(
            subprocess.run(
                ["kubectl", "get", "pipelineruns", "-n", ns, "-o", "json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["items"]
        (only,) = run
        assert only["status"]["phase"] == "Succeeded", only["status"]
        manifest = (work / "pipeline.yaml").read_text()
        assert "kind: Pipeline" in manifest and "name: my-app" in manifest
    finally:
        core.delete_namespace(ns)
