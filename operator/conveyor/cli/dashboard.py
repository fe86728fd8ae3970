"""`conveyor dashboard`: the pipeline view in a browser, on 127.0.0.1 (conveyor.dashboard)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from conveyor.cli.common import EXIT_OK, add_cluster_options, cluster_errors, fail, target

DEFAULT_PORT = 8484


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="a pipeline view in the browser: runs, their graphs, logs, approve/play/retry",
        description="Serve, on 127.0.0.1 only, a web page that lists runs and draws each as "
        "GitLab draws a pipeline (stages as columns, jobs coloured by status, needs as edges), "
        "live, with each job's log and buttons to approve, reject, play and retry. It uses "
        "your kubeconfig: the page sees and does what you may, and the API server's refusals "
        "are shown as it words them. Ctrl-C stops it.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="N",
        help=f"the port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="the runs of every namespace (needs the right to list them cluster-wide)",
    )
    add_cluster_options(p)
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        return fail(f"--port {args.port}: not a port number", 2)
    if args.all_namespaces and args.namespace:
        return fail("-n and -A do not go together", 2)
    where = target(args)
    api: list[Any] = []

    def call() -> int:
        from conveyor.dashboard.server import Dashboard, serve
        from conveyor.kube.client import Kube

        cfg = where.configuration()
        # Each open page holds a watch, and a followed log a stream: room for several.
        cfg.connection_pool_maxsize = 32
        from kubernetes import client

        api.append(client.ApiClient(cfg))
        ns = None if args.all_namespaces else (args.namespace or where.default_namespace())
        kube = Kube(api[0])
        # Fail now, in the terminal, if the cluster cannot be read at all.
        kube.list_runs(ns)
        dashboard = Dashboard(kube, ns, host=cfg.host)
        try:
            server = serve(dashboard, args.port)
        except OSError as e:
            return fail(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}")
        port = server.server_address[1]
        scope = f"namespace {ns}" if ns else "all namespaces"
        print(f"Conveyor dashboard of {scope}: http://127.0.0.1:{port}/ (Ctrl-C stops it)")
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            dashboard.stopping.set()
            server.server_close()
        return EXIT_OK

    return cluster_errors(call, lambda: api[0].configuration.host if api else None)
