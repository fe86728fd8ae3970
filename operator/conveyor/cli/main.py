"""Entry point of the `conveyor` command: builds the parser from the subcommand modules."""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from conveyor import __version__

# Each module has `register(subparsers)`, which adds its subcommand(s) with `func=` set.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "operator_cmd",
    "runs",
    "logs",
    "import_gitlab",
    "environments",
    "approvals",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description=(
            "Conveyor runs GitLab-CI-style pipelines as Kubernetes custom resources "
            "(Pipeline, PipelineRun, Environment, Approval)."
        ),
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
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
