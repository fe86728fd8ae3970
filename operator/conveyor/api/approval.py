"""The Approval resource: the gate in front of one job of one run.

The operator creates it with the policy copied from the Environment (who may approve, how many,
until when); approvers add their own entry to `spec.votes`. Who may write what is enforced at
admission (deploy/30-admission.yaml) from the requester's identity, never from these fields:
the API server stamps each vote's `groups` from the voter's credentials. `status` is the operator's
record of what it saw and decided (conveyor.approvals.decide).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import from_dict
from conveyor.api.conditions import Condition
from conveyor.api.environment import (
    APPROVER_MAX_LENGTH,
    IMAGE_MAX_LENGTH,
    MAX_REQUIRED_APPROVALS,
    approvers_field,
)
from conveyor.api.fields import model, spec_field
from conveyor.api.meta import DNS_LABEL_MAX, DNS_SUBDOMAIN_PATTERN, ObjectMeta
from conveyor.api.pipeline import JOB_NAME_MAX

# Decisions (status.decision).
PENDING = "Pending"
APPROVED = "Approved"
REJECTED = "Rejected"
EXPIRED = "Expired"
# The run ended before a decision (cancelled, superseded by a newer run, failed elsewhere).
CANCELLED = "Cancelled"
DECISIONS = (PENDING, APPROVED, REJECTED, EXPIRED, CANCELLED)
FINAL_DECISIONS = frozenset({APPROVED, REJECTED, EXPIRED, CANCELLED})

# Votes (spec.votes[user].decision); WITHDRAWN only appears in the status history.
APPROVE = "approve"
REJECT = "reject"
WITHDRAWN = "withdrawn"
VOTE_DECISIONS = (APPROVE, REJECT)

# One entry per voter; more than the approver list allows, since groups expand to many users.
MAX_VOTES = 100
MAX_GROUPS = 64
GROUP_MAX_LENGTH = 256
COMMENT_MAX_LENGTH = 1024
# The operator keeps the last entries of the vote history; every change of a vote adds one.
MAX_VOTE_HISTORY = 100
MAX_IMAGES = 20

# Where an Approval's pusher comes from (spec.pusherSource).
PUSHER_FROM_WEBHOOK = "webhook"
PUSHER_FROM_COMMIT = "commit"
PUSHER_SOURCES = (PUSHER_FROM_WEBHOOK, PUSHER_FROM_COMMIT)

# Reason of the Decided condition and what the operator writes when it decides.
CONDITION_DECIDED = "Decided"

# The spec fields the operator writes at creation and nobody else may change (the admission policy
# compares exactly these).
POLICY_FIELDS = (
    "pipelineRun",
    "runUID",
    "digest",
    "pusher",
    "pusherSource",
    "job",
    "environment",
    "revision",
    "images",
    "requiredApprovals",
    "approvers",
    "allowInitiator",
    "initiator",
    "expiresAt",
)


@model("The revision the approved job deploys.")
@dataclass(frozen=True)
class ApprovalRevision:
    ref: str = spec_field("Branch or tag.", max_length=255, min_length=1)
    sha: str | None = spec_field("Commit.", default=None, max_length=40, pattern=r"^[0-9a-f]{40}$")


@model("One user's vote; the key of the entry in spec.votes is the voter's username.")
@dataclass(frozen=True)
class Vote:
    decision: str = spec_field("approve or reject.", enum=VOTE_DECISIONS)
    comment: str | None = spec_field(
        "Why, for the record.", default=None, max_length=COMMENT_MAX_LENGTH
    )
    groups: tuple[str, ...] = spec_field(
        "The voter's groups, stamped by the API server from the voter's credentials; "
        "whatever a client sends here is overwritten.",
        default_factory=tuple,
        max_items=MAX_GROUPS,
        item_max_length=GROUP_MAX_LENGTH,
    )


@model("What approvers decide about, and their votes.")
@dataclass(frozen=True)
class ApprovalSpec:
    pipeline_run: str = spec_field(
        "The PipelineRun the gated job belongs to.",
        max_length=DNS_LABEL_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    run_uid: str = spec_field(
        "The UID of that PipelineRun: an Approval counts only for the run it was created for, "
        "never for another run of the same name.",
        json_name="runUID",
        max_length=64,
        min_length=1,
    )
    job: str = spec_field("The gated pipeline job.", max_length=JOB_NAME_MAX, min_length=1)
    digest: str = spec_field(
        "sha256 of what the job will do: the run's recorded pipeline, its variables, the "
        "expanded environment and its spec, and the commit. The operator releases the job only "
        "while this still matches.",
        max_length=71,
        pattern=r"^sha256:[0-9a-f]{64}$",
    )
    environment: str = spec_field(
        "The environment the job deploys to, as expanded for the run (GitLab's free-form "
        "name, e.g. review/feature-x).",
        max_length=255,
        min_length=1,
    )
    revision: ApprovalRevision = spec_field("The revision the job deploys.")
    expires_at: datetime.datetime = spec_field("When the approval expires if still undecided.")
    required_approvals: int = spec_field(
        "Approvals needed (from the Environment at creation).",
        default=1,
        minimum=0,
        maximum=MAX_REQUIRED_APPROVALS,
    )
    approvers: tuple[str, ...] = approvers_field(
        "Who may vote: usernames or group:<name> (from the Environment at creation)."
    )
    allow_initiator: bool = spec_field(
        "Whether the run's initiator may vote (from the Environment at creation).", default=False
    )
    initiator: str | None = spec_field(
        "Who started the run (its conveyor.dev/initiator annotation, stamped at admission).",
        default=None,
        max_length=APPROVER_MAX_LENGTH,
    )
    pusher: str | None = spec_field(
        "Who pushed the commit, for runs a push trigger created (from the webhook's payload); "
        "like the initiator, they may not vote unless allowInitiator.",
        default=None,
        max_length=APPROVER_MAX_LENGTH,
    )
    pusher_source: str | None = spec_field(
        "Where the pusher comes from: webhook (the push's payload names who pushed) or commit "
        "(a polled push: the commit's author's email, weaker, since anyone can author a commit "
        "under any name).",
        default=None,
        enum=PUSHER_SOURCES,
    )
    images: tuple[str, ...] = spec_field(
        "The container images the job deploys, rendered from the templates at the approved "
        "commit (native deploy jobs); the deploy refuses to apply any other.",
        default_factory=tuple,
        max_items=MAX_IMAGES,
        item_max_length=IMAGE_MAX_LENGTH,
    )
    votes: Mapping[str, Vote] = spec_field(
        "Votes keyed by username; each user writes only their own entry.",
        default_factory=dict,
        max_properties=MAX_VOTES,
    )


@model("One vote as the operator saw it.")
@dataclass(frozen=True)
class VoteRecord:
    user: str = spec_field("Voter's username.", max_length=APPROVER_MAX_LENGTH)
    decision: str = spec_field(
        "approve, reject, or withdrawn (the vote was removed).",
        enum=(*VOTE_DECISIONS, WITHDRAWN),
    )
    time: datetime.datetime = spec_field("When the operator first saw this vote.")
    groups: tuple[str, ...] = spec_field(
        "The voter's groups, as stamped by the API server.",
        default_factory=tuple,
        max_items=MAX_GROUPS,
        item_max_length=GROUP_MAX_LENGTH,
    )
    comment: str | None = spec_field(
        "The vote's comment.", default=None, max_length=COMMENT_MAX_LENGTH
    )


@model("Approval status, written by the operator.")
@dataclass(frozen=True)
class ApprovalStatus:
    decision: str | None = spec_field(
        "Pending, Approved, Rejected, Expired, or Cancelled (the run ended first).",
        default=None,
        enum=DECISIONS,
    )
    approvals: str | None = spec_field(
        "Approvals that count over approvals required, e.g. 1/2.", default=None, max_length=16
    )
    approved_by: tuple[str, ...] = spec_field(
        "Users whose approval counts.",
        default_factory=tuple,
        max_items=MAX_VOTES,
        item_max_length=APPROVER_MAX_LENGTH,
    )
    rejected_by: tuple[str, ...] = spec_field(
        "Users whose rejection counts.",
        default_factory=tuple,
        max_items=MAX_VOTES,
        item_max_length=APPROVER_MAX_LENGTH,
    )
    decided_at: datetime.datetime | None = spec_field("When the decision was made.", default=None)
    reason: str | None = spec_field(
        "Why the approval is in its state.", default=None, max_length=1024
    )
    votes: tuple[VoteRecord, ...] = spec_field(
        "History of the votes the operator saw, oldest first (the last ones are kept).",
        default_factory=tuple,
        max_items=MAX_VOTE_HISTORY,
    )
    conditions: tuple[Condition, ...] = spec_field(
        "Conditions; Decided is False while pending, True once decided.",
        default_factory=tuple,
        max_items=8,
        list_type="map",
        list_map_keys=("type",),
    )
    observed_generation: int | None = spec_field(
        "Generation of the spec last processed.", default=None, minimum=0
    )

    @property
    def final(self) -> bool:
        return self.decision in FINAL_DECISIONS


@dataclass(frozen=True)
class Approval:
    metadata: ObjectMeta = spec_field("Object metadata.", default_factory=ObjectMeta)
    spec: ApprovalSpec | None = spec_field("Desired state.", default=None)
    status: ApprovalStatus = spec_field("Observed state.", default_factory=ApprovalStatus)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Approval:
        return from_dict(cls, obj)

    @property
    def name(self) -> str:
        return self.metadata.name


def parse_approval_status(obj: Mapping[str, Any] | None) -> ApprovalStatus:
    return from_dict(ApprovalStatus, obj or {}, "status")
