"""Rendering a repository's Kubernetes templates for one environment. Pure: bytes in, dicts out.

Two passes per file, in this order:
1. GitLab-style placeholders `<NAME>` (the seed's `sed "s/<VERSION>/.../"`), from `variables`;
2. Jinja2 in an immutable sandbox with StrictUndefined (repository content is untrusted).
Then the text is parsed as multi-document YAML (safe loader only).

`<HASH>` is the one placeholder that may have no value: the seed leaves `<HASH>` untouched when
the templates did not change, so the pod template stays the same and nothing rolls. We put an
empty string instead, which keeps that property (a constant value) and stays valid YAML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from conveyor.deploy.errors import RenderError
from conveyor.yamllimits import MAX_DEPTH, YAMLTooLarge, check_node

TEMPLATE_SUFFIXES = (".yml", ".yaml")
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)>")
OPTIONAL_PLACEHOLDERS = frozenset({"HASH"})
# Why a cap: a template loop can make output without bound; the operator must not run out of
# memory on one repository's templates.
MAX_OUTPUT_CHARS = 4 * 1024 * 1024
MAX_TEMPLATES_BYTES = 16 * 1024 * 1024  # all of a deploy's template files, before rendering
# Why refuse these in values: the placeholder pass runs before Jinja2, so a value containing
# Jinja2 syntax (a branch named `{{...}}` ends up in VERSION) would be evaluated; a newline
# would let a value add YAML structure. Neither is a value a manifest field needs.
_UNSAFE_VALUE = re.compile(r"\{\{|\{%|\{#|[\r\n]")


def render_templates(
    files: Mapping[str, bytes], variables: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every `*.yml`/`*.yaml` of `files` (sorted by name; others such as `.placeholder` are
    ignored), rendered and parsed into manifests, in file then document order. `kind: List`
    documents are expanded into their items. Raises RenderError (`file:line: message`)."""
    env = _environment()
    manifests: list[dict[str, Any]] = []
    names = [name for name in sorted(files) if name.endswith(TEMPLATE_SUFFIXES)]
    total = 0
    for name in names:  # before any rendering: a refusal costs nothing
        total += len(files[name])
        if len(files[name]) > MAX_OUTPUT_CHARS or total > MAX_TEMPLATES_BYTES:
            raise RenderError(
                name,
                1,
                f"refused: templates may be {MAX_OUTPUT_CHARS} bytes each and "
                f"{MAX_TEMPLATES_BYTES} bytes in all",
            )
    rendered = 0
    for name in names:
        text = _decode(name, files[name])
        text = substitute_placeholders(name, text, variables)
        text = _render_jinja(env, name, text, variables)
        rendered += len(text)
        if rendered > MAX_TEMPLATES_BYTES:
            raise RenderError(
                name, 1, f"refused: the templates render to more than {MAX_TEMPLATES_BYTES} bytes"
            )
        manifests.extend(_parse(name, text))
    return manifests


