"""Concurrency (which waiting runs may start) and history (which finished runs to delete)."""

from __future__ import annotations

import datetime

from conveyor.engine import RunSummary, may_start, runs_allowed_to_start, runs_to_delete

T0 = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


def run(name, minute, phase=None, **labels):
    return RunSummary(name, T0 + datetime.timedelta(minutes=minute), phase, labels)


def test_oldest_waiting_runs_start_first_up_to_the_limit():
    runs = [
        run("new", 5),
        run("old", 1, "Pending"),
        run("busy", 0, "Running"),
        run("done", 0, "Succeeded"),
        run("middle", 3),
    ]
    assert runs_allowed_to_start(runs, 2) == {"old"}
    assert runs_allowed_to_start(runs, 3) == {"old", "middle"}
    assert runs_allowed_to_start(runs, 1) == set()
    assert runs_allowed_to_start(runs, None) == {"old", "middle", "new"}
    assert may_start("busy", runs, 1)  # started runs always continue
    assert not may_start("new", runs, 3)


def test_creation_ties_are_broken_by_name():
    runs = [run("b", 0), run("a", 0)]
    assert runs_allowed_to_start(runs, 1) == {"a"}


def test_history_keeps_newest_finished_and_spares_gitops_runs():
    runs = [
        run("r1", 1, "Succeeded"),
        run("r2", 2, "Failed"),
        run("r3", 3, "Cancelled"),
        run("r4", 4, "Succeeded"),
        run("r5", 5, "Running"),
        run("argo", 0, "Succeeded", **{"argocd.argoproj.io/instance": "ci"}),
        run("helm", 0, "Failed", **{"app.kubernetes.io/managed-by": "Helm"}),
        run("flux", 0, "Failed", **{"kustomize.toolkit.fluxcd.io/name": "x"}),
        run("mine", 0, "Failed", **{"app.kubernetes.io/managed-by": "conveyor"}),
    ]
    assert runs_to_delete(runs, 2) == ["mine", "r1", "r2"]
    assert runs_to_delete(runs, 0) == ["mine", "r1", "r2", "r3", "r4"]
    assert runs_to_delete(runs, 10) == []
