"""What an Approval's votes decide: pure, so the operator and the tests agree on every rule.

The admission policy already refuses votes from anyone not allowed; the operator still counts only
allowed votes, from the groups the API server stamped on each vote, so that a policy that is missing
or was changed cannot turn an outsider's vote into a deploy.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.api.approval import (
    APPROVE,
    APPROVED,
    CONDITION_DECIDED,
    EXPIRED,
    FINAL_DECISIONS,
    MAX_VOTE_HISTORY,
    PENDING,
    REJECT,
    REJECTED,
    WITHDRAWN,
    Approval,
    ApprovalStatus,
    Vote,
    VoteRecord,
)
from conveyor.api.codec import format_time, to_dict
from conveyor.api.conditions import Condition, set_condition
from conveyor.api.environment import GROUP_PREFIX


@dataclass(frozen=True)
class IgnoredVote:
    """A vote that does not count, and why."""

    user: str
    why: str


@dataclass(frozen=True)
class Decision:
    state: str  # Pending | Approved | Rejected | Expired
    approvers_that_count: tuple[str, ...]
    rejected_by: tuple[str, ...]
    reason: str
    required: int = 0
    ignored: tuple[IgnoredVote, ...] = ()

    @property
    def final(self) -> bool:
        return self.state in FINAL_DECISIONS

    @property
    def approvals(self) -> str:
        """The printer column's `1/2`."""
        return f"{len(self.approvers_that_count)}/{self.required}"


def why_not_allowed(
    user: str,
    groups: Sequence[str],
    approvers: Sequence[str],
    initiator: str | None,
    allow_initiator: bool,
    pusher: str | None = None,
) -> str | None:
    """None when `user` (member of `groups`) may vote, else the reason, in the admission policy's
    words. `pusher` (who pushed the commit of a push run) is held to the initiator's rule."""
    if initiator and user == initiator and not allow_initiator:
        return "the run's initiator may not approve it"
    if pusher and user == pusher and not allow_initiator:
        return "the person who pushed the commit may not approve its deploy"
    member_of = set(groups)
    for entry in approvers:
        if entry.startswith(GROUP_PREFIX):
            if entry[len(GROUP_PREFIX) :] in member_of:
                return None
        elif entry == user:
            return None
    return f"{user} is not an approver"


def _as_model(approval: Approval | Mapping[str, Any]) -> Approval:
    return approval if isinstance(approval, Approval) else Approval.from_dict(approval)


def decide(approval: Approval | Mapping[str, Any], now: datetime.datetime) -> Decision:
    """The state of an Approval from its votes, its policy and the time.

    Distinct allowed users count once each (a user is one key of spec.votes). An allowed reject
    wins over any number of approvals. Once expiresAt has passed, an undecided approval expires even
    if enough approvals arrived meanwhile: the admission policy cannot see the clock, so a vote
    counted after the deadline might have been cast after it. A decision already recorded in status
    is final and stays.
    """
    model = _as_model(approval)
    spec = model.spec
    if spec is None:
        raise ValueError(f"approval {model.name} has no spec")
    approving: list[str] = []
    rejecting: list[str] = []
    ignored: list[IgnoredVote] = []
    for user in sorted(spec.votes):
        vote = spec.votes[user]
        why = why_not_allowed(
            user, vote.groups, spec.approvers, spec.initiator, spec.allow_initiator, spec.pusher
        )
        if why is not None:
            ignored.append(IgnoredVote(user, why))
        elif vote.decision == APPROVE:
            approving.append(user)
        elif vote.decision == REJECT:
            rejecting.append(user)
    required = spec.required_approvals
    counted = (tuple(approving), tuple(rejecting))
    common: dict[str, Any] = {"required": required, "ignored": tuple(ignored)}

    previous = model.status.decision
    if previous in FINAL_DECISIONS:
        reason = model.status.reason or f"{previous} earlier"
        return Decision(previous, *counted, reason=reason, **common)
    if rejecting:
        return Decision(REJECTED, *counted, reason=f"rejected by {', '.join(rejecting)}", **common)
    if now >= spec.expires_at:
        reason = (
            f"expired at {format_time(spec.expires_at)} with {len(approving)}/{required} approvals"
        )
        return Decision(EXPIRED, *counted, reason=reason, **common)
    if len(approving) >= required:
        who = ", ".join(approving) or "nobody (no approval required)"
        return Decision(APPROVED, *counted, reason=f"approved by {who}", **common)
    missing = required - len(approving)
    reason = f"waiting for {missing} more approval{'s' if missing != 1 else ''}"
    return Decision(PENDING, *counted, reason=reason, **common)


def vote_history(
    previous: Sequence[VoteRecord], votes: Mapping[str, Vote], now: datetime.datetime
) -> tuple[VoteRecord, ...]:
    """The history with one new record per vote that appeared, changed or was withdrawn since the
    last record of its user; only the last MAX_VOTE_HISTORY records are kept."""
    latest: dict[str, VoteRecord] = {}
    for record in previous:
        latest[record.user] = record
    added: list[VoteRecord] = []
    for user in sorted(votes):
        vote = votes[user]
        last = latest.get(user)
        seen = (last.decision, last.comment, last.groups) if last else None
        if seen != (vote.decision, vote.comment, vote.groups):
            added.append(VoteRecord(user, vote.decision, now, vote.groups, vote.comment))
    for user in sorted(latest):
        if user not in votes and latest[user].decision != WITHDRAWN:
            added.append(VoteRecord(user, WITHDRAWN, now, latest[user].groups))
    return (*previous, *added)[-MAX_VOTE_HISTORY:]


def approval_status(
    approval: Approval | Mapping[str, Any], decision: Decision, now: datetime.datetime
) -> dict[str, Any]:
    """The full `status` the operator writes (as JSON) after `decide`: decision, counts, vote
    history and the Decided condition; decidedAt is set once, when the decision becomes final."""
    model = _as_model(approval)
    old = model.status
    votes = model.spec.votes if model.spec is not None else {}
    decided_at = old.decided_at
    if decision.final and decided_at is None:
        decided_at = now
    condition = Condition(
        type=CONDITION_DECIDED,
        status="True" if decision.final else "False",
        reason=decision.state,
        message=decision.reason[:2048],
        observed_generation=model.metadata.generation,
    )
    status = ApprovalStatus(
        decision=decision.state,
        approvals=decision.approvals,
        approved_by=decision.approvers_that_count,
        rejected_by=decision.rejected_by,
        decided_at=decided_at,
        reason=decision.reason[:1024],
        votes=vote_history(old.votes, votes, now),
        conditions=set_condition(old.conditions, condition, now),
        observed_generation=model.metadata.generation,
    )
    # Every list is written, empty ones too, so a merge patch of this status replaces them all.
    return to_dict(status)
