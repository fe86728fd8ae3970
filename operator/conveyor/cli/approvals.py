"""`conveyor approve|reject|approvals`: vote on the Approvals gating deploys, and list them.

A vote is a merge patch of your own entry, `spec.votes.<you>`; who you are comes from the API server
(a SelfSubjectReview), and whether you may vote is the API server's decision too (the admission
policy in deploy/30-admission.yaml): its refusal is printed as it is.
"""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from conveyor.api import GROUP, VERSION
from conveyor.api.approval import (
    APPROVE,
    COMMENT_MAX_LENGTH,
    FINAL_DECISIONS,
    PENDING,
    REJECT,
    Approval,
)
from conveyor.api.durations import format_duration
from conveyor.cli.common import (
    EXIT_USAGE,
    CommandError,
    add_cluster_options,
    cluster_errors,
    target,
)
from conveyor.cli.objects import created, parse, parse_each, spec_of

if TYPE_CHECKING:
    from kubernetes import client

MERGE_PATCH = "application/merge-patch+json"

APPROVALS = "approvals"


def register(subparsers: argparse._SubParsersAction) -> None:
    for verb, decision in (("approve", APPROVE), ("reject", REJECT)):
        cmd = subparsers.add_parser(
            verb,
            help=f"{verb} a deploy waiting for approval",
            description=(
                f"{verb.capitalize()} the Approval named APPROVAL, or the pending Approval of run "
                "RUN. Your vote is spec.votes.<your username>; the API server refuses it unless "
                "you are an approver of the environment."
            ),
        )
        cmd.add_argument("name", metavar="RUN|APPROVAL", help="a PipelineRun or an Approval")
        cmd.add_argument(
            "-m", "--message", dest="comment", help="a comment recorded with your vote"
        )
        add_cluster_options(cmd)
        cmd.set_defaults(func=_guard(_vote(decision)))

    listing = subparsers.add_parser(
        "approvals",
        help="list Approvals (of one run)",
        description="List the Approvals in the namespace, or those of run RUN.",
    )
    listing.add_argument("run", metavar="RUN", nargs="?", help="name of a PipelineRun")
    add_cluster_options(listing)
    listing.set_defaults(func=_guard(cmd_list))


def _guard(command: Callable[[argparse.Namespace, client.ApiClient, str], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        where = target(args)
        api: list[Any] = []

        def call() -> int:
            api.append(where.api_client())
            return command(args, api[0], args.namespace or where.default_namespace())

        return cluster_errors(call, lambda: api[0].configuration.host if api else None)

    return run


def whoami(api: client.ApiClient) -> str:
    """Your username as the API server authenticates you (what admission sees)."""
    from conveyor.kube import identity

    try:
        return identity.whoami(api)
    except ValueError as e:
        raise CommandError(str(e)) from None


def is_pending(approval: Approval) -> bool:
    return (approval.status.decision or PENDING) not in FINAL_DECISIONS


def _listed(api: client.ApiClient, ns: str, run: str | None = None) -> list[Approval]:
    """The Approvals of namespace `ns` (of run `run` only, if given)."""
    from kubernetes import client

    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, ns, APPROVALS
    )["items"]
    approvals = parse_each(Approval, items)
    return [a for a in approvals if run is None or spec_of(a).pipeline_run == run]


def find_approval(api: client.ApiClient, ns: str, name: str) -> Approval:
    """The Approval called `name`, else the one pending Approval of run `name`."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api)
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, ns, APPROVALS, name)
        return parse(Approval, body)
    except ApiException as e:
        if e.status != 404:
            raise
    of_run = _listed(api, ns, name)
    pending = [a for a in of_run if is_pending(a)]
    if len(pending) == 1:
        return pending[0]
    if not of_run:
        raise CommandError(f"no Approval or run with Approvals named {name} in namespace {ns}")
    if not pending:
        table = approvals_table(of_run, _now())
        raise CommandError(f"run {name} has no pending Approval:\n{table}")
    raise CommandError(
        f"run {name} has {len(pending)} pending Approvals; name the one to vote on:\n"
        + approvals_table(pending, _now())
    )


def vote_patch(user: str, decision: str, comment: str | None) -> dict[str, Any]:
    # comment None removes an earlier comment: the vote is replaced, not merged with the old one.
    return {"spec": {"votes": {user: {"decision": decision, "comment": comment}}}}


def vote(api: client.ApiClient, ns: str, name: str, decision: str, comment: str | None) -> str:
    """Votes `decision` on the Approval `name` (or run `name`'s pending one) as the user the API
    server authenticates; returns what was done. The API server's refusal (RBAC, admission)
    is raised as it came; CommandError says what is wrong before anything is asked."""
    if comment is not None and len(comment) > COMMENT_MAX_LENGTH:
        too_long = f"the comment is longer than {COMMENT_MAX_LENGTH} characters"
        raise CommandError(too_long, EXIT_USAGE)
    from kubernetes import client

    approval = find_approval(api, ns, name)
    approval_name = approval.name
    user = whoami(api)
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        ns,
        APPROVALS,
        approval_name,
        vote_patch(user, decision, comment),
        _content_type=MERGE_PATCH,
    )
    spec = spec_of(approval)
    verb = "approved" if decision == APPROVE else "rejected"
    return (
        f"{user} {verb} {approval_name} (run {spec.pipeline_run}, job {spec.job}, "
        f"environment {spec.environment})"
    )


def _vote(decision: str) -> Callable[[argparse.Namespace, client.ApiClient, str], int]:
    def command(args: argparse.Namespace, api: client.ApiClient, ns: str) -> int:
        print(vote(api, ns, args.name, decision, args.comment))
        return 0

    return command


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def approvals_table(approvals: Sequence[Approval], now: datetime.datetime) -> str:
    headers = [
        "NAME",
        "RUN",
        "JOB",
        "ENVIRONMENT",
        "COMMIT",
        "IMAGES",
        "DECISION",
        "APPROVALS",
        "AGE",
    ]
    rows = []
    for a in sorted(approvals, key=lambda a: created(a.metadata)):
        spec, status = spec_of(a), a.status
        stamp = a.metadata.creation_timestamp
        age = format_duration((now - stamp).total_seconds()) if stamp else "-"
        rows.append(
            [
                a.name,
                spec.pipeline_run,
                spec.job,
                spec.environment,
                (spec.revision.sha or "-")[:8],
                ",".join(spec.images) or "-",
                status.decision or PENDING,
                status.approvals or f"-/{spec.required_approvals}",
                age,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace, api: client.ApiClient, ns: str) -> int:
    items = _listed(api, ns, args.run)
    if not items:
        print(f"No Approvals in namespace {ns}" + (f" for run {args.run}." if args.run else "."))
        return 0
    print(approvals_table(items, _now()))
    return 0
