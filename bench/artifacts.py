"""Artifacts and caches on the real node, through the local S3 store: `make bench` runs it.

Throughput: a job (busybox) writes 100 MiB of random bytes and keeps them as an artifact; a job
of the next stage downloads them. The transfer binary times itself in the pods (archive, gzip
at its fastest level, one PUT; GET, gunzip, extract) and prints it in the job's log, which this
reads. Cache: a job whose dependency step costs real work (it generates a directory of files by
hashing random data) unless its cache restored that directory; the same pipeline run twice, the
job's own duration each time (from status.jobs[]): the difference is what the cache saves.
Writes its section of docs/benchmarks.md. Figures to compare, never assertions.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.builds import write_section  # noqa: E402
from tests.e2e.conveyor import (  # noqa: E402 - the test harness runs the operator the same way
    Conveyor,
    Operator,
    conveyor_cli,
    install,
    job_status,
    pipeline,
    run,
    service_account_kubeconfig,
    store_options,
)
from tests.e2e.realnode import RealNodes  # noqa: E402
from tests.e2e.support import STATE, Clusters, wait_until  # noqa: E402

BEGIN, END = "<!-- artifacts:begin -->", "<!-- artifacts:end -->"
SIZE_MIB = 100
# The dependency step a cache skips: files made by hashing random data (CPU and disk work, as
# an install unpacking and compiling is), the same on every run.
DEPS_STEP = (
    "if [ -f deps/done ]; then echo 'dependencies from the cache'; else "
    "mkdir -p deps; i=0; while [ $i -lt 400 ]; do "
    "head -c 262144 /dev/urandom > deps/f$i; sha256sum deps/f$i > deps/f$i.sum; "
    "i=$((i+1)); done; touch deps/done; fi"
)


def log(message: str) -> None:
    print(f"[bench-artifacts] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_seconds(entry: dict[str, Any]) -> float:
    start = datetime.datetime.fromisoformat(entry["startTime"].replace("Z", "+00:00"))
    end = datetime.datetime.fromisoformat(entry["completionTime"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def transfer_line(clusters: Clusters, ns: str, run_name: str, job: str, word: str) -> str:
    """The transfer binary's line in the job's log (downloads: the `artifacts` init container;
    uploads: the script container, after the script)."""
    out = conveyor_cli(clusters, "logs", run_name, job, "-n", ns)
    for line in out.stdout.splitlines():
        if word in line and "MiB/s" in line:
            return line
    raise RuntimeError(f"no {word!r} line in the log of {job}:\n{out.stdout}{out.stderr}")


def timing(line: str) -> tuple[float, float]:
    m = re.search(r"in ([0-9.]+)s \(([0-9.]+) MiB/s\)", line)
    assert m, line
    return float(m.group(1)), float(m.group(2))


def measure(clusters: Clusters, real: RealNodes) -> dict[str, Any]:
    ns = f"bench-artifacts-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        wait_until(lambda: core.read_namespaced_service_account("default", ns), timeout=60)
        conv = Conveyor(clusters, ns)
        jobs = [
            {
                "name": "produce",
                "stage": "build",
                "image": "busybox:1.36",
                "script": [f"head -c {SIZE_MIB * 1048576} /dev/urandom > big.bin"],
                "artifacts": {"paths": ["big.bin"]},
            },
            {
                "name": "consume",
                "stage": "test",
                "image": "busybox:1.36",
                "script": ["ls -l big.bin"],
            },
        ]
        conv.create(pipeline("throughput", jobs, **real.placement()))
        conv.create(run("throughput-1", "throughput"))
        done = conv.wait_finished("throughput-1", timeout=900)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        up = transfer_line(clusters, ns, "throughput-1", "produce", "Uploaded artifacts")
        down = transfer_line(clusters, ns, "throughput-1", "consume", "Downloaded artifacts")
        log(up)
        log(down)
        cached = [
            {
                "name": "deps",
                "stage": "build",
                "image": "busybox:1.36",
                "cache": [{"key": "deps", "paths": ["deps/"]}],
                "script": [DEPS_STEP, "du -sh deps"],
            }
        ]
        conv.create(pipeline("cached", cached, **real.placement()))
        durations = []
        for i in (1, 2):
            conv.create(run(f"cached-{i}", "cached"))
            finished = conv.wait_finished(f"cached-{i}", timeout=900)
            assert finished["status"]["phase"] == "Succeeded", finished["status"]
            durations.append(job_seconds(job_status(finished, "deps")))
            log(f"cache run {i}: {durations[-1]:.1f}s")
        restore = transfer_line(clusters, ns, "cached-2", "deps", "restored")
    finally:
        core.delete_namespace(ns)
    up_s, up_rate = timing(up)
    down_s, down_rate = timing(down)
    return {
        "size_mib": SIZE_MIB,
        "upload_s": up_s,
        "upload_mib_s": up_rate,
        "download_s": down_s,
        "download_mib_s": down_rate,
        "cold_job_s": round(durations[0], 1),
        "warm_job_s": round(durations[1], 1),
        "saved_s": round(durations[0] - durations[1], 1),
        "restore": restore.strip(),
    }


SECTION = """{begin}
## Artifacts and caches

`bench/artifacts.py` (run by `make bench`) on the real node of the ci cluster, through the local
S3 store (versitygw v1.8.0 on the host address). A `busybox` job keeps {size_mib} MiB of random
bytes as its artifact; a job of the next stage downloads it. The transfer binary times itself in
the pods: upload = archive (gzip at its fastest level, which random bytes do not shrink) and
one presigned PUT; download = presigned GET, gunzip and extract.

| | seconds | MiB/s |
|---|---|---|
| upload {size_mib} MiB | {upload_s} | {upload_mib_s} |
| download {size_mib} MiB | {download_s} | {download_mib_s} |

Cache: a job whose dependency step (400 files of 256 KiB of random data, each hashed: about
100 MiB of work) runs unless its cache restored the directory. The same pipeline twice, the
job's own duration (its Job's start to end, whole seconds as Kubernetes records them):

| | job seconds |
|---|---|
| run 1 (no cache: the step runs, the cache is pushed) | {cold_job_s} |
| run 2 (the cache restored) | {warm_job_s} |
| saved | {saved_s} |

Run 2's restore: `{restore}`

Last run: {date} on {machine}. One round: figures to compare, taken on a 2-core machine that
other work may load (the first run shared it with three other clusters and a cold CI build).
{end}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    work = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    operator = Operator(
        service_account_kubeconfig(clusters, work / "kubeconfig"),
        STATE / "logs" / "bench-artifacts-operator.log",
        port=free_port(),
        webhook_port=free_port(),
        metrics_port=free_port(),
        extra=store_options(clusters),
    )
    operator.start()
    try:
        results = measure(clusters, real)
    finally:
        operator.stop()
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = f"{platform.node()} ({platform.machine()})"
    write_section(results, args.report, SECTION, BEGIN, END)
    log(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
