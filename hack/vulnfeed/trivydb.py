#!/usr/bin/env python3
"""Trivy's vulnerability database, built locally from the tests' feed (feed.json) with Trivy's
own builder (trivy-db, from hack/build-trivy.sh), and pushed to a registry as the OCI artifact
Trivy downloads (`--db-repository`), as a platform serving its own mirror of the DB would.

  trivydb.py build                       -> path of db.tar.gz (cached, keyed by its inputs)
  trivydb.py push HOST:PORT [REPOSITORY]  (default aquasecurity/trivy-db:2, plain HTTP)

The feed is turned into the directory trivy-db reads (a vuln-list-debian checkout: the Debian
security tracker as JSON), with nothing but the feed's advisories in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FEED = HERE / "feed.json"
BUILD_TRIVY = HERE.parent / "build-trivy.sh"
CACHE = (
    Path(os.environ["CONVEYOR_CACHE"])
    if os.environ.get("CONVEYOR_CACHE")
    else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "conveyor"
)
# Trivy's names for the artifact (pkg/db/db.go, pkg/oci/artifact.go of Trivy v0.74.0).
DB_REPOSITORY = "aquasecurity/trivy-db:2"  # :2 is the DB schema version Trivy asks for
CONFIG_MEDIA_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
# Debian's releases as the tracker names them (distributions.json): codename -> major version.
DEBIAN_RELEASES = {"bullseye": "11", "bookworm": "12", "trixie": "13", "sid": ""}
# Trivy's severities in the tracker's words (trivy-db's severityFromUrgency reads them back).
URGENCY = {"LOW": "low", "MEDIUM": "medium", "HIGH": "high", "CRITICAL": "high"}


def vuln_list(feed: dict[str, Any], root: Path) -> None:
    """Writes the vuln-list-debian directory trivy-db's Debian source reads: distributions.json
    and one tracker entry (CVE/<id>.json) per advisory, with the fixed version in sid and in
    the advisory's release. No source/ lists: then trivy-db keeps the release's fixed version
    as it is (it would call it unfixed if the release's latest version were below it)."""
    tracker = root / "vuln-list-debian" / "tracker"
    for sub in ("CVE", "DLA", "DSA"):
        (tracker / sub).mkdir(parents=True, exist_ok=True)
    releases = {
        code: {"major-version": major, "support": "security", "contact": ""}
        for code, major in DEBIAN_RELEASES.items()
    }
    (tracker / "distributions.json").write_text(json.dumps(releases, indent=2))
    for adv in feed["advisories"]:
        if adv["distribution"]["id"] != "debian":
            continue
        codename = adv["distribution"]["codename"]
        if DEBIAN_RELEASES.get(codename) != adv["distribution"]["versionId"]:
            raise SystemExit(f"trivydb: {adv['id']}: unknown Debian release {codename}")
        package = {
            "Type": "package",
            "Package": adv["sourcePackage"],
            "Kind": "fixed",
            "Version": adv["fixedVersion"],
        }
        entry = {
            "Header": {"ID": adv["id"], "Description": f"({adv['summary']})"},
            "Annotations": [
                # sid first: trivy-db takes the severity from it for the releases below
                {**package, "Severity": URGENCY[adv["severity"]]},
                {**package, "Release": codename},
            ],
        }
        (tracker / "CVE" / f"{adv['id']}.json").write_text(json.dumps(entry, indent=2))


def trivy_dir() -> Path:
    """Trivy and trivy-db, built (or found in the cache) by hack/build-trivy.sh."""
    out = subprocess.run(
        ["bash", str(BUILD_TRIVY)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def build() -> Path:
    """db.tar.gz (trivy.db and metadata.json, as Trivy's published artifact holds them),
    cached under CACHE/trivy-db/<key of the feed, this script and the builder>."""
    tools = trivy_dir()
    key = hashlib.sha256(
        FEED.read_bytes() + Path(__file__).read_bytes() + tools.name.encode()
    ).hexdigest()[:16]
    out = CACHE / "trivy-db" / key
    archive = out / "db.tar.gz"
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vuln_list(json.loads(FEED.read_text()), work / "cache")
        # Far-off next update: a job's Trivy downloads the DB each time (no cache survives
        # the pod) and must never find it "outdated" between two cluster-ups.
        subprocess.run(
            [
                str(tools / "bin" / "trivy-db"),
                "build",
                "--only-update",
                "debian",
                "--cache-dir",
                str(work / "cache"),
                "--output-dir",
                str(work / "out"),
                "--update-interval",
                "87600h",
            ],
            check=True,
            cwd=work,
            stdout=sys.stderr,
        )
        staged = out.with_name(key + ".tmp")
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        with tarfile.open(staged / "db.tar.gz", "w:gz") as tar:
            for name in ("trivy.db", "metadata.json"):
                tar.add(work / "out" / name, arcname=name)
        shutil.rmtree(out, ignore_errors=True)
        staged.rename(out)
    for old in (CACHE / "trivy-db").iterdir():
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    return archive


def _request(method: str, url: str, data: bytes | None = None, **headers: str) -> Any:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    return urllib.request.urlopen(req, timeout=60)


def _push_blob(base: str, repo: str, blob: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    try:
        _request("HEAD", f"{base}/v2/{repo}/blobs/{digest}")
        return digest  # already there
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    with _request("POST", f"{base}/v2/{repo}/blobs/uploads/", b"") as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    _request(
        "PUT",
        f"{location}{sep}digest={digest}",
        blob,
        **{"Content-Type": "application/octet-stream"},
    ).close()
    return digest


def push(registry: str, repository: str = DB_REPOSITORY) -> str:
    """Pushes the DB as Trivy's OCI artifact (one layer titled db.tar.gz) to the plain-HTTP
    registry; returns the manifest's digest."""
    archive = build().read_bytes()
    base = f"http://{registry}"
    repo, _, tag = repository.rpartition(":")
    config = b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": _push_blob(base, repo, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": _push_blob(base, repo, archive),
                "size": len(archive),
                "annotations": {"org.opencontainers.image.title": "db.tar.gz"},
            }
        ],
    }
    body = json.dumps(manifest).encode()
    _request(
        "PUT", f"{base}/v2/{repo}/manifests/{tag}", body, **{"Content-Type": MANIFEST_MEDIA_TYPE}
    ).close()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"] and len(argv) == 1:
        print(build())
        return 0
    if argv[:1] == ["push"] and len(argv) in (2, 3):
        print(push(*argv[1:]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
