"""CLI start-up time: how long `conveyor --version`, `conveyor --help` and `conveyor import-gitlab`
of a small file take, as medians of several runs, now and (with --before REV) at an earlier
revision of this repository. Writes its section of docs/benchmarks.md (between the markers
below; `make bench` keeps it) and prints the medians as JSON.

    .venv/bin/python bench/cli_startup.py [--runs 11] [--before d9638b7]

No cluster is needed: none of these commands talks to one. Numbers are from this machine as it
is (its load is written with them); compare them with each other, never assert on them.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- cli-startup:begin -->", "<!-- cli-startup:end -->"
SMALL_FILE = """\
stages: [build, test]
build:
  stage: build
  script: [make]
unit:
  stage: test
  script: [make test]
"""
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "import-gitlab (small file)": ["import-gitlab", "{file}", "--name", "app"],
}


def measure(operator_dir: Path, argv: list[str], runs: int) -> float:
    """Median wall time in ms of `python -m conveyor.cli.main ARGV` with `operator_dir` first on
    the path (one untimed run first: the file cache is warm for every timed one); of Python
    doing nothing (`-c pass`) when ARGV is empty."""
    env = {**os.environ, "PYTHONPATH": str(operator_dir)}
    command = [sys.executable, "-m", "conveyor.cli.main", *argv] if argv else [sys.executable]
    times = []
    for i in range(runs + 1):
        began = time.perf_counter()
        subprocess.run(
            command if argv else [*command, "-c", "pass"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if i:
            times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 1)


def tree_at(revision: str, into: Path) -> Path:
    """The `operator/` folder of `revision`, unpacked from git (no worktree is made)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "operator"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "operator"


def section(results: dict[str, dict[str, float]], runs: int, before: str | None) -> str:
    load = os.getloadavg()[0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = "| command | median now (ms) |" + (f" median at {before} (ms) |" if before else "")
    rule = "|---|---|" + ("---|" if before else "")
    rows = [
        f"| `python -c pass` (Python alone) | {results['now']['python']} |"
        + (" |" if before else "")
    ]
    for name in COMMANDS:
        row = f"| `conveyor {name}` | {results['now'][name]} |"
        if before:
            row += f" {results['before'][name]} |"
        rows.append(row)
    return f"""{BEGIN}
## CLI start-up

`bench/cli_startup.py` (no cluster needed) runs each command {runs} times after one untimed run,
as `python -m conveyor.cli.main ...`, and takes the median wall time: the time a user waits
before the first line. The small file is a two-job `.gitlab-ci.yml`. With `--before REV` it
measures the same commands at an earlier revision too (its `operator/` unpacked from git, first
on `PYTHONPATH`, same Python and packages). Target: under 500 ms each (issue 14).

Last run: {stamp} on {platform.machine()}, {os.cpu_count()} cores shared with other work (load
average {load:.1f} then: on an idle machine every number is lower), Python
{platform.python_version()}.

{head}
{rule}
{chr(10).join(rows)}

Why it got faster: the subcommand modules no longer import the Kubernetes client, Kopf, the
importer or the job builder when the parser is built; each command imports what it uses when it
runs (`tests/unit/cli/test_cli.py` checks that `--help` loads none of them). What is left is
Python's own start and the API models' import.
{END}
"""


def write(text: str, path: Path = REPORT) -> None:
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + text.strip("\n") + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--before", metavar="REV", help="also measure this git revision")
    parser.add_argument("--report", type=Path, default=REPORT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / ".gitlab-ci.yml"
        small.write_text(SMALL_FILE)
        trees = {"now": ROOT / "operator"}
        if args.before:
            trees["before"] = tree_at(args.before, Path(tmp) / "before")
        results: dict[str, dict[str, float]] = {}
        for label, tree in trees.items():
            results[label] = {
                name: measure(tree, [a.replace("{file}", str(small)) for a in argv], args.runs)
                for name, argv in COMMANDS.items()
            }
        results["now"]["python"] = measure(trees["now"], [], args.runs)
    write(section(results, args.runs, args.before), args.report)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
