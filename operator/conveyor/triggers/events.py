"""What a trigger saw: a push (a ref moved to a commit), a ref deletion, or a webhook ping.

Refs are carried as short names (`main`, `v1.2`) with a `tag` flag, the form a PipelineRun's
`revision.ref` takes; `qualified_ref` gives back the full git ref for hashing and logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.api.meta import ZERO_SHA

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"
REF_MAX = 255  # PipelineRun revision.ref maxLength
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class PushEvent:
    """A ref now points at `sha`; `before_sha` is where it pointed (None: new ref or unknown)."""

    ref: str
    sha: str
    before_sha: str | None = None
    tag: bool = False
    # Where the event came from, for the run's annotations (never secrets).
    provider: str | None = None  # gitlab | github; None for polls
    delivery: str | None = None  # the provider's delivery id
    repository: str | None = None  # clone URL from the payload
    pusher: str | None = None

    @property
    def qualified_ref(self) -> str:
        return qualify(self.ref, tag=self.tag)


@dataclass(frozen=True)
class RefDeleted:
    """A branch or tag was deleted: acknowledged, never a run."""

    ref: str
    tag: bool = False


@dataclass(frozen=True)
class Ping:
    """GitHub's `ping` event, sent when a webhook is created: acknowledged, never a run."""

    hook_id: str | None = None


Delivery = PushEvent | RefDeleted | Ping


def is_sha(value: object) -> bool:
    return isinstance(value, str) and bool(_SHA.match(value))


def known_sha(value: str | None) -> str | None:
    """`value` unless it is absent or git's all-zeros "no commit" SHA."""
    if value is None or value == ZERO_SHA or not value:
        return None
    return value


def qualify(ref: str, *, tag: bool = False) -> str:
    if ref.startswith(("refs/heads/", "refs/tags/")):
        return ref
    return (TAG_PREFIX if tag else BRANCH_PREFIX) + ref


def split_ref(ref: str) -> tuple[str, bool] | None:
    """`refs/heads/x` -> ("x", False), `refs/tags/x` -> ("x", True); other refs -> None."""
    for prefix, tag in ((BRANCH_PREFIX, False), (TAG_PREFIX, True)):
        if ref.startswith(prefix) and len(ref) > len(prefix):
            return ref[len(prefix) :], tag
    return None
