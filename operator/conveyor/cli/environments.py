"""`conveyor env add|list`: the platform team's deploy targets.

`env add` stores a target cluster's kubeconfig in a Secret `<NS>.<NAME>.kubeconfig` of the
credentials namespace (the operator's --credentials-namespace, `conveyor-system` by default: no
team can read it) and creates (or updates) the Environment pointing at it. Two clusters are in
play: `--kubeconfig`/`--context`/`-n` name where Conveyor runs, as in every conveyor command, and
`--target-kubeconfig`/`--target-context`/`--target-namespace` the deploy target.
"""

from __future__ import annotations

import argparse
import base64
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from conveyor.api import API_VERSION, GROUP, VERSION, ModelError, from_dict, to_dict
from conveyor.api.durations import parse_duration
from conveyor.api.environment import (
    DEFAULT_APPROVAL_TIMEOUT,
    DEFAULT_KUBECONFIG_KEY,
    MAX_REQUIRED_APPROVALS,
    Environment,
    EnvironmentSpec,
)
from conveyor.api.meta import DNS_SUBDOMAIN_MAX, LABEL_ENVIRONMENT, LABEL_ENVIRONMENT_NAMESPACE
from conveyor.cli.common import EXIT_USAGE, add_cluster_options, cluster_errors, fail, target
from conveyor.cli.objects import parse_each, spec_of
from conveyor.engine.names import short_hash
from conveyor.kube.defaults import DEFAULT_CREDENTIALS_NAMESPACE

if TYPE_CHECKING:
    from kubernetes import client

ENVIRONMENTS = "environments"
VARIABLE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)
# Credentials a kubeconfig may name by path: in the operator those paths would be the operator's
# own files (its service account token, say), so only inline *-data credentials are accepted.
PATH_FIELDS = {
    "users": ("client-certificate", "client-key", "tokenFile"),
    "clusters": ("certificate-authority",),
}


class KubeconfigRefused(ValueError):
    """The target kubeconfig cannot be stored; the message never quotes the file."""


def register(subparsers: argparse._SubParsersAction) -> None:
    env = subparsers.add_parser(
        "env",
        help="manage Environments (deploy targets)",
        description="Deploy targets: a kubeconfig Secret and context, a namespace, approvers.",
    )
    sub = env.add_subparsers(dest="env_command", metavar="COMMAND", required=True)

    add = sub.add_parser(
        "add",
        help="create or update an Environment and its kubeconfig Secret",
        description=(
            "Store the target's kubeconfig in the Secret NS.NAME.kubeconfig of the credentials "
            "namespace (where no team can read it) and create (or update) Environment NAME in "
            "namespace NS. --target-kubeconfig, --target-context and --target-namespace describe "
            "the deploy target; --kubeconfig, --context and -n the cluster where Conveyor runs, "
            "as in every conveyor command."
        ),
    )
    add.add_argument("name", metavar="NAME", help="name of the Environment, e.g. prod")
    target_group = add.add_argument_group("deploy target")
    target_group.add_argument(
        "--target-kubeconfig",
        required=True,
        metavar="FILE",
        help="kubeconfig of the target cluster (inline credentials; no exec or auth-provider)",
    )
    target_group.add_argument(
        "--target-context",
        required=True,
        metavar="CTX",
        help="context of FILE that deploys use",
    )
    target_group.add_argument(
        "--target-namespace",
        required=True,
        metavar="NS",
        help="namespace of the target cluster deploys go to",
    )
    # The spellings before the options were made consistent: refused with what replaced them,
    # never taken in a new meaning.
    for old in ("--kube-context", "--cluster-kubeconfig"):
        add.add_argument(old, dest=f"old_{old[2:].replace('-', '_')}", help=argparse.SUPPRESS)
    target_group.add_argument("--url", help="URL of the deployed application")
    target_group.add_argument(
        "--serves",
        action="append",
        default=[],
        metavar="PATTERN",
        help="an environment name this Environment also serves (repeatable), * for any "
        "characters: review/* serves every review app; put $CI_ENVIRONMENT_SLUG in "
        "--target-namespace to give each its own namespace",
    )
    target_group.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variable of deploys to this environment (repeatable), e.g. APP_FQDN=app.example",
    )
    protection = add.add_argument_group("approvals")
    protection.add_argument(
        "--approvers",
        default="",
        metavar="LIST",
        help="comma-separated usernames and group:<name> entries, e.g. alice,group:ops",
    )
    protection.add_argument(
        "--required-approvals",
        type=int,
        default=None,
        metavar="N",
        help="approvals a deploy needs (default: 1 with --approvers, else 0: unprotected)",
    )
    protection.add_argument(
        "--allow-initiator",
        action="store_true",
        help="let the user who started a run approve its deploy",
    )
    protection.add_argument(
        "--approval-timeout",
        default=DEFAULT_APPROVAL_TIMEOUT,
        metavar="DURATION",
        help=f"how long a deploy waits for approvals (default {DEFAULT_APPROVAL_TIMEOUT})",
    )
    add_cluster_options(add)
    add.add_argument(
        "--credentials-namespace",
        default=DEFAULT_CREDENTIALS_NAMESPACE,
        metavar="NS",
        help="where the kubeconfig Secret goes: the operator's --credentials-namespace "
        f"(default {DEFAULT_CREDENTIALS_NAMESPACE}), which no team can read",
    )
    add.set_defaults(func=_guard(cmd_add))

    listing = sub.add_parser("list", help="list Environments")
    add_cluster_options(listing)
    listing.set_defaults(func=_guard(cmd_list))


