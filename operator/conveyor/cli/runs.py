"""`conveyor run|get|cancel|play`: start, watch and steer PipelineRuns."""

from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Sequence
from typing import Any

from conveyor.api import API_VERSION, parse_time
from conveyor.api.durations import format_duration
from conveyor.api.pipelinerun import CANCELLED, FINISHED_PHASES, MANUAL, REASON_DELAYED
from conveyor.cli.common import add_cluster_options, fail, kube_command
from conveyor.engine.environments import resolve_environment
from conveyor.kube.client import Kube

SHA = re.compile(r"^[0-9a-f]{40}$")
VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="start a run of a Pipeline; prints the run's name",
        description="Create a PipelineRun of PIPELINE at a revision and print its name.",
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="name of the Pipeline")
    run.add_argument("--ref", required=True, help="branch or tag to build")
    run.add_argument("--sha", help="commit to build (40 hex digits)")
    run.add_argument(
        "--before",
        metavar="SHA",
        help="previous commit of the ref (beforeSha); the run is then a push (implies --push)",
    )
    run.add_argument(
        "--push",
        action="store_true",
        help="the run models a git push (pipelineSource push): `changes` rules compare the "
        "commit with --before, or with its parent; without it, as in GitLab's web and API "
        "pipelines, every `changes` rule is true",
    )
    run.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a run variable (repeatable); it overrides every other variable",
    )
    add_cluster_options(run)
    run.set_defaults(func=kube_command(cmd_run))

    get = subparsers.add_parser(
        "get",
        help="list runs, or show one run's jobs",
        description="Without RUN: the runs in the namespace. With RUN: that run's jobs.",
    )
    get.add_argument("run", metavar="RUN", nargs="?", help="name of a PipelineRun")
    add_cluster_options(get)
    get.set_defaults(func=kube_command(cmd_get))

    cancel = subparsers.add_parser(
        "cancel",
        help="cancel a run",
        description="Cancel RUN: its running Jobs are deleted and it ends Cancelled.",
    )
    cancel.add_argument("run", metavar="RUN")
    add_cluster_options(cancel)
    cancel.set_defaults(func=kube_command(cmd_cancel))

    play = subparsers.add_parser(
        "play",
        help="start a manual (or delayed) job of a run",
        description="Release JOB of RUN, a job with `when: manual`, to run; or start a "
        "`when: delayed` job now instead of at its time.",
    )
    play.add_argument("run", metavar="RUN")
    play.add_argument("job", metavar="JOB")
    add_cluster_options(play)
    play.set_defaults(func=kube_command(cmd_play))


def run_manifest(
    pipeline: str,
    ref: str,
    sha: str | None,
    before: str | None,
    variables: dict[str, str],
    *,
    push: bool = False,
) -> dict[str, Any]:
    revision: dict[str, str] = {"ref": ref}
    if sha:
        revision["sha"] = sha
    if before:
        revision["beforeSha"] = before
    spec: dict[str, Any] = {"pipelineRef": {"name": pipeline}, "revision": revision}
    if push or before:
        spec["pipelineSource"] = "push"  # a before SHA is a push's; default: api
    if variables:
        spec["variables"] = variables
    # generateName keeps names unique; the CRD caps run names at 63 characters.
    prefix = pipeline[:50].rstrip("-.") + "-"
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"generateName": prefix},
        "spec": spec,
    }


