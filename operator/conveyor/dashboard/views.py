"""What the dashboard shows, as JSON (pure: objects in, dictionaries out).

A run is drawn as GitLab draws a pipeline: one column per stage that has jobs, in the pipeline's
stage order, a box per job coloured by its status, and an edge for each `needs`. The layout
(every box's and edge's coordinates) is computed here, so the page only places what it is given
and the layout is tested without a browser.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from conveyor.api.approval import FINAL_DECISIONS, PENDING, Approval
from conveyor.api.pipeline import DEFAULT_STAGE, DEFAULT_STAGES, PipelineJob, PipelineSpec
from conveyor.api.pipelinerun import (
    FINISHED_PHASES,
    JOB_FINISHED_PHASES,
    JobStatus,
    PipelineRun,
)
from conveyor.cli.objects import spec_of
from conveyor.cli.views import age, pipeline_of, stamp, succeeded_condition, waiting_for

# Box and gap sizes, in CSS pixels.
BOX_WIDTH = 184
BOX_HEIGHT = 44
COLUMN_GAP = 72
ROW_GAP = 14
HEADER_HEIGHT = 36
PADDING = 16

# The status a box shows (its CSS class `status-<status>`), as GitLab names them.
SUCCESS, FAILED, WARNING, RUNNING, PENDING_STATUS, CREATED = (
    "success",
    "failed",
    "warning",  # failed, and the failure is allowed
    "running",
    "pending",
    "created",  # in the pipeline, no status yet
)
MANUAL, SCHEDULED, APPROVAL, SKIPPED, CANCELED = (
    "manual",
    "scheduled",  # `when: delayed`, waiting for its time
    "approval",  # waits for an Approval of its environment
    "skipped",
    "canceled",
)
STATUSES = (
    SUCCESS,
    FAILED,
    WARNING,
    RUNNING,
    PENDING_STATUS,
    CREATED,
    MANUAL,
    SCHEDULED,
    APPROVAL,
    SKIPPED,
    CANCELED,
)


def run_row(run: PipelineRun, now: datetime.datetime) -> dict[str, Any]:
    """A run as a line of the list: namespace, name, pipeline, ref, phase and what it waits
    for, age."""
    metadata, revision, status = run.metadata, spec_of(run).revision, run.status
    return {
        "namespace": metadata.namespace or "",
        "name": run.name,
        "pipeline": pipeline_of(run),
        "ref": revision.ref,
        "sha": status.short_sha or (revision.sha or "")[:8],
        "phase": status.phase or "Pending",
        "waiting": waiting_for(run),
        "stage": status.current_stage,
        "created": stamp(metadata.creation_timestamp) or "",
        "age": age(metadata.creation_timestamp, now),
        "duration": status.duration,
        "resourceVersion": metadata.resource_version,
    }


def run_rows(runs: Iterable[PipelineRun], now: datetime.datetime) -> list[dict[str, Any]]:
    """The list of runs, newest first (then by namespace and name, for a stable order)."""
    rows = [run_row(r, now) for r in runs]
    rows.sort(key=lambda r: (r["namespace"], r["name"]))
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows


def frozen_spec(run: PipelineRun, pipeline: PipelineSpec | None = None) -> PipelineSpec | None:
    """The pipeline the run runs: the one recorded at its start, else its inline spec, else
    (before it starts) the Pipeline's current spec, else nothing."""
    return run.status.pipeline_spec or spec_of(run).pipeline_spec or pipeline


def _own(run: PipelineRun, approval: Approval) -> bool:
    """An Approval counts only for the run it was made for: its name and its UID."""
    spec = spec_of(approval)
    return spec.pipeline_run == run.name and spec.run_uid == run.metadata.uid


def pending_approvals(run: PipelineRun, approvals: Iterable[Approval]) -> dict[str, Approval]:
    """The run's undecided Approvals, by the job they gate."""
    return {
        spec_of(a).job: a
        for a in approvals
        if _own(run, a) and (a.status.decision or PENDING) not in FINAL_DECISIONS
    }


