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

from conveyor.api.codec import ModelError, from_dict, parse_time
from conveyor.api.durations import format_duration
from conveyor.api.meta import (
    ANNOTATION_CANCELLED_BY,
    ANNOTATION_INITIATOR,
    ANNOTATION_RERUN_OF,
    GROUP,
)
from conveyor.api.pipelinerun import JunitSummary
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


def age(stamp: str | None, now: datetime.datetime) -> str:
    if not stamp:
        return "-"
    return format_duration(max(0, int((now - parse_time(stamp)).total_seconds())))


def succeeded_condition(run: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = (run.get("status") or {}).get("conditions") or ()
    return next((c for c in conditions if c.get("type") == "Succeeded"), {})


def waiting_for(run: Mapping[str, Any]) -> str | None:
    """What an unfinished run waits for (`ManualActionRequired`, `WaitingForApproval`, ...), as
    its Succeeded condition says; None while it simply runs, or once it has ended."""
    reason = succeeded_condition(run).get("reason")
    phase = (run.get("status") or {}).get("phase")
    return reason if reason in WAITING_REASONS and phase not in FINISHED else None


def _pipeline_of(run: Mapping[str, Any]) -> str:
    spec, status = run.get("spec") or {}, run.get("status") or {}
    if status.get("pipelineName"):
        return str(status["pipelineName"])
    if spec.get("pipelineSpec") is not None:
        return "(inline)"
    return str((spec.get("pipelineRef") or {}).get("name") or "-")


def runs_table(
    runs: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    *,
    wide: bool = False,
    namespaces: bool = False,
) -> str:
    rows = []
    order = sorted(
        runs,
        key=lambda r: (r["metadata"].get("namespace", ""), r["metadata"].get("creationTimestamp")),
    )
    for r in order:
        spec, status = r.get("spec") or {}, r.get("status") or {}
        metadata = r["metadata"]
        row = [metadata.get("namespace", "-")] if namespaces else []
        row += [
            metadata["name"],
            _pipeline_of(r),
            (spec.get("revision") or {}).get("ref", "-"),
            status.get("shortSha") or "-",
            status.get("phase") or "Pending",
            waiting_for(r) or "-",
            status.get("currentStage") or "-",
            age(metadata.get("creationTimestamp"), now),
            status.get("duration") or "-",
        ]
        if wide:
            annotations = metadata.get("annotations") or {}
            row += [
                spec.get("pipelineSource") or "api",
                annotations.get(ANNOTATION_INITIATOR) or "-",
                summary_text(run_tests(r)) or "-",
                (succeeded_condition(r).get("message") or "-")[:80],
            ]
        rows.append(row)
    headers = ["NAMESPACE"] if namespaces else []
    headers += ["NAME", "PIPELINE", "REF", "SHA", "STATUS", "WAITING", "STAGE", "AGE", "DURATION"]
    if wide:
        headers += ["SOURCE", "INITIATOR", "TESTS", "MESSAGE"]
    return table(headers, rows)


def job_tests(job: Mapping[str, Any]) -> JunitSummary | None:
    """A job status' test summary (status.jobs[].tests), or None."""
    tests = job.get("tests")
    if not tests:
        return None
    try:
        return from_dict(JunitSummary, tests)
    except ModelError:
        return None  # a status written by another version: not worth failing the command


def run_tests(run: Mapping[str, Any]) -> JunitSummary | None:
    """The test summary of the whole run: its jobs' summed; None when no job reported tests."""
    summaries = [t for j in (run.get("status") or {}).get("jobs") or () if (t := job_tests(j))]
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


def _took(job: Mapping[str, Any], now: datetime.datetime | None) -> str:
    start, end = job.get("startTime"), job.get("completionTime")
    if start and end:
        return format_duration((parse_time(end) - parse_time(start)).total_seconds())
    if start and now is not None and job.get("phase") == "Running":
        return format_duration((now - parse_time(start)).total_seconds())
    return "-"


def jobs_table(
    run: Mapping[str, Any], *, wide: bool = False, now: datetime.datetime | None = None
) -> str:
    rows = []
    jobs = (run.get("status") or {}).get("jobs") or []
    # The TESTS column only when some job has JUnit reports: other runs keep their layout.
    with_tests = any(job_tests(j) for j in jobs)
    for j in jobs:
        exit_code = j.get("exitCode")
        row = [
            j["name"],
            j.get("stage", "-"),
            j.get("phase", "-") + (" (allowed)" if j.get("allowedFailure") else ""),
            str(j.get("attempt") or "-"),
            "-" if exit_code is None else str(exit_code),
            j.get("reason") or "-",
            j.get("jobName") or "-",
            _took(j, now),
        ]
        if with_tests:
            row.append(summary_text(job_tests(j)) or "-")
        if wide:
            row += [j.get("environment") or "-", (j.get("message") or "-")[:80]]
        rows.append(row)
    headers = ["JOB", "STAGE", "STATUS", "ATTEMPT", "EXIT", "REASON", "K8S JOB", "DURATION"]
    if with_tests:
        headers.append("TESTS")
    if wide:
        headers += ["ENVIRONMENT", "MESSAGE"]
    return table(headers, rows)


def run_summary(run: Mapping[str, Any], *, wide: bool = False, now: datetime.datetime) -> str:
    """`conveyor get RUN`: the run's state on two lines, then its jobs."""
    status = run.get("status") or {}
    succeeded = succeeded_condition(run)
    lines = [f"Run:      {run['metadata']['name']}   {status.get('phase') or 'Pending'}"]
    if succeeded.get("reason") or succeeded.get("message"):
        lines.append(
            f"Reason:   {succeeded.get('reason', '')}: {succeeded.get('message') or ''}".rstrip()
        )
    tests = run_tests(run)
    if tests is not None:
        lines.append(f"Tests:    {summary_text(tests)}")
    if status.get("jobs"):
        lines.append(jobs_table(run, wide=wide, now=now))
    lines += _failed_tests(status.get("jobs") or ())
    return "\n".join(lines)


def _failed_tests(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """`Failed tests:` then `  JOB: classname.name`, the first ones each job recorded."""
    out = []
    for j in jobs:
        tests = job_tests(j)
        if tests is None:
            continue
        out += [f"  {j['name']}: {name}" for name in tests.failed_tests]
        out += [f"  {j['name']}: unreadable report {why}" for why in tests.unreadable]
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
    run: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> str:
    """`conveyor describe RUN`: everything about a run a person asks first, as kubectl describe
    lays it out: its identity, its state and why, each job with its failure's own message, its
    approvals, what it deployed, and its events."""
    metadata = run["metadata"]
    spec, status = run.get("spec") or {}, run.get("status") or {}
    annotations = metadata.get("annotations") or {}
    revision = spec.get("revision") or {}
    succeeded = succeeded_condition(run)
    evaluation = status.get("evaluation") or {}
    created = metadata.get("creationTimestamp")
    lines = [
        _field("Name", metadata["name"]),
        _field("Namespace", metadata.get("namespace")),
        _field("Pipeline", _pipeline_of(run)),
        _field("Ref", revision.get("ref")),
        _field("Commit", revision.get("sha") or evaluation.get("sha")),
        _field("Before", revision.get("beforeSha")),
        _field("Source", spec.get("pipelineSource") or "api"),
        _field("Started by", annotations.get(ANNOTATION_INITIATOR)),
    ]
    if annotations.get(ANNOTATION_CANCELLED_BY):
        lines.append(_field("Cancelled by", annotations[ANNOTATION_CANCELLED_BY]))
    if annotations.get(ANNOTATION_RERUN_OF):
        lines.append(_field("Rerun of", annotations[ANNOTATION_RERUN_OF]))
    lines += [
        _field("Created", f"{created} ({age(created, now)} ago)"),
        _field("Started", status.get("startTime")),
        _field("Completed", status.get("completionTime")),
        _field("Duration", status.get("duration")),
        _field("Status", status.get("phase") or "Pending"),
        _field("Reason", succeeded.get("reason")),
        _field("Message", succeeded.get("message")),
    ]
    variables = spec.get("variables") or {}
    if variables:
        lines.append("Variables:")
        lines += [f"  {k}={v}" for k, v in sorted(variables.items())]
    retries = spec.get("retry") or ()
    if retries:
        lines.append(
            _field(
                "Retried", ", ".join(f"{r['job']} (after attempt {r['attempt']})" for r in retries)
            )
        )
    jobs = status.get("jobs") or ()
    if jobs:
        lines += ["", "Jobs:", _indent(jobs_table(run, now=now))]
        failures = [j for j in jobs if j.get("phase") == "Failed"]
        if failures:
            lines += ["", "Failures:"]
            for j in failures:
                why = j.get("message") or j.get("reason") or "failed"
                code = f", exit code {j['exitCode']}" if j.get("exitCode") is not None else ""
                allowed = " (failure allowed)" if j.get("allowedFailure") else ""
                lines.append(
                    f"  {j['name']} (attempt {j.get('attempt') or 1}{code}){allowed}: {why}"
                )
        failed_tests = _failed_tests(jobs)
        if failed_tests:
            lines += ["", *failed_tests]
        kept = [(j["name"], a) for j in jobs for a in j.get("artifacts") or ()]
        if kept:
            lines += ["", "Artifacts:"]
            rows = [
                [
                    name,
                    a.get("name", "-"),
                    a.get("kind") or "archive",
                    _size(int(a.get("size") or 0)),
                    (a.get("digest") or "-")[:19],
                    a.get("expiresAt") or "never",
                ]
                for name, a in kept
            ]
            lines.append(_indent(table(["JOB", "FILE", "KIND", "SIZE", "DIGEST", "EXPIRES"], rows)))
    if approvals:
        lines += ["", "Approvals:"]
        rows = []
        for a in sorted(approvals, key=lambda a: a["metadata"].get("creationTimestamp") or ""):
            a_spec, a_status = a.get("spec") or {}, a.get("status") or {}
            votes = a_status.get("votes") or ()
            voters = ", ".join(f"{v.get('user')}: {v.get('decision')}" for v in votes) or "-"
            rows.append(
                [
                    a["metadata"]["name"],
                    a_spec.get("job", "-"),
                    a_spec.get("environment", "-"),
                    a_status.get("decision") or "Pending",
                    voters,
                ]
            )
        lines.append(_indent(table(["APPROVAL", "JOB", "ENVIRONMENT", "DECISION", "VOTES"], rows)))
    deployments = status.get("deployments") or ()
    if deployments:
        lines += ["", "Deployments:"]
        for d in deployments:
            lines.append(
                f"  {d['job']} -> {d['environment']} (namespace {d['namespace']}): "
                f"{d['result']}, version {d.get('version', '-')}"
                + (f": {d['message']}" if d.get("message") else "")
            )
    lines += ["", "Events:"]
    if not events:
        lines.append("  <none>")
    else:
        rows = []
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            rows.append(
                [
                    e.get("type") or "-",
                    e.get("reason") or "-",
                    age(e.get("lastTimestamp") or e.get("eventTime"), now),
                    " ".join(str(e.get("message") or "").split()),
                ]
            )
        lines.append(_indent(table(["TYPE", "REASON", "AGE", "MESSAGE"], rows)))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
