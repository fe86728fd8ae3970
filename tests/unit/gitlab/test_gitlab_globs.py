"""Ruby File.fnmatch with FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB, as GitLab uses it."""

from __future__ import annotations

import pytest

from conveyor.gitlab.globs import GlobError, expand_braces, fnmatch, key_file_match, match_any


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("src/*.go", "src/server.go", True),
        ("src/*.go", "src/pkg/server.go", False),  # * does not cross /
        ("src/*", "src/pkg/server.go", False),
        ("src/**/*.go", "src/server.go", True),  # **/ is zero or more directories
        ("src/**/*.go", "src/a/b/server.go", True),
        ("**/*.json", "package.json", True),
        ("**/*.json", "a/.hidden/x.json", True),  # DOTMATCH
        ("*", ".gitignore", True),
        ("docs/**", "docs/a", True),  # ** not followed by / is just *
        ("docs/**", "docs/a/b", False),
        ("*.{rb,py}", "tool.py", True),  # EXTGLOB braces
        ("*.{rb,py}", "tool.sh", False),
        ("{src,lib}/{a,b{c,d}}.txt", "lib/bd.txt", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[!a]x", "bx", True),
        ("[!a]x", "ax", False),
        ("[a-c]x", "bx", True),
        ("Dockerfile", "Dockerfile", True),
        ("Dockerfile", "src/Dockerfile", False),  # whole path
        ("dockerfile", "Dockerfile", False),  # case-sensitive
        ("\\*.md", "*.md", True),
        ("\\*.md", "a.md", False),
    ],
)
def test_fnmatch(pattern, path, expected):
    assert fnmatch(pattern, path) is expected


def test_match_any_is_or():
    assert match_any(["*.md", "src/*"], ["README.txt", "src/x"])
    assert not match_any(["*.md"], ["src/x.md"])


def test_brace_expansion_is_bounded():
    assert expand_braces("a{b,c}d") == ["abd", "acd"]
    assert expand_braces("a{b") == ["a{b"]  # unbalanced: literal
    with pytest.raises(GlobError):
        expand_braces("{a,b}" * 10)


def test_many_stars_stay_fast():
    assert not fnmatch("*a*a*a*a*a*a*a*a*b", "a" * 200)


# -- cache:key:files: GitLab's search_files_by_wildcard_path, not fnmatch -----------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/package.json", "a/package.json", True),
        ("**/package.json", "a/b/package.json", True),
        ("**/package.json", "package.json", False),  # `**/` needs a `/`
        ("*.lock", "deps.lock", True),
        ("*.lock", "a/deps.lock", False),
        ("**.lock", "a/b/deps.lock", True),
        ("a/*/c", "a/b/c", True),
        ("a/*/c", "a/b/d/c", False),
        ("a?.txt", "ab.txt", False),  # only `*` is special
        ("a?.txt", "a?.txt", True),
        ("[ab].txt", "a.txt", False),
        ("{a,b}.txt", "{a,b}.txt", True),
        ("*", "", True),
    ],
)
def test_key_file_match(pattern: str, path: str, matches: bool) -> None:
    assert key_file_match(pattern, path) is matches


def test_key_file_match_is_gitlabs_regex() -> None:
    """The regex GitLab builds (escape, `**` -> `.*?`, `*` -> `([^/])*?`, anchored), compared on
    every pattern and path of a small alphabet."""
    import itertools
    import re

    def gitlab(pattern: str, path: str) -> bool:
        regex = re.escape(pattern).replace(r"\*\*", ".*?").replace(r"\*", "([^/])*?")
        return re.fullmatch(regex, path) is not None

    words = ["".join(w) for n in range(5) for w in itertools.product("a/*.", repeat=n)]
    paths = [w for w in words if "*" not in w]
    for pattern in words:
        for path in paths:
            assert key_file_match(pattern, path) == gitlab(pattern, path), (pattern, path)


def test_key_file_match_takes_linear_time_on_a_hostile_pattern() -> None:
    import time

    start = time.monotonic()
    assert not key_file_match("**a" * 40 + "b", "a" * 400)
    assert time.monotonic() - start < 2
