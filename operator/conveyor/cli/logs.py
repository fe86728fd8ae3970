"""`conveyor logs`: what a run's jobs printed, read from their pods through the API server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from conveyor.api.pipeline import PipelineSpec
from conveyor.api.pipelinerun import JOB_FINISHED_PHASES, JobStatus, PipelineRun
from conveyor.cli.common import EXIT_USAGE, add_cluster_options, api_message, fail, kube_command
from conveyor.cli.objects import get_run, parse, pipeline_spec, spec_of
from conveyor.engine.names import job_name
from conveyor.kube.defaults import (
    CHECKOUT_CONTAINER,
    SCRIPT_CONTAINER,
    SERVICES_WAIT_CONTAINER,
    TRANSFER_CONTAINER,
)

if TYPE_CHECKING:
    from conveyor.kube.client import Kube
# What a job's log is by default, as GitLab shows it: the checkout, the artifacts and caches
# downloaded (when the job has any), the wait for its services (when they set
# HEALTHCHECK_TCP_PORT), then the script (and the uploads after it).
DEFAULT_CONTAINERS = (
    CHECKOUT_CONTAINER,
    TRANSFER_CONTAINER,
    SERVICES_WAIT_CONTAINER,
    SCRIPT_CONTAINER,
)


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
            "of RUN that ran, in order. A job's log is its checkout, the artifacts and caches it "
            "downloaded, then its script; "
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
        "-f",
        "--follow",
        action="store_true",
        help="stream the log as it is written: JOB's until it ends, or without JOB every job "
        "of the run as it starts, in turn, until the run ends",
    )
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines of each log")
    add_cluster_options(p)
    p.set_defaults(func=kube_command(cmd_logs))


# -- pure: which attempts, which pod, which containers
def attempts(run: PipelineRun, job: str | None, attempt: int | None) -> list[Attempt]:
    name, jobs = run.name, run.status.jobs
    if job is None:
        if attempt is not None:
            raise LogsError("--attempt needs a JOB")
        return [_latest(j) for j in jobs]
    entry = run.status.job(job)
    if entry is None:
        known = ", ".join(j.name for j in jobs) or "none yet"
        raise LogsError(f"run {name} has no job {job!r} (its jobs: {known})")
    latest = _latest(entry)
    if attempt is None or attempt == latest.number:
        return [latest]
    if not 1 <= attempt < latest.number:
        raise LogsError(
            f"job {job} of run {name} has had {latest.number} attempt(s), not {attempt}"
        )
    # Earlier attempts failed (only a failure is retried); their Jobs have deterministic names.
    uid = run.metadata.uid or ""
    return [Attempt(job, attempt, "Failed", job_name(name, job, attempt, uid))]


def _latest(entry: JobStatus) -> Attempt:
    return Attempt(entry.name, entry.attempt or 1, entry.phase, entry.job_name)


def run_pipeline(run: PipelineRun, pipeline: PipelineSpec | None) -> PipelineSpec | None:
    """The pipeline the run runs: recorded at its start, else inline, else (before it starts)
    the Pipeline's spec `pipeline`; None while none of these is known."""
    return run.status.pipeline_spec or spec_of(run).pipeline_spec or pipeline


def known_jobs(run: PipelineRun, pipeline: PipelineSpec | None) -> list[str] | None:
    """The run's job names: from its status once it has one, else from the pipeline it will
    run (inline, recorded, or the Pipeline's spec); None while none of these is known."""
    if run.status.jobs:
        return [j.name for j in run.status.jobs]
    spec = run_pipeline(run, pipeline)
    return None if spec is None else [j.name for j in spec.jobs]


def check_job(run: PipelineRun, job: str, pipeline: PipelineSpec | None) -> None:
    """Raises LogsError unless `job` is (or will be) one of the run's jobs: --follow would
    otherwise wait for a job that never comes."""
    known = known_jobs(run, pipeline)
    name = run.name
    if known is None:
        ref = run.pipeline_name
        raise LogsError(
            f"run {name} has no jobs yet and its pipeline {ref!r} cannot be read, so job "
            f"{job!r} cannot be checked: is the pipeline applied?"
        )
    if job not in known:
        raise LogsError(f"run {name} has no job {job!r} (its jobs: {', '.join(known) or 'none'})")


