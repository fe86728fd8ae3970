"""The tests' vulnerability feed and what Trivy's DB builder is given from it (the tracker
directory of hack/vulnfeed/trivydb.py). The DB itself is built and used by the real Trivy in
tests/e2e/test_scans.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("trivydb", ROOT / "hack" / "vulnfeed" / "trivydb.py")
assert spec is not None and spec.loader is not None
trivydb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(trivydb)


def test_the_planted_advisory_becomes_a_debian_tracker_entry(tmp_path):
    feed = json.loads((ROOT / "hack" / "vulnfeed" / "feed.json").read_text())
    (planted,) = feed["advisories"]
    assert (planted["id"], planted["severity"]) == ("CVE-2026-99001", "HIGH")
    trivydb.vuln_list(feed, tmp_path)
    tracker = tmp_path / "vuln-list-debian" / "tracker"
    releases = json.loads((tracker / "distributions.json").read_text())
    assert releases["bookworm"]["major-version"] == "12"
    entry = json.loads((tracker / "CVE" / "CVE-2026-99001.json").read_text())
    assert entry["Header"]["ID"] == "CVE-2026-99001"
    sid, bookworm = entry["Annotations"]
    # sid first, with the severity trivy-db gives the releases' advisories.
    assert sid == {
        "Type": "package",
        "Package": "zlib",
        "Kind": "fixed",
        "Version": "1:1.2.13.dfsg-99",
        "Severity": "high",
    }
    assert bookworm["Release"] == "bookworm" and bookworm["Version"] == "1:1.2.13.dfsg-99"
    # trivy-db walks these directories: they must exist, empty.
    assert not any((tracker / "DLA").iterdir()) and not any((tracker / "DSA").iterdir())
