"""`conveyor completion bash|zsh|fish`: shell completion scripts, generated from the parser.

Commands, subcommands, options and option choices come from the argparse definitions, so they
never fall behind; run names are asked of the cluster (`conveyor get -o name`) when a RUN is
being completed, with the namespace, context and kubeconfig given on the line so far.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from conveyor.cli.common import EXIT_OK

SHELLS = ("bash", "zsh", "fish")
# Positional metavars completed with run names from the cluster.
RUN_METAVARS = frozenset({"RUN", "RUN|APPROVAL"})
FILE_OPTIONS = frozenset({"--kubeconfig", "--target-kubeconfig", "--root", "--git-cache"})


@dataclass
class Command:
    """One command as completion sees it."""

    name: str
    help: str
    options: list[str] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)  # option -> its choices
    takes_run: bool = False
    takes_file: bool = False
    subcommands: list[Command] = field(default_factory=list)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print the completion script of SHELL. Load it with\n"
        "  bash:  source <(conveyor completion bash)   (or save it in "
        "/etc/bash_completion.d/conveyor)\n"
        "  zsh:   source <(conveyor completion zsh)\n"
        "  fish:  conveyor completion fish | source   (or save it in "
        "~/.config/fish/completions/conveyor.fish)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", metavar="SHELL", choices=SHELLS, help="bash, zsh or fish")
    p.set_defaults(func=cmd_completion)


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """The commands of `parser` (pure: read from its actions)."""
    out = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            command = Command(name, helps.get(name, ""))
            for a in sub._actions:
                if isinstance(a, argparse._SubParsersAction):
                    command.subcommands = commands(sub)
                elif a.option_strings and a.help != argparse.SUPPRESS:
                    command.options += a.option_strings
                    if a.choices:
                        for opt in a.option_strings:
                            command.choices[opt] = [str(c) for c in a.choices]
                elif not a.option_strings:
                    command.takes_run |= a.metavar in RUN_METAVARS
                    command.takes_file |= a.metavar == "FILE"
            out.append(command)
    return out


def _all_commands(cmds: list[Command]) -> list[tuple[str, Command]]:
    """(key, command): `run`, and `env add` as `env_add`."""
    out = []
    for c in cmds:
        out.append((c.name, c))
        out += [(f"{c.name}_{s.name}", s) for s in c.subcommands]
    return out


def bash_script(cmds: list[Command]) -> str:
    top = " ".join(c.name for c in cmds)
    cases = []
    for key, c in _all_commands(cmds):
        subs = " ".join(s.name for s in c.subcommands)
        cases.append(
            f'    {key}) opts="{" ".join(c.options)}"; subs="{subs}"; '
            f"runs={int(c.takes_run)}; files={int(c.takes_file)} ;;"
        )
    choices = []
    seen: set[str] = set()
    for _, c in _all_commands(cmds):
        for opt, values in c.choices.items():
            if opt not in seen:
                seen.add(opt)
                words = " ".join(values)
                choices.append(
                    f'    {opt}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;'
                )
    files = "|".join(sorted(FILE_OPTIONS))
    return f"""# bash completion for conveyor (conveyor completion bash)
_conveyor_runs() {{
  local i cluster=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in
      -n|--namespace|--context|--kubeconfig)
        cluster+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}") ;;
    esac
  done
  conveyor get -o name "${{cluster[@]}}" 2>/dev/null | sed 's|.*/||'
}}

_conveyor() {{
  local cur prev cmd key i opts subs runs files positional=0
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "{top} --help --version" -- "$cur"))
    return
  fi
  cmd="${{COMP_WORDS[1]}}"
  key="$cmd"
  case "$prev" in
{chr(10).join(choices)}
    {files}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  case "$key" in
{chr(10).join(cases)}
    *) return ;;
  esac
  if [[ -n "$subs" ]]; then
    if [[ $COMP_CWORD -eq 2 ]]; then
      COMPREPLY=($(compgen -W "$subs --help" -- "$cur"))
      return
    fi
    key="${{cmd}}_${{COMP_WORDS[2]}}"
    case "$key" in
{chr(10).join("  " + c for c in cases)}
    esac
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
    return
  fi
  for ((i = 2; i < COMP_CWORD; i++)); do
    if [[ "${{COMP_WORDS[i]}}" != -* && "${{COMP_WORDS[i-1]}}" != -* ]]; then
      positional=$((positional + 1))
    fi
  done
  if [[ $runs -eq 1 && $positional -eq 0 ]]; then
    COMPREPLY=($(compgen -W "$(_conveyor_runs)" -- "$cur"))
  elif [[ $files -eq 1 ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -F _conveyor conveyor
"""


def zsh_script(cmds: list[Command]) -> str:
    # zsh runs the bash function through its bashcompinit layer: one definition for both.
    return (
        "# zsh completion for conveyor (conveyor completion zsh)\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(cmds)
    )


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(cmds: list[Command]) -> str:
    names = " ".join(c.name for c in cmds)
    lines = [
        "# fish completion for conveyor (conveyor completion fish)",
        "function __conveyor_runs",
        "    set -l args (commandline -opc)",
        "    set -l cluster",
        "    for i in (seq (count $args))",
        "        switch $args[$i]",
        "            case -n --namespace --context --kubeconfig",
        "                set -a cluster $args[$i] $args[(math $i + 1)]",
        "        end",
        "    end",
        "    conveyor get -o name $cluster 2>/dev/null | string replace -r '.*/' ''",
        "end",
        "complete -c conveyor -f",
    ]
    for c in cmds:
        lines.append(
            f"complete -c conveyor -n 'not __fish_seen_subcommand_from {names}' "
            f"-a {c.name} -d {_fish_quote(c.help)}"
        )
        when = f"__fish_seen_subcommand_from {c.name}"
        for s in c.subcommands:
            lines.append(f"complete -c conveyor -n '{when}' -a {s.name} -d {_fish_quote(s.help)}")
        for command in [c, *c.subcommands]:
            cond = (
                when if command is c else f"{when}; and __fish_seen_subcommand_from {command.name}"
            )
            for opt in command.options:
                flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
                extra = ""
                if opt in command.choices:
                    extra = f" -x -a {_fish_quote(' '.join(command.choices[opt]))}"
                elif opt in FILE_OPTIONS:
                    extra = " -r -F"
                lines.append(f"complete -c conveyor -n '{cond}' {flag}{extra}")
            if command.takes_run:
                lines.append(f"complete -c conveyor -n '{cond}' -a '(__conveyor_runs)'")
            if command.takes_file:
                lines.append(f"complete -c conveyor -n '{cond}' -F")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    cmds = commands(parser)
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](cmds)


def cmd_completion(args: argparse.Namespace) -> int:
    from conveyor.cli.main import build_parser

    sys.stdout.write(script(args.shell, build_parser()))
    return EXIT_OK
