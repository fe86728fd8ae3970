"""Entry point of the `conveyor` command: builds the parser from the subcommand modules.

Subcommand modules import only what their options need; the Kubernetes client, Kopf and the
importer load when a command runs, so `--help` and `--version` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from conveyor import __version__
from conveyor.cli.common import EXIT_CODES, EXIT_INTERRUPTED, EXIT_USAGE

# Each module has `register(subparsers)`, which adds its subcommand(s) with `func=` set.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "operator_cmd",
    "runs",
    "logs",
    "artifacts",
    "import_gitlab",
    "environments",
    "approvals",
    "version",
    "completion",
    "dashboard",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description=(
            "Conveyor runs GitLab-CI-style pipelines as Kubernetes custom resources "
            "(Pipeline, PipelineRun, Environment, Approval)."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        import_module(f"conveyor.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # As git and kubectl do: no command is a usage error, not a success.
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `conveyor get | head`: the reader left; say nothing more (stdout is gone).
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
