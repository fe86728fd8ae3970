"""`conveyor run|get|describe|cancel|play|retry|rerun`: start, watch and steer PipelineRuns."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.api.codec import to_dict
from conveyor.api.environment import Environment
from conveyor.api.meta import API_VERSION
from conveyor.api.pipelinerun import JobStatus, PipelineRun, RetryRequest
from conveyor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_cluster_options,
    fail,
    kube_command,
)
from conveyor.cli.objects import Unreadable, get_run, list_approvals, parse, parse_each, spec_of
from conveyor.cli.views import (
    ANNOTATION_RERUN_OF,
    FINISHED,
    OUTPUTS,
    describe,
    names,
    run_summary,
    runs_table,
    serialized,
    succeeded_condition,
)

if TYPE_CHECKING:
    from conveyor.kube.client import Kube

SHA = re.compile(r"^[0-9a-f]{40}$")
VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
MANUAL, DELAYED, FAILED, CANCELLED = "Manual", "Delayed", "Failed", "Cancelled"
# Phases a run ends in that count as success for `--wait`.
SUCCESSFUL = frozenset({"Succeeded", "Skipped"})


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="start a run of a Pipeline; prints the run's name",
        description="Create a PipelineRun of PIPELINE at a revision and print its name. A "
        "Pipeline that does not exist (yet) is warned about: the run waits Pending until it "
        "is created, as one applied with kubectl would.",
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
    run.add_argument(
        "--wait",
        action="store_true",
        help="wait until the run ends; exit 0 if it succeeded (or was skipped), else 1. "
        "With no such Pipeline: create nothing and exit 1",
    )
    add_cluster_options(run)
    run.set_defaults(func=kube_command(cmd_run))

    get = subparsers.add_parser(
        "get",
        help="list runs, or show one run's jobs",
        description="Without RUN: the runs in the namespace (every namespace with -A). With "
        "RUN: that run's jobs. WAITING says what an unfinished run waits for "
        "(ManualActionRequired, WaitingForApproval, ...).",
    )
    get.add_argument("run", metavar="RUN", nargs="?", help="name of a PipelineRun")
    add_output_option(get)
    get.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="the runs of every namespace (needs the right to list them cluster-wide)",
    )
    get.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep printing as it changes: the run's job table until the run ends, or a line "
        "per changed run (Ctrl-C stops)",
    )
    add_cluster_options(get)
    get.set_defaults(func=kube_command(cmd_get))

    desc = subparsers.add_parser(
        "describe",
        help="everything about a run: state, jobs, failures, approvals, deploys, events",
        description="Show RUN as kubectl describe would: who started it, at which revision, "
        "its status and why, each job with its failure's message, its Approvals, what it "
        "deployed, and its events.",
    )
    desc.add_argument("run", metavar="RUN")
    add_cluster_options(desc)
    desc.set_defaults(func=kube_command(cmd_describe))

    cancel = subparsers.add_parser(
        "cancel",
        help="cancel a run",
        description="Cancel RUN: its running jobs are stopped (their Jobs and logs are kept "
        "until the run goes) and it ends Cancelled. The run records who cancelled it.",
    )
    cancel.add_argument("run", metavar="RUN")
    add_cluster_options(cancel)
    cancel.set_defaults(func=kube_command(cmd_cancel))

    play = subparsers.add_parser(
        "play",
        help="start a manual (or delayed) job of a run",
        description="Release JOB of RUN, a job with `when: manual`, to run; or start a "
        "`when: delayed` job now instead of at its time. A job whose environment requires "
        "approval is not released by play: only its Approval releases it.",
    )
    play.add_argument("run", metavar="RUN")
    play.add_argument("job", metavar="JOB")
    add_cluster_options(play)
    play.set_defaults(func=kube_command(cmd_play))

    retry = subparsers.add_parser(
        "retry",
        help="run failed jobs of a run again, in the same run",
        description="A new attempt of the failed jobs of RUN (or of the JOBs named), in the "
        "same run, keeping what succeeded; the jobs that were skipped because of them run "
        "after them, as in GitLab's retry. A finished run runs again. Jobs whose environment "
        "requires approval are refused: retry a run of them with `conveyor rerun`, which asks "
        "for a new approval.",
    )
    retry.add_argument("run", metavar="RUN")
    retry.add_argument("jobs", metavar="JOB", nargs="*", help="failed jobs (default: all)")
    add_cluster_options(retry)
    retry.set_defaults(func=kube_command(cmd_retry))

    rerun = subparsers.add_parser(
        "rerun",
        help="start a new run with the same pipeline, revision and variables",
        description="Create a new PipelineRun like RUN: the same Pipeline (or inline spec), "
        "the commit RUN built, the same variables and source; prints its name.",
    )
    rerun.add_argument("run", metavar="RUN")
    rerun.add_argument("--wait", action="store_true", help="as for `conveyor run --wait`")
    add_cluster_options(rerun)
    rerun.set_defaults(func=kube_command(cmd_rerun))


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        default="table",
        metavar="FORMAT",
        help="table (default), wide (more columns), json, yaml, or name",
    )


# -- pure: manifests and requests
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
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"generateName": _prefix(pipeline)},
        "spec": spec,
    }


def _prefix(name: str) -> str:
    # generateName keeps names unique; the CRD caps run names at 63 characters.
    return name[:50].rstrip("-.") + "-"


def rerun_manifest(run: PipelineRun) -> dict[str, Any]:
    """A new run like `run`: its pipeline, the commit it built (a run given only a ref built
    what the ref pointed to then), its variables and source. Nothing of its state is copied."""
    spec = spec_of(run)
    revision = to_dict(spec.revision)
    evaluation = run.status.evaluation
    if not spec.revision.sha and evaluation is not None and evaluation.sha:
        revision["sha"] = evaluation.sha
    new: dict[str, Any] = {"revision": revision}
    if spec.pipeline_ref is not None:
        new["pipelineRef"] = to_dict(spec.pipeline_ref)
    if spec.pipeline_spec is not None:
        new["pipelineSpec"] = to_dict(spec.pipeline_spec)
    if spec.variables:
        new["variables"] = dict(spec.variables)
    new["pipelineSource"] = spec.pipeline_source
    # Not its labels or trigger annotations: this run is started by whoever reruns it.
    metadata: dict[str, Any] = {
        "generateName": _prefix(run.pipeline_name or run.name),
        "annotations": {ANNOTATION_RERUN_OF: run.name},
    }
    return {"apiVersion": API_VERSION, "kind": "PipelineRun", "metadata": metadata, "spec": new}


def retry_entries(
    run: PipelineRun, wanted: Sequence[str], gated: Mapping[str, str]
) -> list[RetryRequest]:
    """The `spec.retry` entries that retry `wanted` (every failed job if empty) of `run`: one
    `{job, attempt}` per job, naming the failed attempt to follow. `gated` maps jobs to the
    protected environment they deploy to. ValueError says why a job cannot be retried."""
    name, spec = run.name, spec_of(run)
    if spec.cancelled:
        raise ValueError(
            f"run {name} was cancelled; a cancelled run cannot run again: conveyor rerun {name}"
        )
    jobs = {j.name: j for j in run.status.jobs}
    failed = [j for j in jobs.values() if _retriable(j)]
    for job in wanted:
        if job not in jobs:
            known = ", ".join(jobs) or "none yet"
            raise ValueError(f"run {name} has no job {job!r} (its jobs: {known})")
        if not _retriable(jobs[job]):
            raise ValueError(
                f"job {job!r} of run {name} has not failed (it is {jobs[job].phase}): "
                "only a failed job is retried"
            )
    chosen = [jobs[j] for j in dict.fromkeys(wanted)] if wanted else failed
    if not chosen:
        raise ValueError(f"run {name} has no failed job to retry")
    refused = [j.name for j in chosen if j.name in gated]
    if refused and (wanted or len(refused) == len(chosen)):
        job = refused[0]
        raise ValueError(
            f"job {job!r} of run {name} deploys to {gated[job]}, which requires approval: a "
            f"retry would run it on its old approval; start a new run instead (conveyor rerun "
            f"{name}), whose deploy asks for a new approval"
        )
    return [
        entry
        for j in chosen
        if j.attempt is not None
        and j.name not in gated
        and (entry := RetryRequest(j.name, j.attempt)) not in spec.retry
    ]


def _retriable(job: JobStatus) -> bool:
    """A failed job with an attempt to follow."""
    return job.phase == FAILED and bool(job.attempt)


def exit_code_of(phase: str | None) -> int:
    return EXIT_OK if phase in SUCCESSFUL else EXIT_FAILED


# -- the commands
def cmd_run(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    for sha in (args.sha, args.before):
        if sha and not SHA.match(sha):
            return fail(f"{sha!r} is not a full commit SHA (40 lowercase hex digits)", EXIT_USAGE)
    variables: dict[str, str] = {}
    for item in args.var:
        m = VARIABLE.match(item)
        if not m:
            return fail(
                f"--var {item!r}: expected KEY=VALUE with KEY like [A-Za-z_][A-Za-z0-9_]*",
                EXIT_USAGE,
            )
        variables[m.group(1)] = m.group(2)
    missing = _pipeline_missing(kube, ns, args.pipeline)
    if missing and args.wait:
        return fail(f"{missing}; nothing was created")
    created = kube.create_run(
        ns,
        run_manifest(args.pipeline, args.ref, args.sha, args.before, variables, push=args.push),
    )
    name = created["metadata"]["name"]
    print(name, flush=True)
    if missing:
        print(
            f"conveyor: warning: {missing}: run {name} waits Pending until it is created",
            file=sys.stderr,
        )
    return _wait(kube, ns, name) if args.wait else EXIT_OK


def _pipeline_missing(kube: Kube, ns: str, pipeline: str) -> str | None:
    """Why a run of `pipeline` would wait forever, or None. A Pipeline one may not read is
    taken to exist: the check must not stop those who may only create runs."""
    from kubernetes.client.rest import ApiException

    try:
        kube.get_pipeline(ns, pipeline)
    except ApiException as e:
        if e.status == 404:
            return f"pipeline {pipeline!r} does not exist in namespace {ns}"
        if e.status == 403:
            return None
        raise
    return None


def _wait(kube: Kube, ns: str, name: str) -> int:
    """Waits for run `name` to end, saying on stderr what it waits for meanwhile."""
    said = None
    for kind, body in kube.watch_runs(ns, name, timeout=24 * 3600):
        if kind == "DELETED":
            return fail(f"run {name} was deleted")
        status = parse(PipelineRun, body).status
        phase = status.phase or "Pending"
        condition = succeeded_condition(status)
        line = f"{name}: {phase}" + (
            f" ({condition.reason}: {condition.message})"
            if condition is not None and condition.reason and condition.reason != phase
            else ""
        )
        if line != said:
            print(line, file=sys.stderr, flush=True)
            said = line
        if phase in FINISHED:
            return exit_code_of(phase)
    return fail(f"gave up waiting for run {name}")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def cmd_get(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    where: str | None = None if args.all_namespaces else ns
    wide = args.output == "wide"
    if args.run is not None:
        if args.all_namespaces:
            return fail("RUN and -A do not go together: a run is in one namespace", EXIT_USAGE)
        body = kube.get_run(ns, args.run)
        if args.watch:
            return _watch_run(kube, ns, args.run, args.output)
        print(_one(body, parse(PipelineRun, body), args.output, wide))
        return EXIT_OK
    bodies = kube.list_runs(where)
    raw = args.output in RAW_OUTPUTS
    runs: list[PipelineRun] = []
    # json, yaml and name print the objects as the API server returns them: nothing is read.
    if raw:
        if bodies or args.output != "name":
            print(_raw(bodies, args.output, single=False))
    elif runs := parse_each(PipelineRun, bodies):
        print(runs_table(runs, _now(), wide=wide, namespaces=where is None))
    elif not bodies and not args.watch:
        print(f"No PipelineRuns in namespace {ns}." if where else "No PipelineRuns.")
    if not args.watch:
        return EXIT_OK
    # What each listed run's line says; None: its model refused it, and that was said.
    seen = {_key(b): _raw([b], args.output, single=True) if raw else None for b in bodies}
    seen.update({_run_key(r): _row(r, args.output, where) for r in runs})
    return _watch_list(kube, where, args.output, seen)


RAW_OUTPUTS = ("json", "yaml", "name")
Key = tuple[str | None, str]


def _raw(bodies: Sequence[Mapping[str, Any]], output: str, *, single: bool) -> str:
    return names(bodies) if output == "name" else serialized(bodies, output, single=single)


def _one(body: Mapping[str, Any], run: PipelineRun, output: str, wide: bool) -> str:
    if output in RAW_OUTPUTS:
        return _raw([body], output, single=True)
    return run_summary(run, wide=wide, now=_now())


def _watch_run(kube: Kube, ns: str, name: str, output: str) -> int:
    """The run's table again each time it changes, until it ends (a terminal is redrawn)."""
    redraw = sys.stdout.isatty() and output in ("table", "wide")
    shown = None
    for kind, body in kube.watch_runs(ns, name):
        if kind == "DELETED":
            return fail(f"run {name} was deleted")
        run = parse(PipelineRun, body)
        text = _one(body, run, output, output == "wide")
        if text != shown:
            if redraw:
                sys.stdout.write("\x1b[H\x1b[2J")  # home, clear: a live table, as watch(1) draws
            elif shown is not None and output in ("table", "wide"):
                print()
            print(text, flush=True)
            shown = text
        if run.status.phase in FINISHED:
            return EXIT_OK
    return EXIT_OK


