"""Regular expressions from users (`=~ /re/i`, `only: [/^release-.*$/]`), matched in bounded time.

GitLab compiles these as "untrusted regexps" with RE2, whose matching time is linear in the input.
Python's `re` backtracks, so a pattern like `(a+)+$` can take exponential time. Rather than a
worker with a timeout (not pure) or a new dependency, we do what RE2 does: Python's own parser
(`re._parser`) reads the pattern, and a Thompson-NFA simulation (a "Pike VM" without captures)
decides whether it matches anywhere. The cost is at most pattern states x input length, both
capped below, so no pattern or value can stall the operator.

Like RE2, backreferences, lookaround, atomic groups and conditionals are refused. Flags follow
GitLab's `/re/flags` (turned into RE2 inline flags): `i` ignore case, `m` multi-line (`^`/`$` at
line breaks), `s` dot matches newline, `U` (ungreedy) is accepted and changes nothing for a
yes/no match. `$` without `m` matches only at the very end (RE2), not before a final newline.
"""

from __future__ import annotations

import re
import re._constants as C
import re._parser as sre_parse  # Python's own regex parser (3.11+)
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# re._parser has no type information: what an item holds depends on its opcode.
SreValue = Any
# A program instruction: its opcode, then operands whose types depend on the opcode.
Instruction = tuple[Any, ...]

MAX_PATTERN_LENGTH = 1024
MAX_PROGRAM_SIZE = 4000  # NFA instructions, after expanding counted repeats like {2,50}
MAX_INPUT_LENGTH = 16384  # longer values are matched on their first MAX_INPUT_LENGTH characters

_RUBY_SYNTAX = re.compile(r"^/(?P<body>.*)/(?P<flags>[ismU]*)$", re.DOTALL)

Predicate = Callable[[str], bool]


class RegexError(ValueError):
    """A pattern that is invalid, unsupported (like RE2) or too large."""


# Instructions of the NFA program. Each is a tuple; the first element is the opcode.
_CHAR, _SPLIT, _JMP, _ASSERT, _MATCH = range(5)


@dataclass(frozen=True)
class Regex:
    """A compiled pattern; `search(text)` says whether it matches anywhere in `text`."""

    source: str
    program: tuple[Instruction, ...]

    def search(self, text: str) -> bool:
        return _run(self.program, text[:MAX_INPUT_LENGTH])


def parse_ruby_syntax(text: str) -> tuple[str, str] | None:
    """`/body/flags` -> (body, flags), or None if `text` is not in that form."""
    match = _RUBY_SYNTAX.match(text)
    if match is None:
        return None
    return match.group("body"), match.group("flags")


def compile_ruby(text: str) -> Regex:
    """Compile GitLab's `/pattern/flags` form."""
    parts = parse_ruby_syntax(text)
    if parts is None:
        raise RegexError(f"not a /regex/: {text!r}")
    body, flags = parts
    return compile_pattern(body.replace("\\/", "/"), flags)


@lru_cache(maxsize=512)
def compile_pattern(pattern: str, flags: str = "") -> Regex:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"regular expression longer than {MAX_PATTERN_LENGTH} characters")
    py_flags = 0
    for flag in flags:
        py_flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "U": 0}[flag]
    # RE2 and Ruby spell "end of text" \z; Python spells it \Z.
    pattern = re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern)
    try:
        parsed = sre_parse.parse(pattern, py_flags)
    except re.error as exc:
        raise RegexError(f"invalid regular expression: {exc}") from exc
    builder = _Builder()
    builder.emit_seq(parsed.data, parsed.state.flags)
    builder.add((_MATCH,))
    return Regex(pattern, tuple(builder.program))


class _Builder:
    def __init__(self) -> None:
        self.program: list[Instruction] = []

    def add(self, instruction: Instruction) -> int:
        if len(self.program) >= MAX_PROGRAM_SIZE:
            raise RegexError("regular expression too large")
        self.program.append(instruction)
        return len(self.program) - 1

    def patch(self, index: int, instruction: Instruction) -> None:
        self.program[index] = instruction

    def emit_seq(self, items: list[tuple[SreValue, SreValue]], flags: int) -> None:
        for op, av in items:
            self.emit(op, av, flags)

    def emit(self, op: object, av: SreValue, flags: int) -> None:
        ignore_case = bool(flags & re.IGNORECASE)
        if op in (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN):
            self.add((_CHAR, _predicate(op, av, flags, ignore_case)))
        elif op is C.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            self.emit_seq(sub.data, (flags | add_flags) & ~del_flags)
        elif op is C.BRANCH:
            _, alternatives = av
            self._branch(list(alternatives), flags)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            if op is C.POSSESSIVE_REPEAT:
                raise RegexError("possessive quantifiers are not supported (as in RE2)")
            self._repeat(low, high, sub.data, flags)
        elif op is C.AT:
            self.add((_ASSERT, av, bool(flags & re.MULTILINE)))
        elif op in (C.GROUPREF, C.GROUPREF_EXISTS):
            raise RegexError("backreferences are not supported (as in RE2)")
        elif op in (C.ASSERT, C.ASSERT_NOT):
            raise RegexError("lookaround assertions are not supported (as in RE2)")
        elif op is C.ATOMIC_GROUP:
            raise RegexError("atomic groups are not supported (as in RE2)")
        else:
            raise RegexError(f"unsupported regular expression construct {op}")

    def _branch(self, alternatives: list[SreValue], flags: int) -> None:
        jumps: list[int] = []
        for i, alt in enumerate(alternatives):
            if i < len(alternatives) - 1:
                split = self.add((_SPLIT, 0, 0))
                self.emit_seq(alt.data, flags)
                jumps.append(self.add((_JMP, 0)))
                self.patch(split, (_SPLIT, split + 1, len(self.program)))
            else:
                self.emit_seq(alt.data, flags)
        for jump in jumps:
            self.patch(jump, (_JMP, len(self.program)))

    def _repeat(
        self, low: int, high: int, items: list[tuple[SreValue, SreValue]], flags: int
    ) -> None:
        for _ in range(low):
            self.emit_seq(items, flags)
        if high == C.MAXREPEAT:
            # L: split body, out; body; jmp L
            split = self.add((_SPLIT, 0, 0))
            self.emit_seq(items, flags)
            self.add((_JMP, split))
            self.patch(split, (_SPLIT, split + 1, len(self.program)))
            return
        splits: list[int] = []
        for _ in range(high - low):
            splits.append(self.add((_SPLIT, 0, 0)))
            self.emit_seq(items, flags)
        end = len(self.program)
        for split in splits:
            self.patch(split, (_SPLIT, split + 1, end))


