"""Helpers for end-to-end tests: clients per context, kubectl, and waiting on conditions."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]
# Each pytest-xdist worker (make test runs two) has local clusters of its own: its own state
# folder, ports and real-node network, so no test ever sees another's clusters or faults.
# Worker gw0 has the checkout's (.cluster, CONVEYOR_PORT_BASE); gwN those 3000 ports above.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
if WORKER != "gw0":
    _base = int(os.environ.get("CONVEYOR_PORT_BASE", "16400")) + 3000 * int(WORKER[2:])
    os.environ["CONVEYOR_PORT_BASE"] = str(_base)  # what localcluster.py and its tests read
    os.environ["CONVEYOR_CLUSTER_DIR"] = str(ROOT / f".cluster-{WORKER}")
STATE = Path(os.environ.get("CONVEYOR_CLUSTER_DIR", ROOT / ".cluster"))


@dataclass(frozen=True)
class Clusters:
    """The local clusters: one kubeconfig with contexts ci, test, prod and ci-as-<user>."""

    kubeconfig: Path
    kubectl_path: Path

    def api(self, context: str) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context)

    def kubectl(
        self, context: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), "--context", context]
        proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def kubectl_json(self, context: str, *args: str) -> Any:
        return json.loads(self.kubectl(context, *args, "-o", "json").stdout)


def wait_until(check: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    """Waits until check() returns something truthy and returns it; fails after timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    last_error: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # the condition may not be checkable yet (object not created)
            last_error = e
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(delay)  # back-off between checks of the condition, not a synchronisation
        delay = min(delay * 2, 0.5)


def _rv(obj: Any) -> str:
    if isinstance(obj, dict):
        return obj["metadata"]["resourceVersion"]
    return obj.metadata.resource_version


def wait_for_object(
    list_fn: Callable[..., Any],
    name: str,
    predicate: Callable[[Any], bool],
    *,
    timeout: float = 30,
    **list_kwargs: Any,
) -> Any:
    """Watches one named object (list_fn is e.g. BatchV1Api.list_namespaced_job, or a partial of
    CustomObjectsApi.list_namespaced_custom_object) until predicate(obj) holds; returns it.
    Event-driven: no polling."""
    selector = f"metadata.name={name}"
    deadline = time.monotonic() + timeout
    initial = list_fn(field_selector=selector, **list_kwargs)
    items = initial["items"] if isinstance(initial, dict) else initial.items
    for item in items:
        if predicate(item):
            return item
    rv = _rv(initial)
    last = items[0] if items else None
    while (remaining := deadline - time.monotonic()) > 0:
        w = watch.Watch()
        for event in w.stream(
            list_fn,
            field_selector=selector,
            resource_version=rv,
            timeout_seconds=max(1, int(remaining)),
            **list_kwargs,
        ):
            obj = event["object"]
            if event["type"] == "ERROR":  # e.g. 410 Gone: list again from now
                relisted = list_fn(field_selector=selector, **list_kwargs)
                rv = _rv(relisted)
                break
            rv = _rv(obj)
            last = obj
            if event["type"] != "DELETED" and predicate(obj):
                w.stop()
                return obj
    raise AssertionError(f"timed out after {timeout}s waiting for {name}; last seen: {last}")
