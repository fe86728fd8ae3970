"""Every example in examples/ is applied and run, so the README's examples stay true."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.e2e.conveyor import Conveyor, conveyor_cli, job_status, phase, succeeded_condition
from tests.e2e.support import ROOT, Clusters

EXAMPLES = ROOT / "examples"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_basic_example_runs_to_the_manual_gate_and_through(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    conveyor.create(load(EXAMPLES / "basic" / "pipeline.yaml"))
    name = conveyor.create(load(EXAMPLES / "basic" / "run.yaml"))["metadata"]["name"]
    waiting = conveyor.wait_run(
        name, lambda r: succeeded_condition(r).get("reason") == "ManualActionRequired"
    )
    assert job_status(waiting, "unit")["phase"] == "Succeeded"
    assert job_status(waiting, "release")["phase"] == "Manual"
    played = conveyor_cli(clusters, "play", name, "release", "-n", conveyor.ns)
    assert played.returncode == 0, played.stderr
    done = conveyor.wait_finished(name)
    assert phase(done) == "Succeeded"
    assert job_status(done, "cleanup")["phase"] == "Succeeded"
    assert job_status(done, "notify-failure")["phase"] == "Skipped"
