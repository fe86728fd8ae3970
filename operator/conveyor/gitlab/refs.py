"""GitLab's `only`/`except` policies (`Gitlab::Ci::Build::Policy::{Refs,Changes,Variables}`).

`refs` entries match by keyword (`branches`, `tags`, or the pipeline source: `pushes`, `web`,
`api`, `triggers`, `schedules`, `merge_requests`, ..., singular or plural), else, for branch and
tag pipelines only, as a `/regex/` or by equality with the short ref name; `name@group/project`
also requires the project path. The keys of a policy must all hold; within a key any entry will do.
"""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.api.pipeline import RefPolicy
from conveyor.gitlab.context import RuleContext
from conveyor.gitlab.expressions import ExpressionError, evaluate_expression
from conveyor.gitlab.globs import match_any
from conveyor.gitlab.regex import RegexError, compile_ruby, parse_ruby_syntax

DEFAULT_ONLY = RefPolicy(refs=("branches", "tags"))
_MERGE_REQUEST_SOURCES = frozenset({"merge_request_event"})


def _source_names(source: str) -> set[str]:
    # GitLab strips the `_event` suffix and also accepts the plural (`push` -> `pushes`).
    name = source.removesuffix("_event")
    plural = name + ("es" if name.endswith(("sh", "ch", "s", "x")) else "s")
    return {name, plural}


def ref_matches(pattern: str, ctx: RuleContext) -> bool:
    """One `refs` entry against the run."""
    is_mr = ctx.source in _MERGE_REQUEST_SOURCES
    pattern, _, project = pattern.partition("@")
    if project and project != ctx.project_path:
        return False
    if pattern == "tags" and ctx.ref_is_tag:
        return True
    if pattern == "branches" and not ctx.ref_is_tag and not is_mr:
        return True
    if pattern in _source_names(ctx.source):
        return True
    if is_mr:
        return False  # names and regexes never match merge-request pipelines
    if parse_ruby_syntax(pattern) is not None:
        try:
            return compile_ruby(pattern).search(ctx.ref)
        except RegexError:
            pass  # GitLab falls back to comparing the text
    return pattern == ctx.ref


# Pipelines with a git push behind them; GitLab evaluates `changes` only for these.
PUSH_SOURCES = frozenset({"push", "merge_request_event", "external_pull_request_event"})


def is_push(ctx: RuleContext) -> bool:
    """A run of a push: source push (or a merge request's), or any run that carries the push's
    before SHA (what a trigger, a webhook or `conveyor run --push` records)."""
    return ctx.source in PUSH_SOURCES or ctx.before_sha is not None


def changes_unknown(ctx: RuleContext, paths: frozenset[str] | None) -> bool:
    """GitLab cannot compute changes without a git push (web, api, schedule and trigger
    pipelines; docs.gitlab.com/ci/yaml/#ruleschanges: `changes` "always evaluates to true when
    there is no Git push event"), for tags, nor without a before SHA."""
    return paths is None or ctx.ref_is_tag or ctx.source == "schedule" or not is_push(ctx)


def changes_match(
    globs: tuple[str, ...],
    ctx: RuleContext,
    paths: frozenset[str] | None,
    *,
    compared: bool = False,
) -> bool:
    """Whether a changed path matches one of `globs`; true when the changes are unknown.
    `compared`: `paths` come from `changes:compare_to` (merge-base..sha), which GitLab computes
    whatever started the pipeline, so only an unknown ref makes them unknown."""
    if paths is None or (not compared and changes_unknown(ctx, paths)):
        return True
    return match_any(globs, sorted(paths))


def variables_match(expressions: tuple[str, ...], variables: Mapping[str, str]) -> bool:
    for expression in expressions:
        try:
            if evaluate_expression(expression, variables):
                return True
        except ExpressionError:
            continue  # GitLab's Statement#truthful? treats a broken expression as false
    return False


def policy_holds(policy: RefPolicy, ctx: RuleContext, variables: Mapping[str, str]) -> bool:
    """Whether every key given in the policy holds (an empty policy holds nothing)."""
    checks: list[bool] = []
    if policy.refs:
        checks.append(any(ref_matches(p, ctx) for p in policy.refs))
    if policy.changes:
        checks.append(changes_match(policy.changes, ctx, ctx.changed_paths))
    if policy.variables:
        checks.append(variables_match(policy.variables, variables))
    if policy.kubernetes:
        checks.append(ctx.kubernetes_active)
    return bool(checks) and all(checks)


def describe(policy: RefPolicy) -> str:
    parts = []
    if policy.refs:
        parts.append("refs " + ", ".join(policy.refs))
    if policy.changes:
        parts.append("changes " + ", ".join(policy.changes))
    if policy.variables:
        parts.append("variables " + " | ".join(policy.variables))
    if policy.kubernetes:
        parts.append("kubernetes " + policy.kubernetes)
    return "; ".join(parts)