def job_status(job: JobStatus | None, gated: bool) -> str:
    """The status a job's box shows, from its `status.jobs[]` entry (None: it has none yet)."""
    if job is None:
        return CREATED
    phase = job.phase
    if phase == "Succeeded":
        return SUCCESS
    if phase == "Failed":
        return WARNING if job.allowed_failure else FAILED
    if phase == "Running":
        return RUNNING
    if phase == "Skipped":
        return SKIPPED
    if phase == "Cancelled":
        return CANCELED
    if phase == "Manual":
        if gated:
            return APPROVAL
        return SCHEDULED if job.reason == "Delayed" else MANUAL
    if phase == "Pending":
        return SCHEDULED if job.reason == "Delayed" else PENDING_STATUS
    return CREATED


def job_actions(run: PipelineRun, job: JobStatus | None, gated: bool) -> list[str]:
    """The buttons a job's box offers; the API server and the CLI's own checks still decide."""
    if gated:
        return ["approve", "reject"]
    if spec_of(run).cancelled or job is None:
        return []
    if job.phase == "Manual" or job.reason == "Delayed":
        return ["play"]
    if job.phase == "Failed" and job.attempt:
        return ["retry"]
    return []


def _stages(spec: PipelineSpec | None, used: Sequence[str]) -> list[str]:
    """The stages that have jobs, in the pipeline's order (stages no list names last)."""
    order = list(spec.stages if spec is not None else DEFAULT_STAGES)
    for stage in used:
        if stage not in order:
            order.append(stage)
    return [s for s in order if s in used]


def _needs(spec_job: PipelineJob | None, present: set[str]) -> list[str]:
    """What the job waits for instead of stages: `needs`, and the optional needs the run has."""
    if spec_job is None:
        return []
    return [n for n in spec_job.dag_needs(present) or () if n in present]


def _edge_path(a: Mapping[str, int], b: Mapping[str, int]) -> str:
    """An SVG path from box `a` to box `b`: right side to left side, a smooth S; boxes in one
    column (a need within a stage) are joined by an arc on their right."""
    ay, by = a["y"] + a["h"] // 2, b["y"] + b["h"] // 2
    if a["x"] < b["x"]:
        x1, x2 = a["x"] + a["w"], b["x"]
        mid = (x1 + x2) // 2
        return f"M {x1} {ay} C {mid} {ay}, {mid} {by}, {x2} {by}"
    x1 = a["x"] + a["w"]
    x2 = b["x"] + b["w"]
    bulge = max(x1, x2) + COLUMN_GAP // 2
    return f"M {x1} {ay} C {bulge} {ay}, {bulge} {by}, {x2} {by}"


def _job_box(job: JobStatus | None, spec_job: PipelineJob | None) -> dict[str, Any]:
    """What a job's box says of the job (its status entry, else its declaration)."""
    declared = spec_job.environment.name if spec_job and spec_job.environment else None
    if job is None:  # not started: the pipeline's job, no status yet
        return {
            "phase": "Created",
            **dict.fromkeys(("attempt", "reason", "message", "exitCode"), None),
            "environment": declared,
            **dict.fromkeys(("startTime", "completionTime", "scheduledAt"), None),
            "hasLog": False,
        }
    return {
        "phase": job.phase,
        "attempt": job.attempt,
        "reason": job.reason,
        "message": job.message,
        "exitCode": job.exit_code,
        "environment": job.environment or declared,
        "startTime": stamp(job.start_time),
        "completionTime": stamp(job.completion_time),
        "scheduledAt": stamp(job.scheduled_at),
        "hasLog": bool(job.job_name) or job.phase in JOB_FINISHED_PHASES,
    }


