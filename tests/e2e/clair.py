"""Clair in the local ci cluster, as the tests and `make demo` install it:
deploy/optional/clair.yaml on the real node, its Debian updater pointed at the tests' feed
(hack/vulnfeed/feed.json) served from the host address while Clair loads it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.e2e.realnode import RealNodes
from tests.e2e.support import ROOT, Clusters, wait_until
from tests.e2e.vulnfeed import serve_clair_feed

MANIFEST = ROOT / "deploy" / "optional" / "clair.yaml"
NAMESPACE = "clair"
UPDATES = "/matcher/api/v1/internal/update_operation"


def manifests(real: RealNodes, feed: str) -> list[dict[str, Any]]:
    """deploy/optional/clair.yaml as the local clusters need it: on the real node, the Debian
    updater pointed at the local feed."""
    docs = list(yaml.safe_load_all(MANIFEST.read_text()))
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            config = yaml.safe_load(doc["data"]["config.yaml"])
            assert config["updaters"]["sets"] == ["debian"]  # no other updater
            config["updaters"]["config"]["debian"] = {
                "mirror_url": feed,
                "json_url": f"{feed}tracker/data/json",
            }
            doc["data"]["config.yaml"] = yaml.safe_dump(config)
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"].update(real.placement())
    return docs


def clair_get(clusters: Clusters, path: str) -> Any:
    """GET Clair's API from inside its pod (the postgres container's bash), as JSON."""
    script = (
        "exec 3<>/dev/tcp/127.0.0.1/6060 && "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: clair\\r\\n\\r\\n' >&3 && cat <&3"
    )
    out = clusters.kubectl(
        "ci", "exec", "-n", NAMESPACE, "deploy/clair", "-c", "postgres", "--", "bash", "-c", script
    ).stdout
    # (kubectl's output is read as text: the CRLFs arrive as plain newlines)
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    assert " 200 " in head.splitlines()[0], out
    return json.loads(body)


def install(clusters: Clusters, real: RealNodes, workdir: Path) -> None:
    """Clair applied and ready, with the feed's advisories loaded (the feed is served only
    while it loads them: the matcher stores them in its database)."""
    with serve_clair_feed(real.host_ip, workdir) as feed:
        clusters.kubectl("ci", "apply", "-f", "-", stdin=yaml.safe_dump_all(manifests(real, feed)))
        clusters.kubectl(
            "ci", "rollout", "status", "-n", NAMESPACE, "deploy/clair", "--timeout=300s"
        )
        # The matcher runs its updaters when it starts: wait for Debian's to have stored the
        # feed (an update operation recorded), so matching sees the advisory.
        wait_until(
            lambda: (
                "debian/updater" in clair_get(clusters, "/matcher/api/v1/internal/update_operation")
            ),
            timeout=180,
            what="Clair's Debian updater to load the feed",
        )


def uninstall(clusters: Clusters) -> None:
    core = client.CoreV1Api(clusters.api("ci"))
    core.delete_namespace(NAMESPACE)
    wait_until(
        lambda: not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items,
        timeout=180,
        what="the clair namespace to be gone",
    )


@contextmanager
def installed(clusters: Clusters, real: RealNodes, workdir: Path) -> Iterator[RealNodes]:
    """Clair for the time of the block; removed afterwards."""
    try:
        install(clusters, real, workdir)
        yield real
    finally:
        uninstall(clusters)
