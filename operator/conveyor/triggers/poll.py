"""The poll trigger, as pure decisions: given the heads seen now and those recorded at the last
poll, which pushes happened, and what to record for next time.

What was seen lives in the Pipeline's status (`status.triggers.poll`), never only in memory: after
a restart the operator compares with the recorded heads and misses nothing, and a push it sees
again maps to the same deterministic run name, so nothing is run twice either.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import format_time, from_dict
from conveyor.api.pipeline import MAX_TRACKED_REFS, PollStatus, PollTrigger
from conveyor.engine.names import short_hash
from conveyor.triggers.events import REF_MAX, PushEvent, is_sha, split_ref
from conveyor.triggers.selection import branch_matches

ERROR_MAX = 1024
SELECTION_KEY_LENGTH = 12
_PEELED = "^{}"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


@dataclass(frozen=True)
class Tracked:
    """The refs a poll keeps in status, and how many selected refs did not fit."""

    heads: dict[str, str]
    untracked: int


def track(
    heads_now: Mapping[str, str],
    last_seen: Mapping[str, str] | None,
    selected: Callable[[str], bool],
    limit: int = MAX_TRACKED_REFS,
) -> Tracked:
    """The selected refs to remember, at most `limit`: those already tracked first (so a new
    branch never evicts a known one), then new ones in name order. Refs whose SHA is not a
    40-hex SHA-1 (SHA-256 repositories) or whose name is too long for a run's revision are left
    out, as a run could not be created for them."""
    usable = {
        name: sha
        for name, sha in heads_now.items()
        if selected(name) and is_sha(sha) and 0 < len(name) <= REF_MAX
    }
    previous = last_seen or {}
    kept = sorted(n for n in usable if n in previous)
    new = sorted(n for n in usable if n not in previous)
    names = (kept + new)[:limit]
    skipped = sum(1 for n in heads_now if selected(n)) - len(names)
    return Tracked({n: usable[n] for n in names}, skipped)


def poll_decisions(
    branch_heads_now: Mapping[str, str],
    last_seen: Mapping[str, str] | None,
    branches_globs: Sequence[str],
    *,
    tags: bool = False,
    limit: int = MAX_TRACKED_REFS,
) -> list[PushEvent]:
    """One PushEvent per tracked ref whose head changed (before = the previous head) and per new
    ref (before = None), in ref order. Deleted refs produce nothing.

    `last_seen=None` is the first poll: heads are only recorded, or every existing branch would
    start a run at once. With `tags=True` the refs are tag names and `branches_globs` is ignored
    (every tag is selected); call it once for branches and once for tags.
    """
    if last_seen is None:
        return []

    def selected(name: str) -> bool:
        return tags or branch_matches(name, branches_globs)

    return _events(track(branch_heads_now, last_seen, selected, limit), last_seen, tag=tags)


def _events(tracked: Tracked, last_seen: Mapping[str, str] | None, *, tag: bool) -> list[PushEvent]:
    if last_seen is None:
        return []
    events = [
        PushEvent(name, sha, last_seen.get(name), tag=tag)
        for name, sha in sorted(tracked.heads.items())
        if last_seen.get(name) != sha
    ]
    return events


def split_remote_refs(refs: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Branch heads and tags from `git ls-remote` output as {full ref: sha}.

    Annotated tags point at a tag object; their peeled `refs/tags/x^{}` entry gives the commit,
    which is what a run builds. HEAD, refs/pull/*, refs/merge-requests/* and the like are dropped.
    """
    branches: dict[str, str] = {}
    tag_refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for ref, sha in refs.items():
        if ref.endswith(_PEELED):
            peeled[ref.removesuffix(_PEELED)] = sha
            continue
        split = split_ref(ref)
        if split is None:
            continue
        name, is_tag = split
        (tag_refs if is_tag else branches)[name] = sha
    for ref, sha in peeled.items():
        split = split_ref(ref)
        if split is not None and split[1]:
            tag_refs[split[0]] = sha
    return branches, tag_refs


def parse_ls_remote(output: str) -> dict[str, str]:
    """`git ls-remote` text (`<sha>\\t<ref>` lines) as {ref: sha}."""
    refs = {}
    for line in output.splitlines():
        sha, _, ref = line.strip().partition("\t")
        if sha and ref:
            refs[ref] = sha
    return refs


