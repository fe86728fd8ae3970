"""Deterministic Kubernetes names and label values derived from user-chosen names.

Determinism is what makes reconciling restart-safe: planning the same attempt twice yields the same
Job name, so a second create is an "already exists", never a duplicate Job.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

DNS_LABEL_MAX = 63
HASH_LENGTH = 8
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def short_hash(*parts: str, length: int = HASH_LENGTH) -> str:
    # NUL cannot appear in Kubernetes names, so ("a", "bc") and ("ab", "c") never hash alike.
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


def slug(text: str, max_length: int = DNS_LABEL_MAX) -> str:
    """Lowercase ASCII letters, digits and single dashes; accents folded; may be empty."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    out = _NOT_ALNUM.sub("-", folded.lower()).strip("-")
    return out[:max_length].strip("-")


def job_name(run_name: str, pipeline_job: str, attempt: int, run_uid: str = "") -> str:
    """Name of the batch/v1 Job for one attempt of one pipeline job: a DNS-1123 label.

    Readable slugs of the run and the job, the attempt, and a hash of all three (and of the
    run's UID, when given) so that distinct jobs whose slugs coincide after truncation or folding
    still get distinct names, and a run made again under the same name never meets a Job left
    by the earlier one.
    """
    parts = (run_name, pipeline_job, str(attempt), *((run_uid,) if run_uid else ()))
    suffix = f"-{attempt}-{short_hash(*parts)}"
    budget = DNS_LABEL_MAX - len(suffix)
    run_part = slug(run_name) or "run"
    job_part = slug(pipeline_job) or "job"
    # Give the job part at least half the room: it is what tells Jobs of one run apart.
    run_room = max(budget - len(job_part) - 1, budget // 2)
    run_part = run_part[:run_room].strip("-") or "run"
    job_room = budget - len(run_part) - 1
    job_part = job_part[:job_room].strip("-") or "job"
    return f"{run_part}-{job_part}{suffix}"


def label_value(value: str) -> str:
    """`value` if it is a valid label value, else a truncated form with a hash (still unique)."""
    if len(value) <= DNS_LABEL_MAX and LABEL_VALUE.match(value):
        return value
    tail = "-" + short_hash(value)
    head = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[: DNS_LABEL_MAX - len(tail)]
    head = head.strip("-_.")
    return (head + tail) if head else tail.lstrip("-")


def ref_slug(ref: str) -> str:
    """GitLab's CI_COMMIT_REF_SLUG: lowercased, [^0-9a-z] -> '-', at most 63, no edge dashes."""
    out = re.sub(r"[^0-9a-z]", "-", ref.lower())[:DNS_LABEL_MAX]
    return out.strip("-")
