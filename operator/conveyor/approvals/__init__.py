"""Approval gates, pure: what votes decide, and the Approval the operator creates."""

from __future__ import annotations

from conveyor.approvals.decision import (
    Decision,
    IgnoredVote,
    approval_status,
    decide,
    vote_history,
    why_not_allowed,
)
from conveyor.approvals.manifest import (
    approval_manifest,
    approval_name,
    pusher_of,
)

__all__ = [
    "Decision",
    "IgnoredVote",
    "approval_manifest",
    "approval_name",
    "approval_status",
    "decide",
    "pusher_of",
    "vote_history",
    "why_not_allowed",
]
