"""GitLab's expression language and the bounded regex matcher behind `=~`."""

from __future__ import annotations

import time

import pytest

from conveyor.gitlab.expressions import ExpressionError, evaluate_expression, parse_expression
from conveyor.gitlab.regex import RegexError, compile_ruby

VARS = {
    "BRANCH": "main",
    "EMPTY": "",
    "BLANK": "  ",
    "TAG": "v1.2.3",
    "RE": "/^ma/",
    "OTHER": "main",
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$BRANCH", True),
        ("$EMPTY", False),  # present? is false for empty and blank strings
        ("$BLANK", False),
        ("$UNDEFINED", False),
        ('$BRANCH == "main"', True),
        ("$BRANCH == 'main'", True),
        ('$BRANCH != "main"', False),
        ("$UNDEFINED == null", True),
        ("$EMPTY == null", False),
        ("null == $UNDEFINED", True),
        ("$BRANCH == $OTHER", True),  # variables compared with each other
        ("$BRANCH == $UNDEFINED", False),
        ("$UNDEFINED == $ALSO_UNDEFINED", True),
        ("${BRANCH} == 'main'", True),
        ("$TAG =~ /^v\\d+\\.\\d+/", True),
        ("$TAG !~ /^v\\d+\\.\\d+/", False),
        ("$BRANCH =~ /^MAIN$/", False),
        ("$BRANCH =~ /^MAIN$/i", True),  # flags
        ("$UNDEFINED =~ /^$/", True),  # null is matched as ""
        ("$BRANCH =~ $UNDEFINED", False),  # no regex: =~ false, !~ true
        ("$BRANCH !~ $UNDEFINED", True),
        ("$BRANCH =~ $RE", True),  # a variable holding /re/ is a regex
        ("$BRANCH =~ /^feat\\/x$/", False),
        ('$BRANCH == "main" && $TAG', True),
        ('$BRANCH == "dev" || $TAG == "v1.2.3"', True),
        # && binds tighter than ||: true || (false && false)
        ('$BRANCH == "main" || $TAG == "x" && $EMPTY', True),
        # parentheses change it: (true || false) && false
        ('($BRANCH == "main" || $TAG == "x") && $UNDEFINED', False),
        # Ruby semantics: "" is truthy inside &&/||, the result is then tested for presence
        ("$EMPTY && $BRANCH", True),
        ("$EMPTY || $UNDEFINED", False),
        ('"literal"', True),
    ],
)
def test_expressions(expression, expected):
    assert evaluate_expression(expression, VARS) is expected


@pytest.mark.parametrize(
    "expression",
    ["", "$A ==", "== $A", '$A "x"', "($A", "$A)", "$A = 'x'", "$A =~ /(unclosed/", "'open"],
)
def test_syntax_errors(expression):
    with pytest.raises(ExpressionError):
        parse_expression(expression)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("/^main$/", "main", True),
        ("/^main$/", "main\n", False),  # RE2: $ is the end of text without m
        ("/^b$/m", "a\nb\nc", True),
        ("/a.b/", "a\nb", False),
        ("/a.b/s", "a\nb", True),
        ("/[A-Z]x/i", "ax", True),
        ("/[^a-c]x/", "ax", False),
        ("/\\bfoo\\b/", "a foo b", True),
        ("/\\bfoo\\b/", "afoo", False),
        ("/a{2,3}b/", "xaab", True),
        ("/a{2,3}b/", "ab", False),
        ("/^(feat|fix)\\//", "fix/x", True),
        ("/\\d+\\z/", "ab12", True),
        ("/release-.*/", "hotfix", False),
    ],
)
def test_regex_semantics(pattern, text, expected):
    assert compile_ruby(pattern).search(text) is expected


@pytest.mark.parametrize("pattern", ["/(a)\\1/", "/(?=a)/", "/(?<!a)b/", "/a++/", "/(?>a)/"])
def test_re2_unsupported_constructs_are_refused(pattern):
    with pytest.raises(RegexError):
        compile_ruby(pattern)


def test_oversized_patterns_are_refused():
    with pytest.raises(RegexError):
        compile_ruby("/" + "a" * 2000 + "/")
    with pytest.raises(RegexError):
        compile_ruby("/(a{1000}){1000}/")


def test_catastrophic_patterns_run_in_linear_time():
    # Exponential for a backtracking engine; the NFA simulation is linear in the input.
    start = time.monotonic()
    assert compile_ruby("/^(a+)+$/").search("a" * 3000 + "!") is False
    assert compile_ruby("/^(a|a)*$/").search("a" * 3000 + "!") is False
    assert compile_ruby("/(.*a){12}/").search("a" * 11) is False
    assert time.monotonic() - start < 10  # generous: only guards against a hang
