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

from conveyor.api.approval import FINAL_DECISIONS, PENDING
from conveyor.api.pipeline import DEFAULT_STAGE, DEFAULT_STAGES
from conveyor.api.pipelinerun import FINISHED_PHASES, JOB_FINISHED_PHASES
from conveyor.cli.views import age, succeeded_condition, waiting_for

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


def _created(stamp: str | None) -> str:
    return stamp or ""


def run_row(run: Mapping[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """A run as a line of the list: namespace, name, pipeline, ref, phase and what it waits
    for, age."""
    metadata = run["metadata"]
    spec, status = run.get("spec") or {}, run.get("status") or {}
    return {
        "namespace": metadata.get("namespace") or "",
        "name": metadata["name"],
        "pipeline": pipeline_name(run),
        "ref": (spec.get("revision") or {}).get("ref") or "-",
        "sha": status.get("shortSha") or ((spec.get("revision") or {}).get("sha") or "")[:8],
        "phase": status.get("phase") or "Pending",
        "waiting": waiting_for(run),
        "stage": status.get("currentStage"),
        "created": _created(metadata.get("creationTimestamp")),
        "age": age(metadata.get("creationTimestamp"), now),
        "duration": status.get("duration"),
        "resourceVersion": metadata.get("resourceVersion"),
    }


def run_rows(runs: Iterable[Mapping[str, Any]], now: datetime.datetime) -> list[dict[str, Any]]:
    """The list of runs, newest first (then by namespace and name, for a stable order)."""
    rows = [run_row(r, now) for r in runs]
    rows.sort(key=lambda r: (r["namespace"], r["name"]))
    rows.sort(key=lambda r: r["created"], reverse=True)
    return rows


def pipeline_name(run: Mapping[str, Any]) -> str:
    spec, status = run.get("spec") or {}, run.get("status") or {}
    if status.get("pipelineName"):
        return str(status["pipelineName"])
    if spec.get("pipelineSpec") is not None:
        return "(inline)"
    return str((spec.get("pipelineRef") or {}).get("name") or "-")


def frozen_spec(
    run: Mapping[str, Any], pipeline: Mapping[str, Any] | None = None
) -> Mapping[str, Any]:
    """The pipeline the run runs: the one recorded at its start, else its inline spec, else
    (before it starts) the Pipeline's current spec, else nothing."""
    status, spec = run.get("status") or {}, run.get("spec") or {}
    return status.get("pipelineSpec") or spec.get("pipelineSpec") or pipeline or {}


def pending_approvals(
    run: Mapping[str, Any], approvals: Iterable[Mapping[str, Any]]
) -> dict[str, Mapping[str, Any]]:
    """The run's undecided Approvals, by the job they gate (an Approval counts only for the
    run it was made for: its runUID)."""
    uid = run["metadata"].get("uid")
    name = run["metadata"]["name"]
    out: dict[str, Mapping[str, Any]] = {}
    for a in approvals:
        spec = a.get("spec") or {}
        if spec.get("runUID") not in (None, uid) or spec.get("pipelineRun") != name:
            continue
        if ((a.get("status") or {}).get("decision") or PENDING) in FINAL_DECISIONS:
            continue
        out[spec.get("job") or ""] = a
    return out


def job_status(job: Mapping[str, Any], gated: bool) -> str:
    """The status a job's box shows, from its `status.jobs[]` entry."""
    phase = job.get("phase")
    if phase == "Succeeded":
        return SUCCESS
    if phase == "Failed":
        return WARNING if job.get("allowedFailure") else FAILED
    if phase == "Running":
        return RUNNING
    if phase == "Skipped":
        return SKIPPED
    if phase == "Cancelled":
        return CANCELED
    if phase == "Manual":
        if gated:
            return APPROVAL
        return SCHEDULED if job.get("reason") == "Delayed" else MANUAL
    if phase == "Pending":
        return SCHEDULED if job.get("reason") == "Delayed" else PENDING_STATUS
    return CREATED


def job_actions(run: Mapping[str, Any], job: Mapping[str, Any], gated: bool) -> list[str]:
    """The buttons a job's box offers; the API server and the CLI's own checks still decide."""
    phase = job.get("phase")
    cancelled = (run.get("spec") or {}).get("status") == "Cancelled"
    if gated:
        return ["approve", "reject"]
    if cancelled:
        return []
    if phase == "Manual" or job.get("reason") == "Delayed":
        return ["play"]
    if phase == "Failed" and job.get("attempt"):
        return ["retry"]
    return []


def _stages(spec: Mapping[str, Any], jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The stages that have jobs, in the pipeline's order (stages no list names last)."""
    order = list(spec.get("stages") or DEFAULT_STAGES)
    used = [j["stage"] for j in jobs]
    for stage in used:
        if stage not in order:
            order.append(stage)
    return [s for s in order if s in used]


def _needs(spec_job: Mapping[str, Any] | None, present: set[str]) -> list[str]:
    """What the job waits for instead of stages: `needs`, and the optional needs the run has
    (PipelineJob.dag_needs, on the JSON form)."""
    if spec_job is None:
        return []
    required = list(spec_job.get("needs") or ())
    optional = [n for n in spec_job.get("optionalNeeds") or () if n in present]
    return [n for n in dict.fromkeys(required + optional) if n in present]


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


def graph(
    run: Mapping[str, Any],
    approvals: Iterable[Mapping[str, Any]] = (),
    pipeline: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's pipeline graph, laid out: `stages` (columns with their jobs' boxes), `edges`
    (one per need, with its SVG path), `width` and `height`."""
    spec = frozen_spec(run, pipeline)
    spec_jobs = {j["name"]: j for j in spec.get("jobs") or () if "name" in j}
    status_jobs = list((run.get("status") or {}).get("jobs") or ())
    if status_jobs:
        jobs = [dict(j) for j in status_jobs]
    else:  # not started: the pipeline's jobs, no status yet
        jobs = [
            {"name": name, "stage": j.get("stage") or DEFAULT_STAGE}
            for name, j in spec_jobs.items()
        ]
    for j in jobs:
        j.setdefault("stage", (spec_jobs.get(j["name"]) or {}).get("stage") or DEFAULT_STAGE)
    gates = pending_approvals(run, approvals)
    stages = _stages(spec, jobs)
    boxes: dict[str, dict[str, Any]] = {}
    columns: list[dict[str, Any]] = []
    for column, stage in enumerate(stages):
        x = PADDING + column * (BOX_WIDTH + COLUMN_GAP)
        members = [j for j in jobs if j["stage"] == stage]
        stage_boxes = []
        for row, j in enumerate(members):
            gated = j["name"] in gates
            box = {
                "name": j["name"],
                "stage": stage,
                "status": job_status(j, gated),
                "phase": j.get("phase") or "Created",
                "attempt": j.get("attempt"),
                "reason": j.get("reason"),
                "message": j.get("message"),
                "exitCode": j.get("exitCode"),
                "environment": j.get("environment")
                or ((spec_jobs.get(j["name"]) or {}).get("environment") or {}).get("name"),
                "startTime": j.get("startTime"),
                "completionTime": j.get("completionTime"),
                "scheduledAt": j.get("scheduledAt"),
                "hasLog": bool(j.get("jobName")) or j.get("phase") in JOB_FINISHED_PHASES,
                "actions": job_actions(run, j, gated),
                "approval": (gates[j["name"]]["metadata"]["name"] if gated else None),
                "x": x,
                "y": HEADER_HEIGHT + PADDING + row * (BOX_HEIGHT + ROW_GAP),
                "w": BOX_WIDTH,
                "h": BOX_HEIGHT,
            }
            boxes[j["name"]] = box
            stage_boxes.append(box)
        columns.append({"name": stage, "x": x, "jobs": stage_boxes})
    present = set(boxes)
    edges = []
    for j in jobs:
        for need in _needs(spec_jobs.get(j["name"]), present):
            edges.append(
                {
                    "from": need,
                    "to": j["name"],
                    "path": _edge_path(boxes[need], boxes[j["name"]]),
                }
            )
    rows = max((len(c["jobs"]) for c in columns), default=0)
    width = PADDING * 2 + len(columns) * BOX_WIDTH + max(0, len(columns) - 1) * COLUMN_GAP
    # Room on the right for an arc between boxes of the last column.
    width += COLUMN_GAP // 2 + 8
    height = HEADER_HEIGHT + PADDING * 2 + rows * BOX_HEIGHT + max(0, rows - 1) * ROW_GAP
    return {"stages": columns, "edges": edges, "width": width, "height": height}


def approval_view(approval: Mapping[str, Any]) -> dict[str, Any]:
    spec, status = approval.get("spec") or {}, approval.get("status") or {}
    return {
        "name": approval["metadata"]["name"],
        "job": spec.get("job"),
        "environment": spec.get("environment"),
        "required": spec.get("requiredApprovals"),
        "approvers": list(spec.get("approvers") or ()),
        "decision": status.get("decision") or PENDING,
        "approvals": status.get("approvals"),
        "votes": [
            {"user": v.get("user"), "decision": v.get("decision"), "comment": v.get("comment")}
            for v in status.get("votes") or ()
        ],
        "expiresAt": spec.get("expiresAt"),
    }


def run_view(
    run: Mapping[str, Any],
    approvals: Iterable[Mapping[str, Any]],
    pipeline: Mapping[str, Any] | None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """Everything the run's page shows: its line, why it is in its phase, its graph and its
    Approvals."""
    approvals = list(approvals)
    condition = succeeded_condition(run)
    uid = run["metadata"].get("uid")
    own = [
        a
        for a in approvals
        if (a.get("spec") or {}).get("pipelineRun") == run["metadata"]["name"]
        and (a.get("spec") or {}).get("runUID") in (None, uid)
    ]
    own.sort(key=lambda a: a["metadata"].get("creationTimestamp") or "")
    spec = run.get("spec") or {}
    return {
        **run_row(run, now),
        "reason": condition.get("reason"),
        "message": condition.get("message"),
        "finished": (run.get("status") or {}).get("phase") in FINISHED_PHASES,
        "cancelled": spec.get("status") == "Cancelled",
        "variables": dict(spec.get("variables") or {}),
        "graph": graph(run, own, pipeline),
        "approvals": [approval_view(a) for a in own],
    }
