"""Scan jobs with the real Trivy on the real node: Trivy (hack/build-trivy.sh, in the image
hack/images/trivy.sh) scans images by digest from the local registry, with the vulnerability
database built from the tests' own feed (hack/vulnfeed/) and served from that registry as
Trivy's OCI artifact (`--scanner-db-repository`, given to the operator by conftest)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests.e2e.conveyor import (
    Conveyor,
    conveyor_cli,
    job_status,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.realnode import RealNodes
from tests.e2e.support import Clusters

PLANTED = "CVE-2026-99001"  # hack/vulnfeed/feed.json: zlib in Debian 12, HIGH
REPORT = "gl-container-scanning-report.json"
MANIFESTS = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def by_digest(registry: str, repository: str, tag: str) -> str:
    """repository@digest as the registry serves the tag (asked of the registry itself)."""
    req = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": MANIFESTS},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        digest = resp.headers["Docker-Content-Digest"]
    assert digest and digest.startswith("sha256:"), digest
    return f"{registry}/{repository}@{digest}"


def report_of(log: str) -> dict[str, Any]:
    """The GitLab report the scan printed after its path (the job's workspace)."""
    lines = log.splitlines()
    (i,) = [n for n, line in enumerate(lines) if line.startswith("GitLab container scanning")]
    assert lines[i].endswith(f"/{REPORT}:"), lines[i]
    # The report is the JSON document after that line.
    return json.JSONDecoder().raw_decode("\n".join(lines[i + 1 :]))[0]


def test_trivy_finds_the_planted_vulnerability_and_none_in_the_clean_image(
    conveyor: Conveyor, clusters: Clusters, real: RealNodes
) -> None:
    vulnerable = by_digest(real.registry, "library/debian", "bookworm-slim")
    # The clean image: distroless, no OS package at all.
    clean = by_digest(real.registry, "distroless/static", "nonroot")
    scan = {"stage": "scan", "allowFailure": True, "timeout": "10m"}
    conveyor.create(
        pipeline(
            "scans",
            [
                {"name": "vulnerable", "scan": {"image": vulnerable}, **scan},
                {"name": "clean", "scan": {"image": clean}, **scan},
                {
                    "name": "no-db",
                    "scan": {"image": vulnerable},
                    # A repository the registry has no database in.
                    "variables": {"TRIVY_DB_REPOSITORY": f"{real.registry}/nothing/trivy-db:2"},
                    **scan,
                },
            ],
            stages=["scan"],
            **real.placement(),
        )
    )
    conveyor.create(run("scans-1", "scans"))
    done = conveyor.wait_finished("scans-1", timeout=600)
    assert succeeded_condition(done)["reason"] == "SucceededWithWarnings"

    def logs(name: str) -> str:
        return conveyor_cli(
            clusters, "logs", "scans-1", name, "-c", "script", "-n", conveyor.ns
        ).stdout

    # The planted advisory: exit 1, counted in status.jobs[].findings.
    found = job_status(done, "vulnerable")
    log = logs("vulnerable")
    assert (found["phase"], found["exitCode"]) == ("Failed", 1), log
    assert found["findings"] == {"HIGH": 1}, log
    assert f"HIGH {PLANTED} zlib1g 1:1.2.13.dfsg-1 (fixed in 1:1.2.13.dfsg-99)" in log
    # GitLab's container scanning report, written by Trivy's own template.
    report = report_of(log)
    assert report["scan"]["type"] == "container_scanning"
    assert report["scan"]["scanner"]["id"] == "trivy"
    assert report["scan"]["scanner"]["version"] == "0.74.0"
    (vuln,) = report["vulnerabilities"]
    assert vuln["id"] == PLANTED and vuln["severity"] == "High"
    assert vuln["solution"] == "Upgrade zlib1g to 1:1.2.13.dfsg-99"
    assert vuln["location"]["dependency"] == {
        "package": {"name": "zlib1g"},
        "version": "1:1.2.13.dfsg-1",
    }
    assert vuln["location"]["operating_system"].startswith("debian 12.")
    assert vuln["location"]["image"] == vulnerable
    assert {"type": "cve", "name": PLANTED, "value": PLANTED}.items() <= vuln["identifiers"][
        0
    ].items()

    # The clean image: nothing found, exit 0, findings present and empty.
    clean_status = job_status(done, "clean")
    log = logs("clean")
    assert (clean_status["phase"], clean_status["exitCode"]) == ("Succeeded", 0), log
    assert clean_status["findings"] == {}
    assert report_of(log)["vulnerabilities"] == []

    # No database where the job says it is: exit 2, no findings, and the reason says why.
    broken = job_status(done, "no-db")
    log = logs("no-db")
    assert (broken["phase"], broken["exitCode"]) == ("Failed", 2), log
    assert "findings" not in broken
    assert broken["message"].startswith("the scanner could not run: "), broken
    assert "DB" in broken["message"], broken