def selection_key(trigger: PollTrigger) -> str:
    """A digest of what the trigger selects; stored with the heads so that changing the branch
    globs or the tags flag re-records heads instead of starting runs for every newly selected
    ref (the pushes of that one interval are not run)."""
    return short_hash(
        *sorted(trigger.branches), f"tags={trigger.tags}", length=SELECTION_KEY_LENGTH
    )


@dataclass(frozen=True)
class PollPlan:
    """What one poll decided: the runs to create and what to write to status.triggers.poll."""

    events: tuple[PushEvent, ...]
    status: dict[str, Any]  # the full new value of status.triggers.poll
    patch: dict[str, Any]  # a JSON merge patch of status.triggers.poll giving `status`
    baseline: bool  # heads were only recorded (first poll, or the selection changed)


def _map_patch(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str | None]:
    # A merge patch merges maps key by key: refs no longer tracked must be nulled explicitly.
    patch: dict[str, str | None] = {k: None for k in old if k not in new}
    patch.update({k: v for k, v in new.items() if old.get(k) != v})
    return patch


def plan_poll(
    trigger: PollTrigger,
    branches_now: Mapping[str, str],
    tags_now: Mapping[str, str],
    previous: PollStatus | None,
    now: datetime.datetime,
    *,
    limit: int = MAX_TRACKED_REFS,
) -> PollPlan:
    """Decide one successful poll. `branches_now`/`tags_now` are {short name: commit}, e.g. from
    `split_remote_refs(parse_ls_remote(...))`; `previous` is the parsed status.triggers.poll."""
    key = selection_key(trigger)
    baseline = previous is None or previous.selection != key
    last_heads = None if baseline or previous is None else dict(previous.heads)
    last_tags = None if baseline or previous is None else dict(previous.tags)

    branch_tracked = track(
        branches_now, last_heads, lambda n: branch_matches(n, trigger.branches), limit
    )
    events = _events(branch_tracked, last_heads, tag=False)
    tag_heads: dict[str, str] = {}
    untracked = branch_tracked.untracked
    if trigger.tags:
        tag_tracked = track(tags_now, last_tags, lambda _: True, limit)
        tag_heads = tag_tracked.heads
        untracked += tag_tracked.untracked
        events += _events(tag_tracked, last_tags, tag=True)

    status: dict[str, Any] = {
        "heads": branch_tracked.heads,
        "tags": tag_heads,
        "untracked": untracked,
        "selection": key,
        "lastPollTime": format_time(now),
    }
    patch: dict[str, Any] = dict(status)
    patch["heads"] = _map_patch(previous.heads if previous else {}, branch_tracked.heads)
    patch["tags"] = _map_patch(previous.tags if previous else {}, tag_heads)
    patch["error"] = None
    return PollPlan(tuple(events), status, patch, baseline)


def redact(message: str) -> str:
    """Drop credentials from URLs in a message (git errors echo `https://user:token@host/...`)."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", message)


def poll_error_patch(message: str) -> dict[str, Any]:
    """Merge patch of status.triggers.poll after a failed poll: the heads stay as they were, so
    the next successful poll still sees every push made meanwhile."""
    text = redact(message).strip() or "poll failed"
    if len(text) > ERROR_MAX:
        text = text[: ERROR_MAX - 3] + "..."
    return {"error": text}


def next_poll_delay(
    trigger: PollTrigger, last_poll_time: datetime.datetime | None, now: datetime.datetime
) -> float:
    """Seconds until the next poll is due; 0 when due now (or never polled)."""
    if last_poll_time is None:
        return 0.0
    elapsed = (now - last_poll_time).total_seconds()
    return max(0.0, trigger.interval_seconds - elapsed)


def poll_status(raw: Mapping[str, Any] | None) -> PollStatus | None:
    """The parsed status.triggers.poll of a Pipeline body's status, or None when absent."""
    poll = ((raw or {}).get("triggers") or {}).get("poll")
    if not poll:
        return None
    return from_dict(PollStatus, poll, "status.triggers.poll")