RENAMED = (
    "env add's options changed: --kubeconfig, --context and -n now name the cluster where "
    "Conveyor runs, as in every command; the deploy target is --target-kubeconfig, "
    "--target-context and --target-namespace"
)


def _guard(command: Callable[[argparse.Namespace, client.ApiClient, str], int]) -> Any:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "old_kube_context", None) or getattr(args, "old_cluster_kubeconfig", None):
            return fail(RENAMED, EXIT_USAGE)
        where = target(args)
        api: list[Any] = []

        def call() -> int:
            api.append(where.api_client())
            return command(args, api[0], args.namespace or where.default_namespace())

        return cluster_errors(call, lambda: api[0].configuration.host if api else None)

    return run


def check_kubeconfig(data: bytes, context: str, source: str = "the kubeconfig") -> None:
    """Refuses a kubeconfig the operator could not or should not use; messages name the problem
    and the entry, never the file's content (it holds credentials)."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise KubeconfigRefused(f"{source} is not valid YAML{where}") from None
    if not isinstance(doc, Mapping) or doc.get("kind", "Config") != "Config":
        raise KubeconfigRefused(f"{source} is not a kubeconfig (kind: Config)")
    sections: dict[str, Sequence[Any]] = {}
    for section in ("clusters", "users", "contexts"):
        entries = doc.get(section) or []
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise KubeconfigRefused(f"{source}: {section} must be a list of named entries")
        sections[section] = entries
    for entry in sections["users"]:
        user = entry.get("user") or {}
        for plugin in ("exec", "auth-provider"):
            if isinstance(user, Mapping) and user.get(plugin):
                raise KubeconfigRefused(
                    f"{source}: user {entry.get('name')!r} uses an {plugin} plugin; the operator "
                    "runs no credential plugins: use a token or client certificate "
                    "(e.g. a ServiceAccount token) instead"
                )
    for section, fields in PATH_FIELDS.items():
        for entry in sections[section]:
            body = entry.get(section[:-1]) or {}
            for name in fields:
                if isinstance(body, Mapping) and body.get(name):
                    raise KubeconfigRefused(
                        f"{source}: {section[:-1]} {entry.get('name')!r} names a file "
                        f"({name}); embed it with `kubectl config view --raw --flatten`"
                    )
    contexts = {e.get("name"): e.get("context") or {} for e in sections["contexts"]}
    if context not in contexts:
        known = ", ".join(sorted(str(c) for c in contexts)) or "none"
        raise KubeconfigRefused(f"{source} has no context {context!r} (contexts: {known})")
    chosen = contexts[context]
    cluster, user = chosen.get("cluster"), chosen.get("user")
    if cluster not in {e.get("name") for e in sections["clusters"]}:
        raise KubeconfigRefused(f"{source}: context {context!r} names unknown cluster {cluster!r}")
    if user is not None and user not in {e.get("name") for e in sections["users"]}:
        raise KubeconfigRefused(f"{source}: context {context!r} names unknown user {user!r}")


def parse_variables(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        m = VARIABLE.match(item)
        if not m:
            raise ValueError(
                f"--var {item!r}: expected KEY=VALUE with KEY like [A-Za-z_][A-Za-z0-9_]*"
            )
        out[m.group(1)] = m.group(2)
    return out


def secret_name(namespace: str, environment: str) -> str:
    """The kubeconfig Secret of Environment `environment` of namespace `namespace`: one Secret
    per Environment in the shared credentials namespace."""
    name = f"{namespace}.{environment}.kubeconfig"
    if len(name) <= DNS_SUBDOMAIN_MAX:
        return name
    tag = short_hash(namespace, environment, length=8)
    return f"{name[: DNS_SUBDOMAIN_MAX - 20]}.{tag}.kubeconfig"


def environment_spec(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    """The Environment's spec from the options, held to the model's (the CRD's) rules."""
    approvers = [a.strip() for a in args.approvers.split(",") if a.strip()]
    required = args.required_approvals
    if required is None:
        required = 1 if approvers else 0
    if not 0 <= required <= MAX_REQUIRED_APPROVALS:
        raise ValueError(f"--required-approvals must be between 0 and {MAX_REQUIRED_APPROVALS}")
    if required and not approvers:
        raise ValueError("--required-approvals > 0 needs --approvers")
    parse_duration(args.approval_timeout)
    raw: dict[str, Any] = {
        "kubeconfigSecret": {
            "name": secret_name(namespace, args.name),
            "key": DEFAULT_KUBECONFIG_KEY,
        },
        "context": args.target_context,
        "namespace": args.target_namespace,
        "protection": {
            "requiredApprovals": required,
            "approvers": approvers,
            "allowInitiator": bool(args.allow_initiator),
            "approvalTimeout": args.approval_timeout,
        },
    }
    if args.url:
        raw["url"] = args.url
    if args.serves:
        raw["names"] = list(args.serves)
    variables = parse_variables(args.var)
    if variables:
        raw["variables"] = variables
    try:
        return to_dict(from_dict(EnvironmentSpec, raw, "spec"))
    except ModelError as e:
        raise ValueError(str(e)) from None


def minimal_kubeconfig(data: bytes, context: str) -> bytes:
    """Only `context`, its cluster and its user: the Secret must not carry the other
    clusters' credentials the file may hold (call check_kubeconfig first)."""
    doc = yaml.safe_load(data)
    chosen = next(c for c in doc["contexts"] if c.get("name") == context)
    cluster = chosen["context"]["cluster"]
    user = chosen["context"].get("user")
    minimal = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for c in doc.get("clusters") or [] if c.get("name") == cluster],
        "users": [u for u in doc.get("users") or [] if u.get("name") == user],
        "contexts": [chosen],
        "current-context": context,
    }
    return yaml.safe_dump(minimal, sort_keys=True).encode()


