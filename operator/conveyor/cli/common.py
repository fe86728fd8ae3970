"""Options every cluster-facing subcommand shares, named as kubectl names them, and the one place
where cluster and API errors become a single line with a documented exit code.

The Kubernetes client is imported only when a command talks to a cluster: `conveyor --help`,
`--version` and `import-gitlab` never pay for it (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client.rest import ApiException

    from conveyor.kube.client import Kube, Target

# Exit codes of every subcommand (README, "Exit codes"; `conveyor --help`).
EXIT_OK = 0
EXIT_FAILED = 1  # the cluster refused, could not be reached, or what was waited for failed
EXIT_USAGE = 2  # bad arguments or input: nothing was done
EXIT_DIFFERS = 3  # import-gitlab: converted, with what runs differently listed
EXIT_INTERRUPTED = 130

EXIT_CODES = """\
exit status:
  0    done
  1    failed: the API server refused or could not be reached, or what was waited for failed
  2    usage: bad arguments or input (nothing was done)
  3    import-gitlab only: converted, with what runs differently listed on stderr
  130  interrupted (Ctrl-C)
"""


def add_cluster_options(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG)")
    group.add_argument("--context", help="the kubeconfig context to use")
    if namespace:
        group.add_argument(
            "-n", "--namespace", help="namespace (default: the context's namespace, or default)"
        )


def target(args: argparse.Namespace) -> Target:
    from conveyor.kube.client import Target

    # One attempt per request: a CLI says at once that the server cannot be reached, where
    # urllib3's default retries kept a user waiting in silence.
    return Target(kubeconfig=args.kubeconfig, context=args.context, retries=0)


def namespace(args: argparse.Namespace) -> str:
    return args.namespace or target(args).default_namespace()


class CommandError(Exception):
    """What a command refuses to do, said on one line (exit code `code`). The commands' functions
    raise it, so the CLI and the dashboard report the same refusal in the same words."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"conveyor: {message}", file=sys.stderr)
    return code


def api_message(e: ApiException) -> str:
    """The API server's own words: an admission policy's or the schema's refusal says exactly
    what is wrong, and the user should read it as it was said."""
    try:
        return json.loads(e.body or "{}").get("message") or f"{e.status} {e.reason}"
    except (ValueError, AttributeError):
        return f"{e.status} {e.reason}"


def unreachable(error: BaseException) -> str:
    """urllib3's nested exception text, down to its last cause: "connection refused"."""
    cause: BaseException = error
    while isinstance(reason := getattr(cause, "reason", None), BaseException):
        cause = reason
    text = str(cause)
    for noise in ("Failed to establish a new connection: ",):
        text = text.split(noise)[-1]
    # "[Errno 111] Connection refused" -> "connection refused"
    if text.startswith("[Errno") and "] " in text:
        text = text.split("] ", 1)[1]
    text = text.strip().rstrip(")\"'")
    return (text[:1].lower() + text[1:]) if text else type(cause).__name__


def cluster_errors(call: Callable[[], int], host: Callable[[], str | None]) -> int:
    """Runs `call`; configuration, connection and API errors become one line and exit code 1.
    `host` names the API server for a connection error."""
    import urllib3.exceptions
    from kubernetes.client.rest import ApiException

    from conveyor.kube.client import KubeConfigError

    try:
        return call()
    except CommandError as e:
        return fail(str(e), e.code)
    except KubeConfigError as e:
        return fail(str(e))
    except ApiException as e:
        if e.status == 0 or e.status is None:  # the client's own wrapper of a socket error
            return fail(f"cannot reach the API server at {host() or '?'}: {e.reason}")
        return fail(api_message(e))
    except BrokenPipeError:
        raise  # our reader left (`| head`), not the API server: main ends quietly
    except (urllib3.exceptions.HTTPError, OSError) as e:
        return fail(f"cannot reach the API server at {host() or '?'}: {unreachable(e)}")


def kube_command(command: Callable[[argparse.Namespace, Kube, str], int]) -> Any:
    """A subcommand's function, given the cluster and namespace; configuration and API errors
    become one clear line and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        from conveyor.kube.client import Kube

        where = target(args)
        api: list[Any] = []

        def call() -> int:
            api.append(where.api_client())
            return command(args, Kube(api[0]), args.namespace or where.default_namespace())

        return cluster_errors(call, lambda: api[0].configuration.host if api else None)

    return run