def graph(
    run: PipelineRun,
    approvals: Iterable[Approval] = (),
    pipeline: PipelineSpec | None = None,
) -> dict[str, Any]:
    """The run's pipeline graph, laid out: `stages` (columns with their jobs' boxes), `edges`
    (one per need, with its SVG path), `width` and `height`."""
    spec = frozen_spec(run, pipeline)
    spec_jobs = {j.name: j for j in spec.jobs} if spec is not None else {}
    jobs: list[tuple[str, str, JobStatus | None]] = [(j.name, j.stage, j) for j in run.status.jobs]
    if not jobs:  # not started: the pipeline's jobs, no status yet
        jobs = [(name, j.stage or DEFAULT_STAGE, None) for name, j in spec_jobs.items()]
    gates = pending_approvals(run, approvals)
    stages = _stages(spec, [stage for _, stage, _ in jobs])
    boxes: dict[str, dict[str, Any]] = {}
    columns: list[dict[str, Any]] = []
    for column, stage in enumerate(stages):
        x = PADDING + column * (BOX_WIDTH + COLUMN_GAP)
        members = [(name, j) for name, in_stage, j in jobs if in_stage == stage]
        stage_boxes = []
        for row, (name, j) in enumerate(members):
            gated = name in gates
            box = {
                "name": name,
                "stage": stage,
                "status": job_status(j, gated),
                **_job_box(j, spec_jobs.get(name)),
                "actions": job_actions(run, j, gated),
                "approval": gates[name].name if gated else None,
                "x": x,
                "y": HEADER_HEIGHT + PADDING + row * (BOX_HEIGHT + ROW_GAP),
                "w": BOX_WIDTH,
                "h": BOX_HEIGHT,
            }
            boxes[name] = box
            stage_boxes.append(box)
        columns.append({"name": stage, "x": x, "jobs": stage_boxes})
    present = set(boxes)
    edges = []
    for name, _, _ in jobs:
        for need in _needs(spec_jobs.get(name), present):
            edges.append({"from": need, "to": name, "path": _edge_path(boxes[need], boxes[name])})
    rows = max((len(c["jobs"]) for c in columns), default=0)
    width = PADDING * 2 + len(columns) * BOX_WIDTH + max(0, len(columns) - 1) * COLUMN_GAP
    # Room on the right for an arc between boxes of the last column.
    width += COLUMN_GAP // 2 + 8
    height = HEADER_HEIGHT + PADDING * 2 + rows * BOX_HEIGHT + max(0, rows - 1) * ROW_GAP
    return {"stages": columns, "edges": edges, "width": width, "height": height}


def approval_view(approval: Approval) -> dict[str, Any]:
    spec, status = spec_of(approval), approval.status
    return {
        "name": approval.name,
        "job": spec.job,
        "environment": spec.environment,
        "required": spec.required_approvals,
        "approvers": list(spec.approvers),
        "decision": status.decision or PENDING,
        "approvals": status.approvals,
        "votes": [
            {"user": v.user, "decision": v.decision, "comment": v.comment} for v in status.votes
        ],
        "expiresAt": stamp(spec.expires_at),
    }


def run_view(
    run: PipelineRun,
    approvals: Iterable[Approval],
    pipeline: PipelineSpec | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """Everything the run's page shows: its line, why it is in its phase, its graph and its
    Approvals."""
    condition = succeeded_condition(run.status)
    own = sorted(
        (a for a in approvals if _own(run, a)),
        key=lambda a: stamp(a.metadata.creation_timestamp) or "",
    )
    spec = spec_of(run)
    return {
        **run_row(run, now),
        "reason": condition.reason if condition is not None else None,
        "message": condition.message if condition is not None else None,
        "finished": run.status.phase in FINISHED_PHASES,
        "cancelled": spec.cancelled,
        "variables": dict(spec.variables),
        "graph": graph(run, own, pipeline),
        "approvals": [approval_view(a) for a in own],
    }
