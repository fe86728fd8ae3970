"""`conveyor version`: this command's version and the operator's, read from the cluster.

The operator's version is found where an operator installed from `deploy/` shows it: the image
tag of its Deployment (`app.kubernetes.io/name=conveyor`, component `operator`), else the
`conveyor_build_info` metric its `conveyor-metrics` Service serves, through the API server's
service proxy. A team member may be allowed neither: then the operator's version is "unknown",
with why, and the command still succeeds (the client's version is known).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from conveyor import __version__
from conveyor.cli.common import EXIT_OK, add_cluster_options, api_message, kube_command

if TYPE_CHECKING:
    from conveyor.kube.client import Kube

OPERATOR_SELECTOR = "app.kubernetes.io/name=conveyor,app.kubernetes.io/component=operator"
METRICS_SERVICE = "conveyor-metrics:9090"
BUILD_INFO = re.compile(r'^conveyor_build_info\{[^}]*version="([^"]+)"[^}]*\}\s+1(\.0)?\s*$', re.M)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "version",
        help="print this command's version and the operator's (from the cluster)",
        description="Print the conveyor command's version, and the operator's as the cluster "
        "shows it: its Deployment's image tag, or its conveyor_build_info metric.",
    )
    p.add_argument(
        "--client", action="store_true", help="only this command's version (no cluster needed)"
    )
    p.add_argument(
        "--operator-namespace",
        default="conveyor-system",
        metavar="NS",
        help="where the operator runs (default conveyor-system)",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", metavar="FORMAT")
    add_cluster_options(p, namespace=False)
    p.set_defaults(func=cmd_version, namespace=None)


# -- pure
def image_version(image: str) -> str:
    """`registry:5000/conveyor:0.2.0` -> `0.2.0`; a digest-pinned image gives its digest."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def deployment_version(deployments: Sequence[Mapping[str, Any]]) -> str | None:
    """The operator container's image tag (or digest) of the first Deployment that has one."""
    for d in deployments:
        template = ((d.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = template.get("containers") or ()
        operator = next((c for c in containers if c.get("name") == "operator"), None)
        if operator is None and containers:
            operator = containers[0]
        if operator is not None and operator.get("image"):
            return image_version(operator["image"])
    return None


def metrics_version(text: str) -> str | None:
    match = BUILD_INFO.search(text)
    return match.group(1) if match else None


# -- the command
def cmd_version(args: argparse.Namespace) -> int:
    if args.client:
        _print(args.output, None, None)
        return EXIT_OK
    return int(kube_command(_with_cluster)(args))


def _with_cluster(args: argparse.Namespace, kube: Kube, _ns: str) -> int:
    version, why = operator_version(kube, args.operator_namespace)
    _print(args.output, version, why)
    return EXIT_OK


def _print(output: str, version: str | None, why: str | None) -> None:
    if output == "json":
        body: dict[str, Any] = {"client": __version__}
        if version is not None or why is not None:
            body["operator"] = version
            if why:
                body["operatorUnknownBecause"] = why
        print(json.dumps(body, indent=2))
        return
    print(f"conveyor: {__version__}")
    if version is not None:
        print(f"operator: {version}")
    elif why is not None:
        print(f"operator: unknown ({why})")


def operator_version(kube: Kube, namespace: str) -> tuple[str | None, str | None]:
    """(version, None), or (None, why it is unknown)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    reasons = []
    try:
        response = client.AppsV1Api(kube.api).list_namespaced_deployment(
            namespace, label_selector=OPERATOR_SELECTOR, _preload_content=False
        )
        found = deployment_version(json.loads(response.data).get("items") or ())
        if found:
            return found, None
        reasons.append(f"no operator Deployment in {namespace}")
    except ApiException as e:
        reasons.append(f"deployments in {namespace}: {api_message(e)}")
    try:
        text = kube.core.connect_get_namespaced_service_proxy_with_path(
            METRICS_SERVICE, namespace, "metrics"
        )
        found = metrics_version(str(text))
        if found:
            return found, None
        reasons.append("its metrics have no conveyor_build_info")
    except ApiException as e:
        reasons.append(f"service {METRICS_SERVICE}: {api_message(e)}")
    return None, "; ".join(reasons)
