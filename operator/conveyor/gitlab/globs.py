"""GitLab's path globs for `changes` and `exists`: Ruby's `File.fnmatch?` with
`FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB`.

- `*` and `?` never match `/`; `[...]` classes (`[!..]`/`[^..]` negate) never match `/` either;
- `**/` matches zero or more whole directories; `**` elsewhere is just `*`;
- `{a,b}` alternatives (nestable); `\\x` is a literal x;
- dotfiles are matched like any other name; matching is case-sensitive and whole-path.

Matching splits pattern and path on `/` and walks segments (memoised for `**/`), and each segment
is matched by the classic wildcard algorithm with one backtrack point, so the time is bounded by
pattern length x path length whatever the pattern: no regex engine, no catastrophic backtracking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_BRACE_EXPANSIONS = 256

# Segment tokens: ("lit", char) | ("any",) one char | ("star",) | ("class", negate, items)
# ("lit", char) | ("any",) | ("class", negate, ranges): the operands depend on the kind.
Token = tuple[Any, ...]


class GlobError(ValueError):
    """A glob that cannot be used (unbalanced braces, too many alternatives)."""


@dataclass(frozen=True)
class Glob:
    source: str
    alternatives: tuple[tuple[tuple[Token, ...] | None, ...], ...]  # None segment: `**/`

    def match(self, path: str) -> bool:
        parts = tuple(path.split("/"))
        return any(_match_segments(alt, parts) for alt in self.alternatives)


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> Glob:
    alternatives = []
    for expanded in expand_braces(pattern):
        segments = expanded.split("/")
        compiled: list[tuple[Token, ...] | None] = []
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            if segment == "**" and not last:
                if compiled and compiled[-1] is None:
                    continue  # `**/**/` is the same as `**/`
                compiled.append(None)
            else:
                compiled.append(_tokens(segment))
        alternatives.append(tuple(compiled))
    return Glob(pattern, tuple(alternatives))


def match_any(patterns: Iterable[str], paths: Iterable[str]) -> bool:
    """Whether any path matches any pattern (GitLab's `changes`/`exists` semantics: OR)."""
    globs = [compile_glob(p) for p in patterns]
    return any(g.match(path) for path in paths for g in globs)


def fnmatch(pattern: str, path: str) -> bool:
    return compile_glob(pattern).match(path)


def expand_braces(pattern: str) -> list[str]:
    """`a{b,c{d,e}}` -> [ab, acd, ace]; escaped braces stay literal."""
    results = [""]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            results = [r + pattern[i : i + 2] for r in results]
            i += 2
            continue
        if char == "{":
            end, options = _brace_group(pattern, i)
            if end is not None:
                expanded = [o for option in options for o in expand_braces(option)]
                results = [r + o for r in results for o in expanded]
                if len(results) > MAX_BRACE_EXPANSIONS:
                    raise GlobError(f"too many {{...}} alternatives in {pattern!r}")
                i = end + 1
                continue
        results = [r + char for r in results]
        i += 1
    return results


def _brace_group(pattern: str, start: int) -> tuple[int | None, list[str]]:
    """End index of the brace group at `start` and its top-level options (None: unbalanced,
    then Ruby treats the brace as a literal character)."""
    depth, options, current = 0, [], []
    i = start
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            current.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "{":
            depth += 1
            if depth > 1:
                current.append(char)
        elif char == "}":
            depth -= 1
            if depth == 0:
                options.append("".join(current))
                return i, options
            current.append(char)
        elif char == "," and depth == 1:
            options.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    return None, []


def _tokens(segment: str) -> tuple[Token, ...]:
    tokens: list[Token] = []
    i = 0
    while i < len(segment):
        char = segment[i]
        if char == "\\" and i + 1 < len(segment):
            tokens.append(("lit", segment[i + 1]))
            i += 2
        elif char == "*":
            if not (tokens and tokens[-1][0] == "star"):
                tokens.append(("star",))
            i += 1
        elif char == "?":
            tokens.append(("any",))
            i += 1
        elif char == "[":
            parsed = _bracket(segment, i)
            if parsed is None:
                tokens.append(("lit", "["))
                i += 1
            else:
                token, i = parsed
                tokens.append(token)
        else:
            tokens.append(("lit", char))
            i += 1
    return tuple(tokens)


def _bracket(segment: str, start: int) -> tuple[Token, int] | None:
    i = start + 1
    negate = i < len(segment) and segment[i] in "!^"
    if negate:
        i += 1
    items: list[tuple[str, str]] = []
    first = True
    while i < len(segment):
        char = segment[i]
        if char == "]" and not first:
            return ("class", negate, tuple(items)), i + 1
        first = False
        if char == "\\" and i + 1 < len(segment):
            char = segment[i + 1]
            i += 1
        if i + 2 < len(segment) and segment[i + 1] == "-" and segment[i + 2] != "]":
            high = segment[i + 2]
            if high == "\\" and i + 3 < len(segment):
                high = segment[i + 3]
                i += 1
            items.append((char, high))
            i += 3
        else:
            items.append((char, char))
            i += 1
    return None  # no closing bracket: a literal "["


def _char_matches(token: Token, char: str) -> bool:
    kind = token[0]
    if kind == "lit":
        return token[1] == char
    if kind == "any":
        return True
    negate, items = token[1], token[2]
    inside = any(low <= char <= high for low, high in items)
    return inside != negate


def _match_segment(tokens: tuple[Token, ...], name: str) -> bool:
    """Wildcard matching with a single backtrack point (the last `*`): O(len(tokens) x len)."""
    t = n = 0
    star_t, star_n = -1, 0
    while n < len(name):
        if t < len(tokens) and tokens[t][0] != "star" and _char_matches(tokens[t], name[n]):
            t += 1
            n += 1
        elif t < len(tokens) and tokens[t][0] == "star":
            star_t, star_n = t, n
            t += 1
        elif star_t >= 0:
            star_n += 1
            n = star_n
            t = star_t + 1
        else:
            return False
    while t < len(tokens) and tokens[t][0] == "star":
        t += 1
    return t == len(tokens)


def _match_segments(segments: tuple[tuple[Token, ...] | None, ...], parts: tuple[str, ...]) -> bool:
    memo: dict[tuple[int, int], bool] = {}

    def walk(s: int, p: int) -> bool:
        key = (s, p)
        if key in memo:
            return memo[key]
        if s == len(segments):
            result = p == len(parts)
        elif (segment := segments[s]) is None:  # `**/`: zero or more directories (never the
            # file itself)
            result = walk(s + 1, p) or (p < len(parts) - 1 and walk(s, p + 1))
        else:
            result = p < len(parts) and _match_segment(segment, parts[p]) and walk(s + 1, p + 1)
        memo[key] = result
        return result

    return walk(0, 0)


# --- cache:key:files patterns ---------------------------------------------------------------
# GitLab expands them with Repository#search_files_by_wildcard_path, not File.fnmatch?: the
# pattern is escaped whole, then `**` becomes `.*?` (anything, `/` included) and `*` becomes
# `[^/]*?`, and the regex must match the whole path. So `**/a.json` needs a `/` before
# `a.json` (it never matches the root's `a.json`), and `?`, `[`, `{` are literal. Matched here
# by dynamic programming over (pattern token, path position): linear in their product, where a
# backtracking regex engine could take exponential time on a hostile pattern.


def is_key_file_pattern(pattern: str) -> bool:
    """Whether GitLab expands the `key:files` entry as a pattern (it holds a `*`); other
    entries name one file, as written."""
    return "*" in pattern


def key_file_match(pattern: str, path: str) -> bool:
    """Whether a repository path matches a `cache:key:files` pattern as GitLab matches it."""
    tokens: list[str] = []  # a character, or "*" (no `/`), or "**" (anything)
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        elif pattern[i] == "*":
            tokens.append("*")
            i += 1
        else:
            tokens.append(pattern[i])
            i += 1
    # reach[j]: the tokens so far can match path[:j].
    reach = [True] + [False] * len(path)
    for token in tokens:
        nxt = [False] * (len(path) + 1)
        if token in ("*", "**"):
            for j in range(len(path) + 1):
                # Zero more characters, or one more (not a `/` for `*`) after a match.
                nxt[j] = reach[j] or (
                    j > 0 and nxt[j - 1] and (token == "**" or path[j - 1] != "/")
                )
        else:
            for j in range(1, len(path) + 1):
                nxt[j] = reach[j - 1] and path[j - 1] == token
        reach = nxt
    return reach[len(path)]