def cmd_add(args: argparse.Namespace, api: client.ApiClient, ns: str) -> int:
    path = Path(args.target_kubeconfig)
    try:
        data = path.read_bytes()
    except OSError as e:
        return fail(f"cannot read {path}: {e.strerror}", EXIT_USAGE)
    try:
        check_kubeconfig(data, args.target_context, str(path))
        data = minimal_kubeconfig(data, args.target_context)
        spec = environment_spec(args, ns)
    except ValueError as e:  # KubeconfigRefused included
        return fail(str(e), EXIT_USAGE)
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    name = secret_name(ns, args.name)
    where = args.credentials_namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "labels": {
                LABEL_ENVIRONMENT: args.name,
                LABEL_ENVIRONMENT_NAMESPACE: ns,
                "app.kubernetes.io/part-of": "conveyor",
            },
        },
        "data": {DEFAULT_KUBECONFIG_KEY: base64.b64encode(data).decode("ascii")},
    }
    try:
        core.create_namespaced_secret(where, secret)
        secret_verb = "created"
    except ApiException as e:
        if e.status != 409:
            raise
        core.replace_namespaced_secret(name, where, secret)
        secret_verb = "updated"

    custom = client.CustomObjectsApi(api)
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Environment",
        "metadata": {"name": args.name},
        "spec": spec,
    }
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, ENVIRONMENTS, body)
        env_verb = "created"
    except ApiException as e:
        if e.status != 409:
            raise
        current = custom.get_namespaced_custom_object(GROUP, VERSION, ns, ENVIRONMENTS, args.name)
        # Replace the whole spec (a merge would keep variables and approvers no longer wanted);
        # the resourceVersion makes a concurrent edit a conflict rather than a lost update.
        body["metadata"] = {**current["metadata"]}
        custom.replace_namespaced_custom_object(GROUP, VERSION, ns, ENVIRONMENTS, args.name, body)
        env_verb = "updated"
    print(f"secret/{name} {secret_verb} in namespace {where}")
    print(f"environment.{GROUP}/{args.name} {env_verb}")
    return 0


def cmd_list(args: argparse.Namespace, api: client.ApiClient, ns: str) -> int:
    from kubernetes import client

    bodies = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, ns, ENVIRONMENTS
    )["items"]
    if not bodies:
        print(f"No Environments in namespace {ns}.")
        return 0
    environments = parse_each(Environment, bodies)
    if not environments:
        return 0  # each was refused, and said so
    headers = ["NAME", "TARGET NAMESPACE", "CONTEXT", "URL", "APPROVALS", "APPROVERS"]
    rows = []
    for e in sorted(environments, key=lambda e: e.name):
        spec = spec_of(e)
        protection = spec.protection
        rows.append(
            [
                e.name,
                spec.namespace,
                spec.context or "-",
                spec.url or "-",
                str(protection.required_approvals),
                ",".join(protection.approvers) or "-",
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
