"""The container of a `scan: {scanner: clair}` job: Conveyor's small Clair client
(scanners/cmd/conveyor-clair-scan/), which resolves the image in its registry, has the
platform's Clair v4 index it and reads the vulnerability report. Same contract as the Trivy
scan: one finding a line in the log, the count per severity as the termination message, exit 1
on findings and 2 when the scan cannot run (Clair or the registry unreachable)."""

from __future__ import annotations

from typing import Any

from conveyor.api.pipeline import Scan
from conveyor.engine.variables.expand import k8s_escape
from conveyor.kube.defaults import SCRIPT_CONTAINER

CLAIR_SCANNER_USER = 65532  # the client needs no root: it only speaks HTTP
REPORT = "gl-container-scanning-report.json"  # GitLab's container scanning report


def clair_scan_container(
    scan: Scan,
    image: str,
    env: list[dict[str, Any]],
    *,
    scanner_image: str,
    clair_url: str | None,
    docker_config: str | None,
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    """`docker_config`: the directory of the registry credentials' config.json (mounted by
    `mounts`), if the image is private. Without `clair_url` the client exits 2, saying so."""
    own = {
        "CONVEYOR_SCAN_IMAGE": image,
        "CONVEYOR_SCAN_SEVERITIES": ",".join(scan.severities),
        "CONVEYOR_SCAN_IGNORE_UNFIXED": "true" if scan.ignore_unfixed else "false",
        "CONVEYOR_SCAN_REPORT": REPORT,
        "HOME": "/tmp",
    }
    if clair_url:
        own["CONVEYOR_CLAIR_URL"] = clair_url
    if docker_config:
        own["DOCKER_CONFIG"] = docker_config
    return {
        "name": SCRIPT_CONTAINER,
        "image": scanner_image,
        "workingDir": "/tmp",
        "env": [e for e in env if e["name"] not in own]
        + [{"name": k, "value": k8s_escape(v)} for k, v in own.items()],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": CLAIR_SCANNER_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