def next_to_follow(
    run: PipelineRun, done: Collection[tuple[str, int]], natives: Collection[str]
) -> Attempt | None:
    """The next attempt `logs -f RUN` shows: the first job, in pipeline order, whose latest
    attempt has started and was not shown yet (a native deploy once it has ended: its record
    is its log). None: nothing to show now."""
    for entry in run.status.jobs:
        attempt = _latest(entry)
        if (attempt.job, attempt.number) in done or not entry.attempt:
            continue
        if entry.name in natives:
            if entry.phase in JOB_FINISHED_PHASES:
                return attempt
            continue
        if attempt.job_name:
            return attempt
    return None


def ready_to_follow(run: PipelineRun, job: str) -> bool:
    """Whether `job` has a Job to follow, or never will: otherwise --follow waits."""
    if run.status.finished:
        return True
    entry = run.status.job(job)
    return entry is not None and (bool(entry.job_name) or entry.phase in JOB_FINISHED_PHASES)


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


def deploy_summary(run: PipelineRun, job: str) -> str | None:
    """A native deploy runs in the operator, without a pod: its record is its log."""
    records = run.status.deployments
    record = next((d for d in reversed(records) if d.job == job), None)
    if record is None:
        return None
    lines = [
        f"native deploy to environment {record.environment} "
        f"(namespace {record.namespace}): {record.result}",
        f"commit {record.sha}, version {record.version}",
        f"images: {', '.join(record.images) or '-'}",
        f"objects applied: {record.objects}, pruned: {record.pruned}",
    ]
    if record.message:
        lines.append(record.message)
    return "\n".join(lines)


def native_deploys(run: PipelineRun, pipeline: PipelineSpec | None) -> set[str]:
    spec = spec_of(run).pipeline_spec or pipeline
    return {j.name for j in spec.jobs if j.deploy is not None} if spec is not None else set()


def header(attempt: Attempt) -> str:
    return f"==> {attempt.job} (attempt {attempt.number}, {attempt.phase}) <=="


