"""Which refs a trigger cares about: branch names against fnmatch globs, tags on or off."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

ALL_BRANCHES = ("*",)


def branch_matches(branch: str, globs: Iterable[str]) -> bool:
    """fnmatch semantics, case-sensitive whatever the OS (git refs are): `*` also crosses `/`,
    so `*` is every branch and `release/*` is every branch under release/."""
    return any(fnmatchcase(branch, g) for g in globs)


def ref_selected(ref: str, *, tag: bool, branches: Iterable[str], tags: bool) -> bool:
    """Whether a push of `ref` starts a run: tags when `tags` is on, branches matching a glob."""
    if tag:
        return tags
    return branch_matches(ref, branches)
