"""Entry point of the `conveyor` command: parses arguments and dispatches to subcommands."""

from __future__ import annotations

import argparse
import sys

from conveyor import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description=(
            "Conveyor runs GitLab-CI-style pipelines as Kubernetes custom resources "
            "(Pipeline, PipelineRun, Environment, Approval)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