# -- the command
def cmd_logs(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    run = get_run(kube, ns, args.run)
    pipeline = pipeline_spec(kube, ns, run)
    if args.follow and args.job is None:
        if args.attempt is not None:
            return fail("--attempt needs a JOB", EXIT_USAGE)
        return _follow_run(kube, ns, run, args, native_deploys(run, pipeline))
    if args.follow:
        try:
            check_job(run, args.job, pipeline)
        except LogsError as e:
            return fail(str(e), EXIT_USAGE)
        if not ready_to_follow(run, args.job):
            print(f"waiting for job {args.job} of run {args.run} to start...", file=sys.stderr)
            run = _wait_for_run(kube, ns, args.run, lambda r: ready_to_follow(r, args.job)) or run
    try:
        wanted = attempts(run, args.job, args.attempt)
    except LogsError as e:
        return fail(str(e), EXIT_USAGE)
    if not wanted:
        print(f"run {args.run} has no jobs yet ({run.status.phase or 'Pending'})")
        return 0
    several = len(wanted) > 1
    natives = native_deploys(run, pipeline)
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


def _follow_run(
    kube: Kube, ns: str, run: PipelineRun, args: argparse.Namespace, natives: set[str]
) -> int:
    """Every job's log in turn, as `tkn pipelinerun logs -f` shows them: each started job
    followed to its end, in pipeline order, until the run has ended and all are shown."""
    done: set[tuple[str, int]] = set()
    name = run.name
    while True:
        attempt = next_to_follow(run, done, natives)
        if attempt is None:
            if run.status.finished:
                return 0
            changed = _wait_for_run(
                kube,
                ns,
                name,
                lambda r: next_to_follow(r, done, natives) is not None or r.status.finished,
            )
            if changed is None:
                return fail(f"gave up waiting for run {name}")
            run = changed
            continue
        done.add((attempt.job, attempt.number))
        print(header(attempt), flush=True)
        try:
            _print_attempt(kube, ns, run, attempt, args, natives)
        except LogsError as e:
            print(f"({e})", flush=True)
        print(flush=True)
        run = get_run(kube, ns, name)


def _print_attempt(
    kube: Kube,
    ns: str,
    run: PipelineRun,
    attempt: Attempt,
    args: argparse.Namespace,
    natives: set[str],
) -> None:
    sys.stdout.flush()  # what print() wrote goes first: the log is written to the byte stream
    write_attempt(
        kube,
        ns,
        run,
        attempt,
        natives,
        sys.stdout.buffer,
        container=args.container,
        follow=args.follow,
        tail=args.tail,
    )


def write_attempt(
    kube: Kube,
    ns: str,
    run: PipelineRun,
    attempt: Attempt,
    natives: Collection[str],
    out: BinaryIO,
    *,
    container: str | None = None,
    follow: bool = False,
    tail: int | None = None,
) -> None:
    """Writes what `attempt` printed to `out` (flushed as it comes): a native deploy's record,
    or its pod's containers' logs (checkout then script unless `container`), followed to their
    end with `follow`. LogsError says why there is nothing to show. `conveyor logs` and the
    dashboard both show a job's log through here."""

    def say(text: str) -> None:
        out.write(text.encode() + b"\n")
        out.flush()

    summary = deploy_summary(run, attempt.job)
    if summary is not None:
        say(summary)
        return
    if attempt.job in natives:
        raise LogsError(
            f"job {attempt.job} is a native deploy, run by the operator without a pod: it is "
            f"{attempt.phase}, and its record shows here when it ends"
        )
    if attempt.job_name is None:
        raise LogsError(f"job {attempt.job} has not run: it is {attempt.phase}")
    pod = newest_pod(kube.list_job_pods(ns, attempt.job_name))
    if pod is None and follow:
        pod = _wait_for_pod(kube, ns, attempt.job_name)
    if pod is None:
        raise LogsError(
            f"job {attempt.job} (attempt {attempt.number}) has no pod: its Job "
            f"{attempt.job_name} was deleted, or has not started one yet"
        )
    names = containers(pod, container)
    for name in names:
        if len(names) > 1:
            say(f"--- {name} ---")
        if follow and not _wait_started(kube, ns, pod["metadata"]["name"], name):
            say(f"({name} never started: the pod ended before it)")
            continue
        from kubernetes.client.rest import ApiException

        closer = _Closer(kube, ns, pod["metadata"]["name"], name) if follow else None
        try:
            for chunk in kube.pod_log(
                ns,
                pod["metadata"]["name"],
                name,
                follow=follow,
                tail=tail,
                opened=closer.start if closer else None,
            ):
                out.write(chunk)
                out.flush()
        except ApiException as e:
            message = api_message(e)
            if "waiting to start" in message and attempt.phase not in JOB_FINISHED_PHASES:
                message += " (the job has not started yet; --follow waits for it)"
            raise LogsError(message) from e
        except Exception:
            if closer is None or not closer.closed:
                raise  # not the end of a follow we closed ourselves


class _Closer:
    """Ends a followed log once its container has ended: a kubelet closes the stream then, but
    not every log server does, and `logs -f RUN` must go on to the next job."""

    DRAIN_SECONDS = 2.0  # what the container wrote last is still on its way

    def __init__(self, kube: Kube, ns: str, pod: str, container: str) -> None:
        self.kube, self.ns, self.pod, self.container = kube, ns, pod, container
        self.closed = False

    def start(self, response: Any) -> None:
        import threading

        threading.Thread(target=self._close_after_end, args=(response,), daemon=True).start()

    def _close_after_end(self, response: Any) -> None:
        import time

        try:
            for seen in _pod_events(self.kube, self.ns, f"metadata.name={self.pod}", None):
                if ended(seen, self.container):
                    break
            else:
                return
            time.sleep(self.DRAIN_SECONDS)
            self.closed = True
            # Closing the response does not wake a read blocked on its socket; shutting the
            # socket down does.
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
            response.close()
        except Exception:  # best effort: the stream then ends as the server ends it
            return


def ended(pod: Mapping[str, Any], container: str) -> bool:
    """Whether `container` has terminated, or the pod has ended."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        if c.get("name") == container and "terminated" in (c.get("state") or {}):
            return True
    return False


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


def _wait_for_run(
    kube: Kube, ns: str, name: str, ready: Callable[[PipelineRun], bool]
) -> PipelineRun | None:
    for kind, body in kube.watch_runs(ns, name):
        if kind != "DELETED" and ready(run := parse(PipelineRun, body)):
            return run
    return None


def _wait_for_pod(kube: Kube, ns: str, job: str) -> Mapping[str, Any] | None:
    return next(_pod_events(kube, ns, None, f"batch.kubernetes.io/job-name={job}"), None)


def _pod_events(
    kube: Kube, ns: str, fields: str | None, labels: str | None
) -> Iterator[dict[str, Any]]:
    """The pods matching, as they are listed and then as they change (for up to an hour)."""
    from kubernetes import watch

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