def substitute_placeholders(name: str, text: str, variables: Mapping[str, str]) -> str:
    """Replace every `<NAME>` from `variables`. A missing value is an error, except for
    HASH (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        value = variables.get(key)
        if value is None:
            if key in OPTIONAL_PLACEHOLDERS:
                return ""
            raise RenderError(
                name, _line_of(text, match.start()), f"placeholder <{key}> has no value"
            )
        if _UNSAFE_VALUE.search(value):
            # The value itself is not quoted: variables may hold things their owner keeps private.
            raise RenderError(
                name,
                _line_of(text, match.start()),
                f"the value of placeholder <{key}> contains a newline or Jinja2 syntax",
            )
        return value

    return PLACEHOLDER.sub(replace, text)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        cache_size=0,  # a fresh loader per file; caching would only hold memory
    )
    # lipsum() makes arbitrary amounts of text for nothing; templates have no use for it.
    env.globals.pop("lipsum", None)
    return env


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RenderError(name, _line_of_bytes(data, e.start), "not valid UTF-8") from None


def _render_jinja(
    env: ImmutableSandboxedEnvironment, name: str, text: str, variables: Mapping[str, str]
) -> str:
    try:
        # A loader holding only this file, so the template's filename (and so the line numbers
        # Jinja2 writes into tracebacks) is the file's own, and includes reach nothing else.
        env.loader = jinja2.FunctionLoader(
            lambda wanted: (text, name, lambda: True) if wanted == name else None
        )
        template = env.get_template(name)
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(name, e.lineno or 1, f"template syntax: {e.message}") from None
    try:
        out = template.render(dict(variables))
    except jinja2.TemplateError as e:  # UndefinedError, SecurityError, TemplateNotFound, ...
        raise RenderError(name, _template_line(e, name), _jinja_message(e)) from None
    except (TypeError, ValueError, ArithmeticError, OverflowError) as e:
        # Python errors inside expressions (1/0, int('x')) are the template's fault too.
        raise RenderError(name, _template_line(e, name), f"{type(e).__name__}: {e}") from None
    if len(out) > MAX_OUTPUT_CHARS:
        raise RenderError(name, 1, f"rendered output exceeds {MAX_OUTPUT_CHARS} characters")
    return out


def _jinja_message(e: jinja2.TemplateError) -> str:
    if isinstance(e, jinja2.exceptions.SecurityError):
        return f"not allowed in the sandbox: {e.message or e}"
    if isinstance(e, jinja2.UndefinedError):
        return f"undefined: {e.message}"
    return f"{type(e).__name__}: {e.message or e}"


def _template_line(e: BaseException, name: str) -> int:
    """The template line where `e` was raised. Jinja2 rewrites tracebacks so that frames of
    template code carry the template's filename and line; the innermost one wins."""
    line = 1
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _parse(name: str, text: str) -> Iterator[dict[str, Any]]:
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            line = node.start_mark.line + 1
            # One hostile repository must not take the operator down: applying a document
            # serialises it, which would expand nested aliases a billion times.
            check_node(node)
            doc = loader.construct_document(node)
            if doc is None:  # an empty document (`---` followed by nothing, or only comments)
                continue
            yield from _manifests(name, line, doc)
    except YAMLTooLarge as e:
        raise RenderError(name, e.line, f"refused: {e}") from None
    except RecursionError:
        raise RenderError(name, 1, f"refused: nested more than {MAX_DEPTH} levels deep") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RenderError(name, line, f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise RenderError(name, 1, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()


def _manifests(name: str, line: int, doc: object) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, dict):
        raise RenderError(name, line, f"a document must be a mapping, not {type(doc).__name__}")
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _manifests(name, line, item)
        return
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise RenderError(name, line, f"the document has no {key}")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise RenderError(name, line, f"the {doc['kind']} has no metadata.name")
    yield doc


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _line_of_bytes(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def deploy_variables(
    ref: str,
    sha: str,
    changed_paths: frozenset[str] | None,
    *,
    version_paths: tuple[str, ...] = ("src/",),
    hash_paths: tuple[str, ...] = ("templates/",),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables a deploy renders with, by the seed's rules:
    - VERSION is `{ref}_{sha}` (the tag the build job pushed) when a path under `version_paths`
      changed, else `latest` (no new image was built);
    - HASH is the sha when a path under `hash_paths` changed, else "" (the pod template stays
      the same, so nothing rolls);
    `changed_paths=None` means unknown (first commit, a force push): treated as all changed.
    Also CI_COMMIT_REF_NAME, CI_COMMIT_SHA, CI_COMMIT_SHORT_SHA; then `extra` (the environment's
    variables such as APP_FQDN, and CI variables), which wins over all of these, so an
    environment can pin VERSION."""

    def changed(prefixes: tuple[str, ...]) -> bool:
        if changed_paths is None:
            return True
        return any(p.startswith(prefixes) for p in changed_paths)

    variables = {
        "CI_COMMIT_REF_NAME": ref,
        "CI_COMMIT_SHA": sha,
        "CI_COMMIT_SHORT_SHA": sha[:8],
        "VERSION": f"{ref}_{sha}" if changed(version_paths) else "latest",
        "HASH": sha if changed(hash_paths) else "",
    }
    variables.update(extra or {})
    return variables
