"""Options every cluster-facing subcommand shares, named as kubectl names them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from conveyor.kube.client import Kube, KubeConfigError, Target


def add_cluster_options(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG)")
    group.add_argument("--context", help="the kubeconfig context to use")
    if namespace:
        group.add_argument(
            "-n", "--namespace", help="namespace (default: the context's namespace, or default)"
        )


def target(args: argparse.Namespace) -> Target:
    return Target(kubeconfig=args.kubeconfig, context=args.context)


def namespace(args: argparse.Namespace) -> str:
    return args.namespace or target(args).default_namespace()


def fail(message: str, code: int = 1) -> int:
    print(f"conveyor: {message}", file=sys.stderr)
    return code


def config_error(e: KubeConfigError) -> int:
    return fail(str(e))


def api_message(e: ApiException) -> str:
    """The API server's own words: an admission policy's or the schema's refusal says exactly
    what is wrong, and the user should read it as it was said."""
    try:
        return json.loads(e.body or "{}").get("message") or f"{e.status} {e.reason}"
    except (ValueError, AttributeError):
        return f"{e.status} {e.reason}"


def kube_command(command: Callable[[argparse.Namespace, Kube, str], int]) -> Any:
    """A subcommand's function, given the cluster and namespace; configuration and API errors
    become one clear line and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            kube = Kube(target(args).api_client())
            return command(args, kube, namespace(args))
        except KubeConfigError as e:
            return fail(str(e))
        except ApiException as e:
            return fail(api_message(e))

    return run