def cmd_run(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    for sha in (args.sha, args.before):
        if sha and not SHA.match(sha):
            return fail(f"{sha!r} is not a full commit SHA (40 lowercase hex digits)", 2)
    variables: dict[str, str] = {}
    for item in args.var:
        m = VARIABLE.match(item)
        if not m:
            return fail(
                f"--var {item!r}: expected KEY=VALUE with KEY like [A-Za-z_][A-Za-z0-9_]*", 2
            )
        variables[m.group(1)] = m.group(2)
    created = kube.create_run(
        ns,
        run_manifest(args.pipeline, args.ref, args.sha, args.before, variables, push=args.push),
    )
    print(created["metadata"]["name"])
    return 0


def _age(stamp: str | None, now: datetime.datetime) -> str:
    if not stamp:
        return "-"
    return format_duration(max(0, int((now - parse_time(stamp)).total_seconds())))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def runs_table(runs: Sequence[dict[str, Any]], now: datetime.datetime) -> str:
    rows = []
    for r in sorted(runs, key=lambda r: r["metadata"].get("creationTimestamp", "")):
        spec, status = r.get("spec") or {}, r.get("status") or {}
        rows.append(
            [
                r["metadata"]["name"],
                status.get("pipelineName") or (spec.get("pipelineRef") or {}).get("name", "-"),
                (spec.get("revision") or {}).get("ref", "-"),
                status.get("shortSha") or "-",
                status.get("phase") or "Pending",
                status.get("currentStage") or "-",
                _age(r["metadata"].get("creationTimestamp"), now),
                status.get("duration") or "-",
            ]
        )
    headers = ["NAME", "PIPELINE", "REF", "SHA", "STATUS", "STAGE", "AGE", "DURATION"]
    return table(headers, rows)


def jobs_table(run: dict[str, Any]) -> str:
    rows = []
    for j in (run.get("status") or {}).get("jobs") or []:
        start, end = j.get("startTime"), j.get("completionTime")
        took = (
            format_duration(int((parse_time(end) - parse_time(start)).total_seconds()))
            if start and end
            else "-"
        )
        exit_code = j.get("exitCode")
        rows.append(
            [
                j["name"],
                j.get("stage", "-"),
                j.get("phase", "-") + (" (allowed)" if j.get("allowedFailure") else ""),
                str(j.get("attempt") or "-"),
                "-" if exit_code is None else str(exit_code),
                j.get("reason") or "-",
                j.get("jobName") or "-",
                took,
            ]
        )
    headers = ["JOB", "STAGE", "STATUS", "ATTEMPT", "EXIT", "REASON", "K8S JOB", "DURATION"]
    return table(headers, rows)


def cmd_get(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    now = datetime.datetime.now(datetime.UTC)
    if args.run is None:
        runs = kube.list_runs(ns)
        if not runs:
            print(f"No PipelineRuns in namespace {ns}.")
            return 0
        print(runs_table(runs, now))
        return 0
    run = kube.get_run(ns, args.run)
    status = run.get("status") or {}
    succeeded = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {}
    )
    print(f"Run:      {args.run}   {status.get('phase') or 'Pending'}")
    if succeeded.get("reason") or succeeded.get("message"):
        print(f"Reason:   {succeeded.get('reason', '')}: {succeeded.get('message') or ''}".rstrip())
    if status.get("jobs"):
        print(jobs_table(run))
    return 0


def cmd_cancel(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    run = kube.get_run(ns, args.run)
    phase = (run.get("status") or {}).get("phase")
    if phase in FINISHED_PHASES:
        return fail(f"run {args.run} has already finished ({phase}); nothing to cancel")
    kube.patch_run(ns, args.run, {"spec": {"status": CANCELLED}})
    print(f"{args.run}: cancel requested")
    return 0


def _gate(kube: Kube, ns: str, entry: dict[str, Any]) -> str | None:
    """The protected environment a job deploys to, if any (the operator ignores a play of
    such a job: only its Approval releases it)."""
    environment = entry.get("environment")
    if not environment:
        return None
    body = resolve_environment(environment, kube.list_environments(ns)) or {}
    protection = (body.get("spec") or {}).get("protection") or {}
    return environment if int(protection.get("requiredApprovals") or 0) > 0 else None


def cmd_play(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    run = kube.get_run(ns, args.run)
    jobs = {j["name"]: j for j in (run.get("status") or {}).get("jobs") or []}
    if args.job not in jobs:
        known = ", ".join(sorted(jobs)) or "none yet"
        return fail(f"run {args.run} has no job {args.job!r} (jobs: {known})")
    entry = jobs[args.job]
    if entry.get("phase") != MANUAL and entry.get("reason") != REASON_DELAYED:
        return fail(
            f"job {args.job!r} of run {args.run} is not waiting to be played "
            f"(it is {entry.get('phase')})"
        )
    gate = _gate(kube, ns, entry)
    if gate is not None:
        return fail(
            f"job {args.job!r} of run {args.run} deploys to {gate}, which requires approval: "
            f"play does not release it; it starts once approved (conveyor approve {args.run})"
        )
    play = list((run.get("spec") or {}).get("play") or [])
    if args.job not in play:
        # resourceVersion: a concurrent play of another job must not be overwritten.
        kube.patch_run(
            ns,
            args.run,
            {
                "metadata": {"resourceVersion": run["metadata"]["resourceVersion"]},
                "spec": {"play": [*play, args.job]},
            },
        )
    print(f"{args.run}: {args.job} released")
    return 0
