"""`conveyor logs`: what a run's jobs printed, read from their pods through the API server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException

from conveyor.api.meta import GROUP, VERSION
from conveyor.api.pipelinerun import FINISHED_PHASES, JOB_FINISHED_PHASES
from conveyor.cli.common import add_cluster_options, api_message, fail, kube_command
from conveyor.engine.names import job_name
from conveyor.kube.client import PIPELINERUNS, Kube
from conveyor.kube.jobspec import CHECKOUT_CONTAINER, SCRIPT_CONTAINER

# What a job's log is by default, as GitLab shows it: the checkout, then the script.
DEFAULT_CONTAINERS = (CHECKOUT_CONTAINER, SCRIPT_CONTAINER)


class LogsError(Exception):
    """A request for logs that cannot be answered; the message says why."""


@dataclass(frozen=True)
class Attempt:
    """One attempt of one pipeline job whose log is wanted."""

    job: str
    number: int
    phase: str
    job_name: str | None  # its Kubernetes Job; None: it never had one


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "logs",
        help="print what a run's jobs printed",
        description=(
            "Print the log of JOB of RUN (its latest attempt unless --attempt), or of every job "
            "of RUN that ran, in order. A job's log is its checkout followed by its script; "
            "logs live in the job's pod and go when its Job is deleted (with the run, beyond "
            "the pipeline's history)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="name of a PipelineRun")
    p.add_argument("job", metavar="JOB", nargs="?", help="a job of the run (default: all)")
    p.add_argument("--attempt", type=int, metavar="N", help="an earlier attempt of JOB")
    p.add_argument(
        "-c",
        "--container",
        metavar="NAME",
        help=f"one container only: {SCRIPT_CONTAINER}, {CHECKOUT_CONTAINER} or a service's name",
    )
    p.add_argument(
        "-f", "--follow", action="store_true", help="stream JOB's log until it ends (needs JOB)"
    )
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each log")
    add_cluster_options(p)
    p.set_defaults(func=kube_command(cmd_logs))


# -- pure: which attempts, which pod, which containers
def attempts(run: Mapping[str, Any], job: str | None, attempt: int | None) -> list[Attempt]:
    name = run["metadata"]["name"]
    jobs = (run.get("status") or {}).get("jobs") or []
    if job is None:
        if attempt is not None:
            raise LogsError("--attempt needs a JOB")
        return [_latest(j) for j in jobs]
    entry = next((j for j in jobs if j.get("name") == job), None)
    if entry is None:
        known = ", ".join(j["name"] for j in jobs) or "none yet"
        raise LogsError(f"run {name} has no job {job!r} (its jobs: {known})")
    latest = _latest(entry)
    if attempt is None or attempt == latest.number:
        return [latest]
    if not 1 <= attempt < latest.number:
        raise LogsError(
            f"job {job} of run {name} has had {latest.number} attempt(s), not {attempt}"
        )
    # Earlier attempts failed (only a failure is retried); their Jobs have deterministic names.
    uid = run["metadata"].get("uid") or ""
    return [Attempt(job, attempt, "Failed", job_name(name, job, attempt, uid))]


def _latest(entry: Mapping[str, Any]) -> Attempt:
    return Attempt(entry["name"], entry.get("attempt") or 1, entry["phase"], entry.get("jobName"))


def ready_to_follow(run: Mapping[str, Any], job: str) -> bool:
    """Whether `job` has a Job to follow, or never will: otherwise --follow waits."""
    status = run.get("status") or {}
    entry = next((j for j in status.get("jobs") or () if j.get("name") == job), None)
    if status.get("phase") in FINISHED_PHASES:
        return True
    return entry is not None and (
        bool(entry.get("jobName")) or entry.get("phase") in JOB_FINISHED_PHASES
    )


def newest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """A Job retried by Kubernetes (a pod deleted under it) has several pods: the last counts."""
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def containers(pod: Mapping[str, Any], wanted: str | None) -> list[str]:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    if wanted is None:
        return [c for c in DEFAULT_CONTAINERS if c in names]
    if wanted not in names:
        raise LogsError(
            f"pod {pod['metadata']['name']} has no container {wanted!r} "
            f"(it has: {', '.join(names)})"
        )
    return [wanted]


def deploy_summary(run: Mapping[str, Any], job: str) -> str | None:
    """A native deploy runs in the operator, without a pod: its record is its log."""
    records = (run.get("status") or {}).get("deployments") or []
    record = next((d for d in reversed(records) if d.get("job") == job), None)
    if record is None:
        return None
    lines = [
        f"native deploy to environment {record['environment']} "
        f"(namespace {record['namespace']}): {record['result']}",
        f"commit {record['sha']}, version {record['version']}",
        f"images: {', '.join(record.get('images') or ()) or '-'}",
        f"objects applied: {record.get('objects', 0)}, pruned: {record.get('pruned', 0)}",
    ]
    if record.get("message"):
        lines.append(record["message"])
    return "\n".join(lines)


def native_deploys(run: Mapping[str, Any], pipeline: Mapping[str, Any] | None) -> set[str]:
    spec = (run.get("spec") or {}).get("pipelineSpec") or pipeline or {}
    return {j["name"] for j in spec.get("jobs") or () if j.get("deploy") is not None}


def header(attempt: Attempt) -> str:
    return f"==> {attempt.job} (attempt {attempt.number}, {attempt.phase}) <=="


# -- the command
def cmd_logs(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    if args.follow and args.job is None:
        return fail("--follow needs a JOB: one log is followed at a time", 2)
    run = kube.get_run(ns, args.run)
    if args.follow and not ready_to_follow(run, args.job):
        print(f"waiting for job {args.job} of run {args.run} to start...", file=sys.stderr)
        run = _wait_for_run(kube, ns, args.run, args.job) or run
    try:
        wanted = attempts(run, args.job, args.attempt)
    except LogsError as e:
        return fail(str(e), 2)
    if not wanted:
        phase = (run.get("status") or {}).get("phase") or "Pending"
        print(f"run {args.run} has no jobs yet ({phase})")
        return 0
    several = len(wanted) > 1
    natives = native_deploys(run, _pipeline_spec(kube, ns, run))
    failures = 0
    for attempt in wanted:
        if several:
            print(header(attempt), flush=True)
        try:
            _print_attempt(kube, ns, run, attempt, args, natives)
        except LogsError as e:
            if not several:
                return fail(str(e))
            print(f"({e})", flush=True)
            failures += 1
        if several:
            print(flush=True)
    return 1 if failures == len(wanted) else 0


def _print_attempt(
    kube: Kube,
    ns: str,
    run: Mapping[str, Any],
    attempt: Attempt,
    args: argparse.Namespace,
    natives: set[str],
) -> None:
    summary = deploy_summary(run, attempt.job)
    if summary is not None:
        print(summary, flush=True)
        return
    if attempt.job in natives:
        raise LogsError(
            f"job {attempt.job} is a native deploy, run by the operator without a pod: it is "
            f"{attempt.phase}, and its record shows here when it ends"
        )
    if attempt.job_name is None:
        raise LogsError(f"job {attempt.job} has not run: it is {attempt.phase}")
    pod = newest_pod(kube.list_job_pods(ns, attempt.job_name))
    if pod is None and args.follow:
        pod = _wait_for_pod(kube, ns, attempt.job_name)
    if pod is None:
        raise LogsError(
            f"job {attempt.job} (attempt {attempt.number}) has no pod: its Job "
            f"{attempt.job_name} was deleted, or has not started one yet"
        )
    names = containers(pod, args.container)
    for container in names:
        if len(names) > 1:
            print(f"--- {container} ---", flush=True)
        if args.follow and not _wait_started(kube, ns, pod["metadata"]["name"], container):
            print(f"({container} never started: the pod ended before it)", flush=True)
            continue
        try:
            for chunk in kube.pod_log(
                ns, pod["metadata"]["name"], container, follow=args.follow, tail=args.tail
            ):
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
        except ApiException as e:
            message = api_message(e)
            if "waiting to start" in message and attempt.phase not in JOB_FINISHED_PHASES:
                message += " (the job has not started yet; --follow waits for it)"
            raise LogsError(message) from e


def _pipeline_spec(kube: Kube, ns: str, run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    name = ((run.get("spec") or {}).get("pipelineRef") or {}).get("name")
    if not name:
        return None
    try:
        return kube.get_pipeline(ns, name).get("spec")
    except ApiException:
        return None  # gone, or not readable: the job is then taken for a pod's


def started(pod: Mapping[str, Any], container: str) -> bool | None:
    """Whether `container` has started (True), cannot any more (None: the pod ended), or may."""
    status = pod.get("status") or {}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if c.get("name") == container and set(c.get("state") or {}) & {"running", "terminated"}:
            return True
    return None if status.get("phase") in ("Succeeded", "Failed") else False


def _wait_started(kube: Kube, ns: str, pod: str, container: str) -> bool:
    for seen in _pod_events(kube, ns, f"metadata.name={pod}", None):
        state = started(seen, container)
        if state is not False:
            return bool(state)
    return False


def _wait_for_run(kube: Kube, ns: str, name: str, job: str) -> Mapping[str, Any] | None:
    stream = watch.Watch().stream(
        kube.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        PIPELINERUNS,
        field_selector=f"metadata.name={name}",
        timeout_seconds=3600,
    )
    for event in stream:
        if event["type"] in ("ADDED", "MODIFIED") and ready_to_follow(event["object"], job):
            return event["object"]
    return None


def _wait_for_pod(kube: Kube, ns: str, job: str) -> Mapping[str, Any] | None:
    return next(_pod_events(kube, ns, None, f"batch.kubernetes.io/job-name={job}"), None)


def _pod_events(
    kube: Kube, ns: str, fields: str | None, labels: str | None
) -> Iterator[dict[str, Any]]:
    """The pods matching, as they are listed and then as they change (for up to an hour)."""
    stream = watch.Watch().stream(
        kube.core.list_namespaced_pod,
        ns,
        field_selector=fields,
        label_selector=labels,
        timeout_seconds=3600,
    )
    for event in stream:
        if event["type"] in ("ADDED", "MODIFIED"):
            yield kube.core.api_client.sanitize_for_serialization(event["object"])
