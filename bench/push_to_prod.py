"""From a push to the new version serving in prod, on the real nodes: `make bench` runs it last.

The demo's world (hack/demo.py: the clusters, Conveyor, Clair, Environments test and prod, prod
gated by one approval) and examples/go-app's pipeline. Each round pushes a commit that changes
the server, starts its run as the push trigger would (`conveyor run --push`), approves prod the
moment its Approval asks (as approver1), and polls the app's page in the prod cluster (through
the API server's proxy to its Service) until it names the new version: that time, from the push
to the page, is the figure. Rounds run one after another; medians, and the run's own split (to
the approval, then to its end). Writes its section of docs/benchmarks.md. Figures to compare,
never assertions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.builds import write_section  # noqa: E402
from hack import demo  # noqa: E402 - the demo's setup, shared
from tests.e2e.gitrepo import GitRepo  # noqa: E402
from tests.e2e.realnode import git_http_handler, serve  # noqa: E402
from tests.e2e.support import STATE, wait_until  # noqa: E402

BEGIN, END = "<!-- push-to-prod:begin -->", "<!-- push-to-prod:end -->"


def log(message: str) -> None:
    print(f"[bench-push] {message}", file=sys.stderr, flush=True)


def page() -> str:
    """The app's page in prod, or "" while nothing answers."""
    proxy = f"/api/v1/namespaces/{demo.NS}/services/go-app:http/proxy/"
    got = demo.CLUSTERS.kubectl("prod", "get", "--raw", proxy, check=False)
    return got.stdout if got.returncode == 0 else ""


def approve_when_asked(run: str, timeout: float) -> None:
    def approved() -> bool:
        phase = demo.run_phase(run)
        if phase in ("Failed", "Succeeded"):
            raise SystemExit(f"run {run} ended {phase} before prod's approval")
        if phase != "WaitingForApproval":
            return False
        demo.conveyor("ci-as-approver1", "approve", run, "-m", "bench", "-n", demo.NS)
        return True

    wait_until(approved, timeout=timeout, what=f"run {run} to ask for prod")


def one_round(work: GitRepo, bare: Path, i: int) -> dict[str, float]:
    before = work.head()
    after = work.commit(f"round {i}", {"src/server.go": f"\n// round {i}\n"})
    subprocess.run(["git", "push", "-q", str(bare), "master"], cwd=work.path, check=True)
    pushed = time.monotonic()
    run = demo.start_push_run(before, after)
    approve_when_asked(run, timeout=1800)
    approved = time.monotonic()
    version = f"Hello from go-app master_{after}"
    wait_until(lambda: version in page(), timeout=900, what=f"prod to serve {after}")
    served = time.monotonic()
    if demo.run_phase(run) not in ("Succeeded", "Running"):
        raise SystemExit(f"run {run}: {demo.run_phase(run)}")
    return {
        "to_approval_s": round(approved - pushed, 1),
        "approval_to_serving_s": round(served - approved, 1),
        "push_to_serving_s": round(served - pushed, 1),
    }


SECTION = """{begin}
## From a push to prod serving it, on the real nodes

`bench/push_to_prod.py` (run by `make bench` last): the demo's setup (`hack/demo.py`) and
`examples/go-app`'s pipeline on the real nodes. Each round pushes a change to the server and
starts its run as a push would; prod's approval is given the moment it is asked for; the time
ends when the app's page in prod (through the API server's proxy to its Service) names the new
version. Each run does `go test` (in a fresh pod: Go's build cache is cold every time), a rootless
BuildKit build (without a build cache), a Clair scan and the two deploys, pinned by digest.
Medians of {rounds} rounds, one after another.

Last run: {date} on {machine}.

| | median (s) |
|---|---|
| push to prod's approval asked (test, build, scan, deploy to test) | {to_approval_s} |
| approval to the new version serving in prod | {approval_to_serving_s} |
| **push to the new version serving in prod** | **{push_to_serving_s}** |

Samples: `{samples}`
{end}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    real = demo.prepare()
    root, _, _ = demo.make_repository(real)
    work, bare = GitRepo(STATE / "demo" / "go-app"), root / "go-app.git"
    samples: list[dict[str, float]] = []
    with serve(real.host_ip, git_http_handler(root)) as port:
        demo.apply_pipeline(real, port)
        for i in range(args.rounds):
            samples.append(one_round(work, bare, i))
            log(f"round {i}: {samples[-1]}")
    results: dict[str, Any] = {
        key: statistics.median(s[key] for s in samples)
        for key in ("to_approval_s", "approval_to_serving_s", "push_to_serving_s")
    }
    results["rounds"] = args.rounds
    results["samples"] = samples
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    write_section(results, args.report, SECTION, BEGIN, END)
    log(f"wrote {args.report}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