def _predicate(op: object, av: SreValue, flags: int, ignore_case: bool) -> Predicate:
    if op is C.ANY:
        if flags & re.DOTALL:
            return lambda c: True
        return lambda c: c != "\n"
    if op in (C.LITERAL, C.NOT_LITERAL):
        char = chr(av)
        if ignore_case:
            folded = char.casefold()
            hit: Predicate = lambda c: c.casefold() == folded  # noqa: E731
        else:
            hit = lambda c: c == char  # noqa: E731
        return hit if op is C.LITERAL else (lambda c: not hit(c))
    # IN: a character class.
    items = list(av)
    negate = bool(items) and items[0][0] is C.NEGATE
    if negate:
        items = items[1:]
    tests = [_class_item(kind, value) for kind, value in items]

    def inside(c: str) -> bool:
        if any(t(c) for t in tests):
            return True
        return ignore_case and any(t(x) for x in (c.lower(), c.upper()) for t in tests)

    return (lambda c: not inside(c)) if negate else inside


_CATEGORIES: dict[object, Predicate] = {
    C.CATEGORY_DIGIT: lambda c: c.isdigit(),
    C.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    C.CATEGORY_SPACE: lambda c: c.isspace(),
    C.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    C.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    C.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}


def _class_item(kind: object, value: SreValue) -> Predicate:
    if kind is C.LITERAL:
        char = chr(value)
        return lambda c: c == char
    if kind is C.RANGE:
        low, high = value
        return lambda c: low <= ord(c) <= high
    if kind is C.CATEGORY:
        return _CATEGORIES[value]
    raise RegexError(f"unsupported character class item {kind}")


def _is_word(c: str | None) -> bool:
    return c is not None and (c.isalnum() or c == "_")


def _assert_holds(kind: object, multiline: bool, text: str, pos: int) -> bool:
    before = text[pos - 1] if pos > 0 else None
    after = text[pos] if pos < len(text) else None
    if kind in (C.AT_BEGINNING, C.AT_BEGINNING_LINE):
        return pos == 0 or (multiline and before == "\n")
    if kind is C.AT_BEGINNING_STRING:
        return pos == 0
    if kind in (C.AT_END, C.AT_END_LINE):
        return pos == len(text) or (multiline and after == "\n")
    if kind is C.AT_END_STRING:
        return pos == len(text)
    if kind is C.AT_BOUNDARY:
        return _is_word(before) != _is_word(after)
    if kind is C.AT_NON_BOUNDARY:
        return _is_word(before) == _is_word(after)
    raise RegexError(f"unsupported assertion {kind}")


def _run(program: tuple[Instruction, ...], text: str) -> bool:
    """Unanchored search: a set of NFA states advances one character at a time."""

    def closure(states: list[int], seen: set[int], pc: int, pos: int) -> bool:
        stack = [pc]
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            instruction = program[pc]
            op = instruction[0]
            if op == _MATCH:
                return True
            if op == _JMP:
                stack.append(instruction[1])
            elif op == _SPLIT:
                stack.append(instruction[2])
                stack.append(instruction[1])
            elif op == _ASSERT:
                if _assert_holds(instruction[1], bool(instruction[2]), text, pos):
                    stack.append(pc + 1)
            else:
                states.append(pc)
        return False

    current: list[int] = []
    seen: set[int] = set()
    for pos in range(len(text) + 1):
        # A new thread starts at every position: the pattern may match anywhere.
        if closure(current, seen, 0, pos):
            return True
        if pos == len(text):
            return False
        char = text[pos]
        following: list[int] = []
        next_seen: set[int] = set()
        for pc in current:
            test = program[pc][1]
            if test(char) and closure(following, next_seen, pc + 1, pos + 1):
                return True
        current, seen = following, next_seen
    return False
