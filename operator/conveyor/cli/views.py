"""What the `conveyor` commands print about runs (pure: objects in, text out).

Tables are kubectl's: upper-case headers, columns three spaces apart, `-` for nothing. `-o`
follows kubectl too: `json` and `yaml` are the objects as the API server returns them (a `List`
for several), `name` is `pipelinerun.conveyor.dev/NAME`, `wide` adds columns.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.api.approval import Approval
from conveyor.api.codec import format_time, parse_time
from conveyor.api.conditions import Condition, find_condition
from conveyor.api.durations import format_duration
from conveyor.api.meta import (
    ANNOTATION_CANCELLED_BY,
    ANNOTATION_INITIATOR,
    ANNOTATION_RERUN_OF,
    GROUP,
)
from conveyor.api.pipelinerun import (
    CONDITION_SUCCEEDED,
    JobStatus,
    JunitSummary,
    PipelineRun,
    PipelineRunStatus,
)
from conveyor.cli.objects import created, spec_of
from conveyor.engine.reports import merge_summaries, summary_text

OUTPUTS = ("table", "wide", "json", "yaml", "name")
FINISHED = frozenset({"Succeeded", "Failed", "Cancelled", "Skipped"})
# Reasons of a run that is not simply running: what it waits for (the Succeeded condition's).
WAITING_REASONS = frozenset(
    {
        "WaitingForConcurrency",
        "PipelineNotFound",
        "ManualActionRequired",
        "Delayed",
        "WaitingForApproval",
        "WaitingForEnvironment",
        "WaitingForResource",
    }
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def age(stamp: datetime.datetime | None, now: datetime.datetime) -> str:
    if stamp is None:
        return "-"
    return format_duration(max(0, int((now - stamp).total_seconds())))


def stamp(value: datetime.datetime | None) -> str | None:
    """A time as the API server writes it (what the objects' JSON held), or None."""
    return format_time(value) if value is not None else None


def succeeded_condition(status: PipelineRunStatus) -> Condition | None:
    return find_condition(status.conditions, CONDITION_SUCCEEDED)


def waiting_for(run: PipelineRun) -> str | None:
    """What an unfinished run waits for (`ManualActionRequired`, `WaitingForApproval`, ...), as
    its Succeeded condition says; None while it simply runs, or once it has ended."""
    condition = succeeded_condition(run.status)
    reason = condition.reason if condition is not None else None
    return reason if reason in WAITING_REASONS and run.status.phase not in FINISHED else None


def pipeline_of(run: PipelineRun) -> str:
    """The run's Pipeline, `(inline)` for an inline spec, `-` if it names none."""
    if run.status.pipeline_name:
        return run.status.pipeline_name
    if spec_of(run).pipeline_spec is not None:
        return "(inline)"
    return run.pipeline_name or "-"


def runs_table(
    runs: Sequence[PipelineRun],
    now: datetime.datetime,
    *,
    wide: bool = False,
    namespaces: bool = False,
) -> str:
    rows = []
    for r in sorted(runs, key=lambda r: (r.metadata.namespace or "", created(r.metadata))):
        spec, status, metadata = spec_of(r), r.status, r.metadata
        condition = succeeded_condition(status)
        row = [metadata.namespace or "-"] if namespaces else []
        row += [
            r.name,
            pipeline_of(r),
            spec.revision.ref,
            status.short_sha or "-",
            status.phase or "Pending",
            waiting_for(r) or "-",
            status.current_stage or "-",
            age(metadata.creation_timestamp, now),
            status.duration or "-",
        ]
        if wide:
            message = condition.message if condition is not None else None
            row += [
                spec.pipeline_source,
                metadata.annotations.get(ANNOTATION_INITIATOR) or "-",
                summary_text(run_tests(r)) or "-",
                (message or "-")[:80],
            ]
        rows.append(row)
    headers = ["NAMESPACE"] if namespaces else []
    headers += ["NAME", "PIPELINE", "REF", "SHA", "STATUS", "WAITING", "STAGE", "AGE", "DURATION"]
    if wide:
        headers += ["SOURCE", "INITIATOR", "TESTS", "MESSAGE"]
    return table(headers, rows)


def run_tests(run: PipelineRun) -> JunitSummary | None:
    """The test summary of the whole run: its jobs' summed; None when no job reported tests."""
    summaries = [j.tests for j in run.status.jobs if j.tests is not None]
    return merge_summaries(summaries) if summaries else None


def _size(size: int) -> str:
    if size < 1024:
        return f"{size}B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f}{unit}"


def _took(job: JobStatus, now: datetime.datetime | None) -> str:
    start, end = job.start_time, job.completion_time
    if start and end:
        return format_duration((end - start).total_seconds())
    if start and now is not None and job.phase == "Running":
        return format_duration((now - start).total_seconds())
    return "-"


def jobs_table(
    run: PipelineRun, *, wide: bool = False, now: datetime.datetime | None = None
) -> str:
    rows = []
    jobs = run.status.jobs
    # The TESTS column only when some job has JUnit reports: other runs keep their layout.
    with_tests = any(j.tests for j in jobs)
    for j in jobs:
        row = [
            j.name,
            j.stage,
            j.phase + (" (allowed)" if j.allowed_failure else ""),
            str(j.attempt or "-"),
            "-" if j.exit_code is None else str(j.exit_code),
            j.reason or "-",
            j.job_name or "-",
            _took(j, now),
        ]
        if with_tests:
            row.append(summary_text(j.tests) or "-")
        if wide:
            row += [j.environment or "-", (j.message or "-")[:80]]
        rows.append(row)
    headers = ["JOB", "STAGE", "STATUS", "ATTEMPT", "EXIT", "REASON", "K8S JOB", "DURATION"]
    if with_tests:
        headers.append("TESTS")
    if wide:
        headers += ["ENVIRONMENT", "MESSAGE"]
    return table(headers, rows)


def run_summary(run: PipelineRun, *, wide: bool = False, now: datetime.datetime) -> str:
    """`conveyor get RUN`: the run's state on two lines, then its jobs."""
    status = run.status
    succeeded = succeeded_condition(status)
    lines = [f"Run:      {run.name}   {status.phase or 'Pending'}"]
    if succeeded is not None and (succeeded.reason or succeeded.message):
        lines.append(f"Reason:   {succeeded.reason or ''}: {succeeded.message or ''}".rstrip())
    tests = run_tests(run)
    if tests is not None:
        lines.append(f"Tests:    {summary_text(tests)}")
    if status.jobs:
        lines.append(jobs_table(run, wide=wide, now=now))
    lines += _failed_tests(status.jobs)
    return "\n".join(lines)


def _failed_tests(jobs: Sequence[JobStatus]) -> list[str]:
    """`Failed tests:` then `  JOB: classname.name`, the first ones each job recorded."""
    out = []
    for j in jobs:
        if j.tests is None:
            continue
        out += [f"  {j.name}: {name}" for name in j.tests.failed_tests]
        out += [f"  {j.name}: unreadable report {why}" for why in j.tests.unreadable]
    return ["Failed tests:", *out] if out else []


def names(objects: Sequence[Mapping[str, Any]], kind: str = "pipelinerun") -> str:
    return "\n".join(f"{kind}.{GROUP}/{o['metadata']['name']}" for o in objects)


def serialized(objects: Sequence[Mapping[str, Any]], output: str, *, single: bool) -> str:
    """`-o json|yaml`: one object as it is, several as a kubectl `List`."""
    body: Any = (
        objects[0]
        if single
        else {"apiVersion": "v1", "kind": "List", "items": list(objects), "metadata": {}}
    )
    if output == "json":
        return json.dumps(body, indent=2, sort_keys=False)
    import yaml  # only -o yaml pays for it

    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True).rstrip("\n")


