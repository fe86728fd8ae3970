"""Which Approval releases a gated job (pure): the one created for exactly this run, job,
environment, commit and pipeline, and nothing else.

An Approval is found by its `spec` (which only the operator writes), never by its labels, and
it counts only while its `runUID` is the run's UID and its `digest` is the digest of what the
job would do now. A run recreated under the same name, an edited Environment, or a Pipeline
that differs from the one approved all make a different digest: the old Approval then releases
nothing, and the job waits for a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.api.approval import CANCELLED, Approval
from conveyor.api.codec import to_dict
from conveyor.api.pipeline import PipelineSpec


def gate_digest(
    pipeline: PipelineSpec,
    job: str,
    variables: Mapping[str, str],
    environment: str,
    environment_spec: Mapping[str, Any],
    sha: str | None,
    artifacts: Mapping[str, str] | None = None,
) -> str:
    """`sha256:<hex>` of what gated `job` would do: the run's pipeline (names expanded), its run
    variables, the environment's name and spec, the commit, and the digests of the artifacts it
    downloads (`artifacts`: job -> recorded digest; a job downloading none has the digest it
    had before artifacts existed)."""
    facts: dict[str, Any] = {
        "pipeline": to_dict(pipeline),
        "job": job,
        "variables": dict(variables),
        "environment": environment,
        "environmentSpec": dict(environment_spec),
        "sha": sha,
    }
    if artifacts:
        facts["artifacts"] = dict(artifacts)
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Expected:
    """What a gated job's Approval must say to count."""

    environment: str
    digest: str
    pending: bool = False  # an artifact the job downloads is not recorded yet


@dataclass
class Matched:
    current: dict[str, Approval] = field(default_factory=dict)  # job -> its Approval
    stale: list[Approval] = field(default_factory=list)  # this run's, but for other facts
    # job -> how many Approvals for exactly these facts were closed before a decision (the
    # facts changed and changed back): the next one asked for needs another name.
    rounds: dict[str, int] = field(default_factory=dict)


def match_approvals(
    bodies: Iterable[Mapping[str, Any]],
    run_uid: str,
    sha: str | None,
    expected: Mapping[str, Expected],
) -> Matched:
    """Sorts the Approvals that name a run into those that gate its jobs now and those of this
    run that no longer can (what the job would do changed). Approvals of another run of the same
    name (another UID) are neither: they are that run's record, and are not parsed here."""
    out = Matched()
    for body in bodies:
        if not run_uid or (body.get("spec") or {}).get("runUID") != run_uid:
            continue
        approval = Approval.from_dict(body)
        spec = approval.spec
        assert spec is not None  # it has a runUID
        want = expected.get(spec.job)
        if (
            want is not None
            and spec.digest == want.digest
            and spec.environment == want.environment
            and spec.revision.sha == sha
        ):
            if approval.status.decision == CANCELLED:
                out.rounds[spec.job] = out.rounds.get(spec.job, 0) + 1
            else:
                out.current[spec.job] = approval
        else:
            out.stale.append(approval)
    return out