def _watch_list(kube: Kube, where: str | None, output: str, seen: dict[Key, str | None]) -> int:
    """A line per run that changes, as `kubectl get -w` prints them. `seen`: the line of each
    run listed (None: its model refused it, as was said)."""
    header = not seen
    for kind, body in kube.watch_runs(where):
        key = _key(body)
        if kind == "DELETED":
            seen.pop(key, None)
            continue
        if output in RAW_OUTPUTS:
            line = _raw([body], output, single=True)
        else:
            try:
                run = parse(PipelineRun, body)
            except Unreadable as e:
                if key not in seen or seen[key] is not None:
                    print(e.skipped(), file=sys.stderr, flush=True)
                seen[key] = None
                continue
            line = _row(run, output, where)
        if seen.get(key) == line:
            continue  # the watch replays what was listed; print changes only
        seen[key] = line
        if output in ("table", "wide"):
            text = runs_table([run], _now(), wide=output == "wide", namespaces=where is None)
            head, _, row = text.partition("\n")
            if header:
                print(head)
                header = False
            print(row, flush=True)
        else:
            print(line, flush=True)
    return EXIT_OK


def _key(body: Mapping[str, Any]) -> Key:
    return body["metadata"].get("namespace"), body["metadata"]["name"]


def _run_key(run: PipelineRun) -> Key:
    return run.metadata.namespace, run.name