def _field(label: str, value: object) -> str:
    return f"{label + ':':<15}{value if value not in (None, '') else '-'}"


def describe(
    run: PipelineRun,
    approvals: Sequence[Approval],
    events: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> str:
    """`conveyor describe RUN`: everything about a run a person asks first, as kubectl describe
    lays it out: its identity, its state and why, each job with its failure's own message, its
    approvals, what it deployed, and its events (core/v1 Events: JSON, they have no model)."""
    metadata, spec, status = run.metadata, spec_of(run), run.status
    annotations = metadata.annotations
    succeeded = succeeded_condition(status) or Condition(CONDITION_SUCCEEDED, "Unknown")
    evaluation, created_at = status.evaluation, metadata.creation_timestamp
    lines = [
        _field("Name", run.name),
        _field("Namespace", metadata.namespace),
        _field("Pipeline", pipeline_of(run)),
        _field("Ref", spec.revision.ref),
        _field("Commit", spec.revision.sha or (evaluation.sha if evaluation else None)),
        _field("Before", spec.revision.before_sha),
        _field("Source", spec.pipeline_source),
        _field("Started by", annotations.get(ANNOTATION_INITIATOR)),
    ]
    if annotations.get(ANNOTATION_CANCELLED_BY):
        lines.append(_field("Cancelled by", annotations[ANNOTATION_CANCELLED_BY]))
    if annotations.get(ANNOTATION_RERUN_OF):
        lines.append(_field("Rerun of", annotations[ANNOTATION_RERUN_OF]))
    lines += [
        _field("Created", f"{stamp(created_at)} ({age(created_at, now)} ago)"),
        _field("Started", stamp(status.start_time)),
        _field("Completed", stamp(status.completion_time)),
        _field("Duration", status.duration),
        _field("Status", status.phase or "Pending"),
        _field("Reason", succeeded.reason),
        _field("Message", succeeded.message),
    ]
    if spec.variables:
        lines.append("Variables:")
        lines += [f"  {k}={v}" for k, v in sorted(spec.variables.items())]
    if spec.retry:
        retried = ", ".join(f"{r.job} (after attempt {r.attempt})" for r in spec.retry)
        lines.append(_field("Retried", retried))
    if status.jobs:
        lines += ["", "Jobs:", _indent(jobs_table(run, now=now)), *_failures(status.jobs)]
        failed_tests = _failed_tests(status.jobs)
        if failed_tests:
            lines += ["", *failed_tests]
        lines += _artifacts(status.jobs)
    if approvals:
        lines += ["", "Approvals:"]
        rows = []
        for a in sorted(approvals, key=lambda a: created(a.metadata)):
            voters = ", ".join(f"{v.user}: {v.decision}" for v in a.status.votes) or "-"
            a_spec = spec_of(a)
            decision = a.status.decision or "Pending"
            rows.append([a.name, a_spec.job, a_spec.environment, decision, voters])
        lines.append(_indent(table(["APPROVAL", "JOB", "ENVIRONMENT", "DECISION", "VOTES"], rows)))
    if status.deployments:
        lines += ["", "Deployments:"]
        for d in status.deployments:
            lines.append(
                f"  {d.job} -> {d.environment} (namespace {d.namespace}): "
                f"{d.result}, version {d.version}" + (f": {d.message}" if d.message else "")
            )
    lines += ["", "Events:"]
    if not events:
        lines.append("  <none>")
    else:
        rows = []
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            when = e.get("lastTimestamp") or e.get("eventTime")
            rows.append(
                [
                    e.get("type") or "-",
                    e.get("reason") or "-",
                    age(parse_time(when) if when else None, now),
                    " ".join(str(e.get("message") or "").split()),
                ]
            )
        lines.append(_indent(table(["TYPE", "REASON", "AGE", "MESSAGE"], rows)))
    return "\n".join(lines)


def _failures(jobs: Sequence[JobStatus]) -> list[str]:
    """Each failed job with its failure's own message."""
    failures = [j for j in jobs if j.phase == "Failed"]
    if not failures:
        return []
    lines = ["", "Failures:"]
    for j in failures:
        why = j.message or j.reason or "failed"
        code = f", exit code {j.exit_code}" if j.exit_code is not None else ""
        allowed = " (failure allowed)" if j.allowed_failure else ""
        lines.append(f"  {j.name} (attempt {j.attempt or 1}{code}){allowed}: {why}")
    return lines


def _artifacts(jobs: Sequence[JobStatus]) -> list[str]:
    """What the jobs kept in the artifact store, a row each."""
    rows = [
        [
            j.name,
            a.name,
            a.kind,
            _size(a.size),
            (a.digest or "-")[:19],
            stamp(a.expires_at) or "never",
        ]
        for j in jobs
        for a in j.artifacts or ()
    ]
    if not rows:
        return []
    return [
        "",
        "Artifacts:",
        _indent(table(["JOB", "FILE", "KIND", "SIZE", "DIGEST", "EXPIRES"], rows)),
    ]


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
