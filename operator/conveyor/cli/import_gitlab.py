"""`conveyor import-gitlab FILE`: convert a .gitlab-ci.yml into a Pipeline manifest."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from conveyor.api.meta import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN

EXIT_LOSSLESS = 0
EXIT_INVALID = 2
EXIT_OMISSIONS = 3

DESCRIPTION = """\
Convert a .gitlab-ci.yml into a Conveyor Pipeline manifest, written as YAML on stdout.

Handled: YAML anchors, aliases and merge keys; extends; !reference; default and inherit:default;
variables (expand: false too); stages (with .pre and .post); image; services; script,
before_script and after_script; only/except; rules; workflow:rules and auto_cancel; needs
(optional and parallel:matrix ones too); when (delayed with start_in); allow_failure; retry;
timeout; interruptible; tags (the operator maps them to nodes: --tag-selector); environment;
resource_group; parallel and parallel:matrix; local includes (resolved from --root).

Everything Conveyor cannot honour yet (remote or template includes, cache, artifacts,
dependencies on jobs, trigger, inherit:variables, ...) and every predefined variable it
cannot set (CI_JOB_TOKEN, CI_API_V4_URL, ...) is listed on stderr as `JOB: KEY: what differs`.

FILE `-` reads standard input (then --name is required, and local includes come from --root,
default the current folder). Files are refused over 2 MiB, nested over 100 levels, or with
aliases that expand to over a million nodes.
"""

EPILOG = """\
exit status:
  0  converted; it runs as in GitLab
  3  converted; what runs differently is listed on stderr
  2  not converted; stderr says FILE:LINE: reason

example:
  conveyor import-gitlab .gitlab-ci.yml --repo https://git.example.com/team/app.git \\
    | kubectl apply -f -
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-gitlab",
        help="convert a .gitlab-ci.yml into a Pipeline manifest (YAML on stdout)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file", metavar="FILE", help="the .gitlab-ci.yml to convert, or - for standard input"
    )
    parser.add_argument(
        "--name",
        help="metadata.name of the Pipeline, a Kubernetes name such as my-app (default: the "
        "project folder's name, slugged)",
    )
    parser.add_argument("--repo", metavar="URL", help="git URL written to spec.source.url")
    parser.add_argument(
        "--root",
        metavar="DIR",
        type=Path,
        help="project root that local includes are read from (default: the git work tree "
        "holding FILE, else FILE's folder)",
    )
    parser.set_defaults(func=run)


def check_name(name: str) -> str | None:
    """Why the API server would refuse `name` as the Pipeline's metadata.name, or None."""
    if len(name) > DNS_SUBDOMAIN_MAX or not re.match(DNS_SUBDOMAIN_PATTERN, name):
        return (
            f"--name {name!r} is not a Kubernetes name: lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit, at most {DNS_SUBDOMAIN_MAX} "
            "characters (e.g. my-app)"
        )
    return None


def run(args: argparse.Namespace) -> int:
    from conveyor.gitlab.importer import import_file, import_text
    from conveyor.gitlab.yamlload import LoadError, decode
    from conveyor.yamllimits import MAX_INPUT_BYTES

    if args.name is not None and (problem := check_name(args.name)):
        print(f"conveyor: {problem}", file=sys.stderr)
        return EXIT_INVALID
    try:
        if args.file == "-":
            if args.name is None:
                print("conveyor: reading standard input (-) needs --name", file=sys.stderr)
                return EXIT_INVALID
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)  # no more than can be refused
            root = args.root or Path.cwd()
            text = decode(data, "<stdin>")
            result = import_text(text, "<stdin>", root, name=args.name, repo=args.repo)
        else:
            result = import_file(Path(args.file), name=args.name, repo=args.repo, root=args.root)
    except LoadError as exc:
        print(f"{exc.file}:{exc.line}: {exc.reason}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(result.to_yaml())
    for omission in result.omissions:
        print(omission, file=sys.stderr)
    return EXIT_OMISSIONS if result.omissions else EXIT_LOSSLESS