def _row(run: PipelineRun, output: str, where: str | None) -> str:
    text = runs_table([run], _now(), wide=output == "wide", namespaces=where is None)
    # AGE changes every second: compare without it, or every replayed run would print again.
    return text.partition("\n")[2].rsplit("   ", 1)[0] if text else ""


def cmd_describe(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    from kubernetes.client.rest import ApiException

    run = get_run(kube, ns, args.run)
    try:
        approvals = [a for a in list_approvals(kube, ns) if spec_of(a).run_uid == run.metadata.uid]
    except ApiException as e:
        if e.status != 403:
            raise
        approvals = []  # not everyone may read Approvals; the rest is still worth showing
    try:
        events = kube.list_events(ns, "PipelineRun", args.run)
    except ApiException as e:
        if e.status != 403:
            raise
        events = []
    print(describe(run, approvals, events, _now()))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    phase = get_run(kube, ns, args.run).status.phase
    if phase in FINISHED:
        return fail(f"run {args.run} has already finished ({phase}); nothing to cancel")
    kube.patch_run(ns, args.run, {"spec": {"status": CANCELLED}})
    print(f"{args.run}: cancel requested")
    return EXIT_OK


def _gates(kube: Kube, ns: str, jobs: Iterable[JobStatus]) -> dict[str, str]:
    """The protected environment each of `jobs` deploys to, for those that deploy to one (the
    operator ignores a play or a retry of such a job: only a new Approval releases it)."""
    from conveyor.engine.environments import resolve_environment

    deploying = [j for j in jobs if j.environment]
    if not deploying:
        return {}
    bodies = kube.list_environments(ns)
    gated = {}
    for job in deploying:
        assert job.environment is not None
        body = resolve_environment(job.environment, bodies)
        # Only the Environment that serves the job is read: another's faults are not the job's.
        if body is not None and spec_of(parse(Environment, body)).protection.protected:
            gated[job.name] = job.environment
    return gated


def play(kube: Kube, ns: str, run_name: str, job: str) -> str:
    """Releases manual (or delayed) `job` of run `run_name`; returns what was done. CommandError
    says why it is not released; the API server's refusal is raised as it came."""
    run = get_run(kube, ns, run_name)
    jobs = {j.name: j for j in run.status.jobs}
    if job not in jobs:
        known = ", ".join(sorted(jobs)) or "none yet"
        raise CommandError(f"run {run_name} has no job {job!r} (jobs: {known})")
    entry = jobs[job]
    if entry.phase != MANUAL and entry.reason != DELAYED:
        raise CommandError(
            f"job {job!r} of run {run_name} is not waiting to be played (it is {entry.phase})"
        )
    gate = _gates(kube, ns, [entry]).get(job)
    if gate is not None:
        raise CommandError(
            f"job {job!r} of run {run_name} deploys to {gate}, which requires approval: "
            f"play does not release it; it starts once approved (conveyor approve {run_name})"
        )
    played = spec_of(run).play
    if job not in played:
        # resourceVersion: a concurrent play of another job must not be overwritten.
        kube.patch_run(
            ns,
            run_name,
            {
                "metadata": {"resourceVersion": run.metadata.resource_version},
                "spec": {"play": [*played, job]},
            },
        )
    return f"{run_name}: {job} released"


def cmd_play(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    print(play(kube, ns, args.run, args.job))
    return EXIT_OK


def retry(
    kube: Kube, ns: str, run_name: str, wanted: Sequence[str]
) -> tuple[list[str], str | None]:
    """A new attempt of the failed jobs of run `run_name` (or of those `wanted`): what was done,
    one line each, and a warning about failed jobs left alone (None: none). CommandError says
    why nothing can be retried; the API server's refusal is raised as it came."""
    run = get_run(kube, ns, run_name)
    gated = _gates(kube, ns, run.status.jobs)
    try:
        entries = retry_entries(run, wanted, gated)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if entries:
        retries = [*spec_of(run).retry, *entries]
        kube.patch_run(
            ns,
            run_name,
            {
                "metadata": {"resourceVersion": run.metadata.resource_version},
                "spec": {"retry": [to_dict(r) for r in retries]},
            },
        )
    done = [f"{run_name}: {e.job} retried (attempt {e.attempt + 1})" for e in entries]
    if not entries:
        done.append(f"{run_name}: already being retried")
    failed = {j.name for j in run.status.jobs if j.phase == FAILED}
    skipped = sorted(set(gated) & failed - set(wanted))
    warning = None
    if skipped and not wanted:
        warning = (
            f"not retried: {', '.join(skipped)} (their environment requires approval: "
            f"conveyor rerun {run_name})"
        )
    return done, warning


def cmd_retry(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    done, warning = retry(kube, ns, args.run, args.jobs)
    for line in done:
        print(line)
    if warning is not None:
        print(f"conveyor: {warning}", file=sys.stderr)
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    run = get_run(kube, ns, args.run)
    created = kube.create_run(ns, rerun_manifest(run))
    name = created["metadata"]["name"]
    print(name, flush=True)
    return _wait(kube, ns, name) if args.wait else EXIT_OK
