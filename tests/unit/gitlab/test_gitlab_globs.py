"""Ruby File.fnmatch with FNM_PATHNAME | FNM_DOTMATCH | FNM_EXTGLOB, as GitLab uses it."""

from __future__ import annotations

import pytest

from conveyor.gitlab.globs import GlobError, expand_braces, fnmatch, match_any


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
