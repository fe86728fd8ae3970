"""The build's cold and warm times, on the real node: `make bench` runs it after bench/run.py.

One `build` job (rootless BuildKit, the operator's builder image) builds examples/go-app/src and
pushes it to the local registry, with its cache in the registry (`build.cache`): first with a
cache reference never used before (cold: nothing to import; the base images are already in the
local registry, as on any platform with a mirror), then the same commit again (warm: the steps
come from the imported cache). Repeated `--rounds` times; medians of the job's own duration
(its Job's start to its end, from status.jobs[]) and of the whole run's.
Writes its section of docs/benchmarks.md (after the others, kept by bench/run.py). Figures to
compare, never assertions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conveyor import (  # noqa: E402 - the test harness runs the operator the same way
    Conveyor,
    Operator,
    install,
    job_status,
    pipeline,
    run,
    service_account_kubeconfig,
)
from tests.e2e.gitrepo import go_app_repo  # noqa: E402
from tests.e2e.realnode import RealNodes, git_http_handler, serve  # noqa: E402
from tests.e2e.support import STATE, Clusters, wait_until  # noqa: E402

BEGIN, END = "<!-- builds:begin -->", "<!-- builds:end -->"


def log(message: str) -> None:
    print(f"[bench-builds] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seconds(status: dict[str, Any]) -> float:
    start = datetime.datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(status["completionTime"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def one_build(conv: Conveyor, name: str, pipeline_name: str) -> dict[str, float]:
    began = time.monotonic()
    conv.create(run(name, pipeline_name, ref="master"))
    done = conv.wait_finished(name, timeout=1800)
    wall = time.monotonic() - began
    status = job_status(done, "image")
    if status.get("exitCode") != 0:
        raise SystemExit(f"{name} failed: {status}")
    return {"job_s": round(seconds(status), 1), "run_s": round(wall, 1)}


def measure(clusters: Clusters, real: RealNodes, rounds: int, work: Path) -> dict[str, Any]:
    ns = f"bench-builds-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    clusters.kubectl(
        "ci", "label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"
    )
    wait_until(lambda: core.read_namespaced_service_account("default", ns), what="default SA")
    root = work / "git"
    root.mkdir()
    repo = go_app_repo(work / "go-app")
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(repo.path), str(root / "go-app.git")], check=True
    )
    conv = Conveyor(clusters, ns)
    cold: list[dict[str, float]] = []
    warm: list[dict[str, float]] = []
    try:
        with serve(real.host_ip, git_http_handler(root)) as port:
            for i in range(rounds):
                # A new cache reference each round: the first build of it is cold.
                cache = f"$CI_REGISTRY/{ns}/cache:{i}"
                conv.create(
                    pipeline(
                        f"bench-build-{i}",
                        [
                            {
                                "name": "image",
                                "stage": "build",
                                "build": {
                                    "image": f"$CI_REGISTRY/{ns}/go-app:$CI_COMMIT_SHORT_SHA",
                                    "context": "src",
                                    "cache": {"image": cache},
                                },
                                "timeout": "30m",
                            }
                        ],
                        source={"url": f"http://{real.host_ip}:{port}/go-app.git"},
                        **real.placement(),
                    )
                )
                cold.append(one_build(conv, f"cold-{i}", f"bench-build-{i}"))
                log(f"round {i}: cold {cold[-1]}")
                warm.append(one_build(conv, f"warm-{i}", f"bench-build-{i}"))
                log(f"round {i}: warm {warm[-1]}")
    finally:
        core.delete_namespace(ns)
    return {
        "rounds": rounds,
        "cold_job_s": statistics.median(r["job_s"] for r in cold),
        "warm_job_s": statistics.median(r["job_s"] for r in warm),
        "cold_run_s": statistics.median(r["run_s"] for r in cold),
        "warm_run_s": statistics.median(r["run_s"] for r in warm),
        "samples": {"cold": cold, "warm": warm},
    }


SECTION = """{begin}
## Image builds: cold and warm

`bench/builds.py` (run by `make bench` after the above) on the real node of the ci cluster: a
`build` job (rootless BuildKit v0.19.0, `moby/buildkit:v0.19.0-rootless` from `hack/images/`)
builds `examples/go-app/src` (a Go build stage on `golang:1.23-alpine`, then
`gcr.io/distroless/static:nonroot`) and pushes it to the local registry, with `build.cache` in
that registry. Cold: a cache reference never used before (the base images are already in the
local registry, as behind any mirror); warm: the same commit again, the cache imported. Medians
of {rounds} round(s); job = its Job's start to end, run = from creating the run to its end.

Last run: {date} on {machine}.

| build | job (s) | run (s) |
|---|---|---|
| cold | {cold_job_s} | {cold_run_s} |
| warm (cache from the registry) | {warm_job_s} | {warm_run_s} |

Samples: `{samples}`
{end}
"""


def write_section(
    results: dict[str, Any], path: Path, template: str = SECTION, begin: str = BEGIN, end: str = END
) -> None:
    """`template` filled with `results`, replacing its previous text between begin and end
    (the other sections of docs/benchmarks.md stay)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = template.format(begin=begin, end=end, **results)
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    up = subprocess.run([sys.executable, str(ROOT / "hack" / "localcluster.py"), "up"])
    if up.returncode != 0:
        return 1
    clusters = Clusters(kubeconfig=STATE / "kubeconfig", kubectl_path=STATE / "bin" / "kubectl")
    real = RealNodes.load()
    if not real.nodes:
        log("no real node (CONVEYOR_REAL_NODES is empty): nothing to measure")
        return 1
    install(clusters)
    work = Path(tempfile.mkdtemp(prefix="bench-builds-"))
    operator = Operator(
        service_account_kubeconfig(clusters, work / "kubeconfig"),
        STATE / "logs" / "bench-builds-operator.log",
        port=free_port(),
        webhook_port=free_port(),
        metrics_port=free_port(),
        extra=(
            "--registry",
            real.registry,
            "--registry-mirror",
            real.registry,
            "--insecure-registry",
            real.registry,
        ),
    )
    operator.start()
    try:
        results = measure(clusters, real, args.rounds, work)
    finally:
        operator.stop()
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    write_section(results, args.report)
    log(f"wrote {args.report}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
