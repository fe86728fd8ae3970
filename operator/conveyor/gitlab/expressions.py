"""GitLab's CI/CD expression language (`rules:if`, `only:variables`, `except:variables`).

Grammar, with GitLab's precedence (comparisons bind tighter than `&&`, which binds tighter than
`||`; parentheses group):

    expr    := and ('||' and)*
    and     := compare ('&&' compare)*
    compare := operand (('==' | '!=' | '=~' | '!~') operand)?
    operand := '(' expr ')' | $VAR | ${VAR} | "string" | 'string' | /regex/flags | null

Values follow GitLab's Ruby implementation (`Gitlab::Ci::Pipeline::Expression::Lexeme::*`):
an undefined variable is null; `&&`/`||` return one of their operands as Ruby does (only null and
false are falsy there, so `"" && $X` is `$X`); `=~` is false when the right side is null, `!~`
true; a variable on the right of `=~` holding `/re/flags` is used as a regex; and the statement
as a whole is true when its value is "present": a non-blank string or true. Regexes are matched
in bounded time by `conveyor.gitlab.regex`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from conveyor.gitlab.regex import Regex, RegexError, compile_pattern, compile_ruby

MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 32  # nesting of parentheses

Value = str | bool | Regex | None


class ExpressionError(ValueError):
    """An expression that does not parse; the message says where."""


@dataclass(frozen=True)
class Token:
    kind: str  # var | str | regex | null | op | lparen | rparen
    text: str
    pos: int
    regex: Regex | None = None


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_OPERATORS = ("==", "!=", "=~", "!~", "&&", "||")
_FLAGS = re.compile(r"[ismU]*")


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == "$":
            match = _VARIABLE.match(text, i)
            if match is None:
                raise ExpressionError(f"bad variable at offset {i}")
            tokens.append(Token("var", match.group(1) or match.group(2), i))
            i = match.end()
        elif char in "\"'":
            end = text.find(char, i + 1)
            if end < 0:
                raise ExpressionError(f"unterminated string at offset {i}")
            tokens.append(Token("str", text[i + 1 : end], i))
            i = end + 1
        elif char == "/":
            end = i + 1
            while end < len(text) and text[end] != "/":
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                raise ExpressionError(f"unterminated regular expression at offset {i}")
            flags = _FLAGS.match(text, end + 1)
            assert flags is not None
            body = text[i + 1 : end]
            try:
                regex = compile_pattern(body.replace("\\/", "/"), flags.group(0))
            except RegexError as exc:
                raise ExpressionError(f"{exc} at offset {i}") from exc
            tokens.append(Token("regex", text[i : flags.end()], i, regex))
            i = flags.end()
        elif text.startswith("null", i) and not text[i + 4 : i + 5].replace("_", "a").isalnum():
            tokens.append(Token("null", "null", i))
            i += 4
        elif text[i : i + 2] in _OPERATORS:
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif char == "(":
            tokens.append(Token("lparen", char, i))
            i += 1
        elif char == ")":
            tokens.append(Token("rparen", char, i))
            i += 1
        else:
            raise ExpressionError(f"unexpected {char!r} at offset {i}")
    return tokens


# The parse tree: ("value", Token) | ("op", operator, left, right); the operands depend on the
# kind, so the tuple's items are not typed one by one.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of expression")
        self.index += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.expr()
        extra = self.peek()
        if extra is not None:
            raise ExpressionError(f"unexpected {extra.text!r} at offset {extra.pos}")
        return node

    def _binary(self, operator: str, operand: str) -> Node:
        node = getattr(self, operand)()
        while (token := self.peek()) is not None and token.kind == "op" and token.text == operator:
            self.take()
            node = ("op", operator, node, getattr(self, operand)())
        return node

    def expr(self) -> Node:
        return self._binary("||", "conjunction")

    def conjunction(self) -> Node:
        return self._binary("&&", "compare")

    def compare(self) -> Node:
        left = self.operand()
        token = self.peek()
        if token is not None and token.kind == "op" and token.text in ("==", "!=", "=~", "!~"):
            self.take()
            return ("op", token.text, left, self.operand())
        return left

    def operand(self) -> Node:
        token = self.take()
        if token.kind == "lparen":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError("parentheses nested too deeply")
            node = self.expr()
            closing = self.take()
            if closing.kind != "rparen":
                raise ExpressionError(f"expected ')' at offset {closing.pos}")
            self.depth -= 1
            return node
        if token.kind in ("var", "str", "regex", "null"):
            return ("value", token)
        raise ExpressionError(f"unexpected {token.text!r} at offset {token.pos}")


@lru_cache(maxsize=1024)
def parse_expression(text: str) -> Node:
    """Parse (and cache) an expression; raises ExpressionError."""
    return _Parser(tokenize(text)).parse()


def _ruby_truthy(value: Value) -> bool:
    return value is not None and value is not False


def _present(value: Value) -> bool:
    if isinstance(value, str):
        return value.strip() != ""
    return _ruby_truthy(value)


def _to_s(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Regex):
        return value.source
    return value


def _matches(text: Value, pattern: Value) -> bool:
    subject = _to_s(text)
    if isinstance(pattern, str):
        source = pattern
        try:
            pattern = compile_ruby(source)
        except RegexError:
            # GitLab then calls String#scan on the right-hand string: a substring test.
            return subject in source
    if isinstance(pattern, Regex):
        return pattern.search(subject)
    return subject in _to_s(pattern)


def _evaluate(node: Node, variables: Mapping[str, str]) -> Value:
    if node[0] == "value":
        token = node[1]
        assert isinstance(token, Token)
        if token.kind == "var":
            return variables.get(token.text)
        if token.kind == "str":
            return token.text
        if token.kind == "regex":
            return token.regex
        return None
    _, operator, left_node, right_node = node
    left = _evaluate(left_node, variables)
    if operator == "&&":
        return _evaluate(right_node, variables) if _ruby_truthy(left) else left
    if operator == "||":
        return left if _ruby_truthy(left) else _evaluate(right_node, variables)
    right = _evaluate(right_node, variables)
    if operator == "==":
        return left == right
    if operator == "!=":
        return left != right
    if right is None:
        return operator == "!~"
    matched = _matches(left, right)
    return matched if operator == "=~" else not matched


def evaluate_expression(text: str, variables: Mapping[str, str]) -> bool:
    """Whether the expression holds with `variables` (undefined ones are null)."""
    return _present(_evaluate(parse_expression(text), variables))


def check_expression(text: str) -> str | None:
    """The syntax problem of an expression, or None if it parses."""
    try:
        parse_expression(text)
    except ExpressionError as exc:
        return str(exc)
    return None
