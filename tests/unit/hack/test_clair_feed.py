"""The tests' feed (hack/vulnfeed/feed.json) as Clair's Debian updater reads it."""

from __future__ import annotations

import json

from tests.e2e.vulnfeed import advisories, debian_mirror, debian_tracker


def test_the_planted_advisory_as_the_debian_tracker_entry_clair_reads():
    tracker = debian_tracker(advisories())
    entry = tracker["zlib"]["CVE-2026-99001"]["releases"]["bookworm"]
    # claircore normalises urgency "medium" to High: the feed's HIGH.
    assert entry == {"status": "resolved", "fixed_version": "1:1.2.13.dfsg-99", "urgency": "medium"}


def test_the_mirror_lists_bookworm_as_debian_12():
    files = debian_mirror(advisories())
    assert b'href="bookworm/"' in files["debian/dists/index.html"]
    release = files["debian/dists/bookworm/Release"].decode()
    assert "Version: 12.0\n" in release and "Codename: bookworm\n" in release
    assert json.loads(files["tracker/data/json"]) == debian_tracker(advisories())
