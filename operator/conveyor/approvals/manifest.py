"""The Approval the operator creates in front of a protected job: deterministic, and not owned
by the run, so that who approved what outlives the run (the operator deletes it after the
retention period).

Deterministic names make creation restart-safe: planning the same gate twice yields the same name,
so a second create is an "already exists", never a second Approval.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.api.approval import (
    PUSHER_FROM_COMMIT,
    PUSHER_FROM_WEBHOOK,
    ApprovalRevision,
    ApprovalSpec,
)
from conveyor.api.codec import from_dict, to_dict
from conveyor.api.environment import Environment
from conveyor.api.meta import (
    ANNOTATION_JOB,
    ANNOTATION_PUSHER,
    API_VERSION,
    DNS_LABEL_MAX,
    LABEL_ENVIRONMENT,
    LABEL_RUN,
)
from conveyor.engine.names import label_value, short_hash, slug


def approval_name(run_name: str, run_uid: str, job: str, digest: str = "") -> str:
    """`<run>-<job slug>-<hash>`, at most 63 characters (a DNS label, like the run's own name).

    The hash covers the run's UID, the job's exact name and the digest of what the job would do:
    jobs whose slugs coincide (`deploy prod` and `deploy-prod`), a run recreated under the same
    name, and a job whose facts changed after its Approval was requested get distinct Approvals.
    """
    suffix = "-" + short_hash(run_name, run_uid, job, *((digest,) if digest else ()))
    budget = DNS_LABEL_MAX - len(suffix)
    run_part = slug(run_name) or "run"
    job_part = slug(job) or "job"
    # Give the job part at least half the room: it is what tells a run's gates apart.
    run_room = max(budget - len(job_part) - 1, budget // 2)
    run_part = run_part[:run_room].strip("-") or "run"
    job_part = job_part[: budget - len(run_part) - 1].strip("-") or "job"
    return f"{run_part}-{job_part}{suffix}"


def approval_manifest(
    run_name: str,
    run_uid: str,
    job: str,
    environment_body: Mapping[str, Any],
    revision: Mapping[str, Any],
    images: Sequence[str],
    initiator: str | None,
    now: datetime.datetime,
    *,
    digest: str,
    pusher: tuple[str, str] | None = None,
    round: int = 0,
    environment: str | None = None,
) -> dict[str, Any]:
    """The Approval gating `job` of run `run_name`, with the Environment's policy copied in.

    `revision` is `{"ref": ..., "sha": ...}` (the run's spec.revision; extra keys are ignored);
    `initiator` is the run's conveyor.dev/initiator annotation, `pusher` who pushed the commit
    of a push run and where that comes from (`pusher_of`), `digest` what the job would do
    (`conveyor.approvals.matching.gate_digest`),
    `round` how many Approvals for the same facts were closed undecided before this one,
    `environment` the job's environment name as expanded (default: the Environment's name; it
    differs for a name the Environment serves by slug or pattern).
    The policy is copied rather than referenced so that editing the Environment later does not
    change a gate already waiting.
    """
    env = Environment.from_dict(environment_body)
    if env.spec is None:
        raise ValueError(f"environment {env.name} has no spec")
    protection = env.spec.protection
    expires_at = now + datetime.timedelta(seconds=protection.timeout_seconds())
    spec = ApprovalSpec(
        pipeline_run=run_name,
        run_uid=run_uid,
        job=job,
        digest=digest,
        environment=environment or env.name,
        revision=_revision(revision),
        expires_at=expires_at,
        required_approvals=protection.required_approvals,
        approvers=protection.approvers,
        allow_initiator=protection.allow_initiator,
        initiator=initiator or None,
        pusher=pusher[0] if pusher else None,
        pusher_source=pusher[1] if pusher else None,
        images=tuple(images),
    )
    metadata: dict[str, Any] = {
        "name": approval_name(run_name, run_uid, job, f"{digest}/{round}" if round else digest),
        "labels": {
            LABEL_RUN: label_value(run_name),
            LABEL_ENVIRONMENT: label_value(environment or env.name),
        },
        "annotations": {ANNOTATION_JOB: job},
    }
    if env.metadata.namespace:
        metadata["namespace"] = env.metadata.namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "Approval",
        "metadata": metadata,
        # No votes yet: an empty map would only be noise in the stored object.
        "spec": {k: v for k, v in to_dict(spec).items() if k != "votes"},
    }


def pusher_of(
    annotations: Mapping[str, str], pipeline_source: str, commit_author: str | None
) -> tuple[str, str] | None:
    """Who pushed the commit of a push run: the webhook's pusher (the annotation only the
    operator's triggers may set), else, for a polled push, the email of the commit's author
    (`Name <email>`), which is weaker: a commit can name any author."""
    if pipeline_source != "push":
        return None
    if annotations.get(ANNOTATION_PUSHER):
        return annotations[ANNOTATION_PUSHER], PUSHER_FROM_WEBHOOK
    if commit_author and "<" in commit_author and commit_author.endswith(">"):
        email = commit_author.rsplit("<", 1)[1][:-1].strip()
        if email:
            return email, PUSHER_FROM_COMMIT
    return None


def _revision(revision: Mapping[str, Any]) -> ApprovalRevision:
    return from_dict(ApprovalRevision, {k: revision.get(k) for k in ("ref", "sha")}, "revision")
