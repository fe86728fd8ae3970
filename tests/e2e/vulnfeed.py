"""The tests' vulnerability feed (hack/vulnfeed/feed.json, shared with Trivy) in the form Clair's
Debian updater (claircore) reads, served over HTTP from the host address: a Debian mirror's
`debian/dists/` listing and `Release` files (the releases it knows) and the Debian security
tracker's JSON (`{source package: {CVE: {description, releases: {codename: {status,
fixed_version, urgency}}}}}`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.e2e.realnode import serve
from tests.e2e.support import ROOT

ADVISORIES = ROOT / "hack" / "vulnfeed" / "feed.json"

# claircore normalises Debian's urgencies one step up (debian/severity.go: "low" is Medium,
# "medium" High, "high" Critical): the urgency that gives each severity.
URGENCY = {"LOW": "unimportant", "MEDIUM": "low", "HIGH": "medium", "CRITICAL": "high"}


def advisories() -> list[dict[str, Any]]:
    return json.loads(ADVISORIES.read_text())["advisories"]


def debian_tracker(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The security tracker's JSON for the Debian advisories."""
    out: dict[str, Any] = {}
    for a in items:
        if a["distribution"]["id"] != "debian":
            continue
        releases = out.setdefault(a["sourcePackage"], {}).setdefault(
            a["id"], {"description": a["description"], "releases": {}}
        )["releases"]
        releases[a["distribution"]["codename"]] = {
            "status": "resolved",
            "fixed_version": a["fixedVersion"],
            "urgency": URGENCY[a["severity"]],
        }
    return out


def debian_mirror(items: list[dict[str, Any]]) -> dict[str, bytes]:
    """Relative path -> content of the feed's files: the mirror part and the tracker's JSON."""
    releases = sorted(
        {
            (a["distribution"]["codename"], a["distribution"]["versionId"])
            for a in items
            if a["distribution"]["id"] == "debian"
        }
    )
    links = "".join(f'<a href="{name}/">{name}/</a>\n' for name, _ in releases)
    files = {"debian/dists/index.html": f"<html><body><pre>\n{links}</pre></body></html>\n"}
    for name, version in releases:
        files[f"debian/dists/{name}/Release"] = (
            f"Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: {version}.0\n"
            f"Codename: {name}\n"
        )
    files["tracker/data/json"] = json.dumps(debian_tracker(items), indent=1)
    return {k: v.encode() for k, v in files.items()}


@contextmanager
def serve_clair_feed(host: str, root: Path) -> Iterator[str]:
    """The feed's files under `root`, served at http://host:<port>/ (yielded) meanwhile."""
    for rel, data in debian_mirror(advisories()).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    with serve(host, partial(Quiet, directory=str(root))) as port:  # type: ignore[arg-type]
        yield f"http://{host}:{port}/"
