"""`scan: {scanner: clair}` on the real node: Clair v4.9.0 (built from the Go module proxy) and
PostgreSQL run in the ci cluster from deploy/optional/clair.yaml, Clair's Debian updater reads
the tests' feed (hack/vulnfeed/feed.json, served from the host address; every other updater
is off), and scan jobs ask it through Conveyor's client (scanners/cmd/conveyor-clair-scan/).
Same contract as a Trivy scan: findings exit 1 and are counted in status.jobs[].findings, a
clean image exits 0, a Clair that cannot be reached exits 2 saying the scan could not run."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import clair as clair_setup
from tests.e2e.clair import NAMESPACE
from tests.e2e.conftest import _free_port
from tests.e2e.conveyor import (
    Conveyor,
    Operator,
    conveyor_cli,
    job_status,
    phase,
    pipeline,
    run,
)
from tests.e2e.realnode import RealNodes
from tests.e2e.support import Clusters, wait_until

PLANTED = "CVE-2026-99001"
REPORT = "gl-container-scanning-report.json"


@pytest.fixture(scope="module")
def clair(clusters: Clusters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNodes]:
    """Clair in the ci cluster with the planted advisory loaded; removed afterwards."""
    with clair_setup.installed(clusters, RealNodes.load(), tmp_path_factory.mktemp("feed")) as real:
        yield real


def registry_digest(registry: str, repository: str, tag: str) -> str:
    """The digest the local registry serves for repository:tag."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.oci.image.index.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Docker-Content-Digest"]


def scan_job(name: str, image: str) -> dict[str, Any]:
    return {
        "name": name,
        "stage": "scan",
        "scan": {"image": image, "scanner": "clair", "severities": ["HIGH", "CRITICAL"]},
        "timeout": "10m",
    }


def report_of(log: str) -> dict[str, Any]:
    """The GitLab report the client prints between its markers (Conveyor keeps no artifacts)."""
    lines = log.splitlines()
    start = lines.index(f"--- {REPORT} ---")
    return json.loads(lines[start + 1])


@pytest.fixture(scope="module")
def scanned(clair: RealNodes, operator: Operator, clusters: Clusters) -> Iterator[Any]:
    """One run scanning the vulnerable and the clean image by digest, side by side."""
    namespace = f"e2e-clair-{_free_port()}"
    core = client.CoreV1Api(clusters.api("ci"))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    wait_until(lambda: core.read_namespaced_service_account("default", namespace), what="sa")
    conveyor = Conveyor(clusters, namespace)
    registry = clair.registry
    debian = f"{registry}/library/debian@" + registry_digest(
        registry, "library/debian", "bookworm-slim"
    )
    # The clean image: distroless (no OS package at all).
    clean = f"{registry}/distroless/static@" + registry_digest(
        registry, "distroless/static", "nonroot"
    )
    conveyor.create(
        pipeline(
            "clair",
            [scan_job("vulnerable", debian), scan_job("clean", clean)],
            stages=["scan"],
            **clair.placement(),
        )
    )
    conveyor.create(run("clair-1", "clair"))
    done = conveyor.wait_finished("clair-1", timeout=600)
    yield conveyor, done, debian, clean
    core.delete_namespace(namespace)


def logs(clusters: Clusters, conveyor: Conveyor, job: str) -> str:
    return conveyor_cli(clusters, "logs", "clair-1", job, "-c", "script", "-n", conveyor.ns).stdout


def test_clair_finds_the_planted_vulnerability_in_debian(scanned: Any, clusters: Clusters) -> None:
    conveyor, done, debian, _ = scanned
    entry = job_status(done, "vulnerable")
    log = logs(clusters, conveyor, "vulnerable")
    assert (entry["phase"], entry["exitCode"]) == ("Failed", 1), (entry, log)
    assert entry["findings"] == {"HIGH": 1}
    assert (
        f"HIGH {PLANTED} zlib1g 1:1.2.13.dfsg-1 (fixed in 1:1.2.13.dfsg-99) in {debian}"
        in log.splitlines()
    ), log
    report = report_of(log)
    assert report["scan"]["type"] == "container_scanning"
    assert report["scan"]["scanner"]["id"] == "clair"
    (finding,) = report["vulnerabilities"]
    assert finding["name"] == PLANTED and finding["severity"] == "High"
    assert finding["identifiers"][0] == {
        "type": "cve",
        "name": PLANTED,
        "value": PLANTED,
        "url": f"https://security-tracker.debian.org/tracker/{PLANTED}",
    }
    assert finding["location"]["dependency"] == {
        "package": {"name": "zlib1g"},
        "version": "1:1.2.13.dfsg-1",
    }
    assert finding["location"]["operating_system"] == "debian 12"
    assert finding["location"]["image"] == debian
    assert phase(done) == "Failed"


def test_clair_finds_nothing_in_the_clean_image(scanned: Any, clusters: Clusters) -> None:
    conveyor, done, _, clean = scanned
    entry = job_status(done, "clean")
    log = logs(clusters, conveyor, "clean")
    assert (entry["phase"], entry["exitCode"]) == ("Succeeded", 0), (entry, log)
    assert entry["findings"] == {}
    assert report_of(log)["vulnerabilities"] == []
    assert f"{clean}: no HIGH,CRITICAL vulnerabilities" in log.splitlines()


def test_an_unreachable_clair_is_exit_2_not_a_finding(
    clair: RealNodes, operator: Operator, conveyor: Conveyor, clusters: Clusters, tmp_path: Path
) -> None:
    """The operator's --clair-url points where nothing listens: the scan could not run."""
    nowhere = f"http://{clair.host_ip}:{_free_port()}"
    operator.stop()  # the session's operator would act beside this one
    other = Operator(
        operator.kubeconfig,
        tmp_path / "operator.log",
        port=_free_port(),
        webhook_port=_free_port(),
        metrics_port=_free_port(),
        extra=("--clair-url", nowhere),
    )
    other.start()
    try:
        image = f"{clair.registry}/library/debian:bookworm-slim"
        conveyor.create(
            pipeline("down", [scan_job("scan", image)], stages=["scan"], **clair.placement())
        )
        conveyor.create(run("down-1", "down"))
        done = conveyor.wait_finished("down-1", timeout=300)
    finally:
        other.stop()
        operator.start()
    entry = job_status(done, "scan")
    assert (entry["phase"], entry["exitCode"]) == ("Failed", 2), entry
    assert entry.get("findings") is None
    assert f"the scan of {image} could not run: clair at {nowhere}" in entry["message"], entry


def test_clair_reaches_nothing_but_the_local_feed_and_registry(
    clair: RealNodes, scanned: Any, clusters: Clusters
) -> None:
    """After its updates and the scans, Clair's log has no lookup of a public host (Red Hat's
    mapping files, other updaters, enrichers are all off) and names the local feed."""
    log = clusters.kubectl("ci", "logs", "-n", NAMESPACE, "deploy/clair", "-c", "clair").stdout
    assert "no such host" not in log, [line for line in log.splitlines() if "no such host" in line]
    assert f"http://{clair.host_ip}:" in log  # the feed it fetched
    updaters = {
        json.loads(line).get("updater")
        for line in log.splitlines()
        if line.startswith("{") and '"updater"' in line
    }
    assert updaters == {"debian/updater"}
