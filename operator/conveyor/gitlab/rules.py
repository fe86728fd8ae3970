"""Evaluate a pipeline's GitLab rules for one run: `[skip ci]`, `workflow:rules`, then each job's
`rules` or `only`/`except`. The result (`conveyor.api.evaluation.Evaluation`) goes into the run's
status once; the planner and the Job builder read it from there.

GitLab's order and defaults (`Gitlab::Ci::Pipeline::Chain::{Skip,EvaluateWorkflowRules}`,
`Gitlab::Ci::Build::Rules`, `Gitlab::Ci::Config::Entry::Processable`):
- `[skip ci]` (any case, `ci`/`skip` joined by space, `_` or `-`) in the head commit message skips
  push pipelines; web, api, trigger and schedule pipelines ignore it;
- `workflow:rules`: the first matching rule decides; `when: never` or no match skips the run;
- a job's `rules`: the first matching rule decides; `when: never` or no match excludes the job;
  a rule without `when` keeps the job's; `when: manual` from a rule defaults to
  `allowFailure: false` (blocking);
- `only`/`except`: every key given must hold; a job with neither (and no rules) gets
  `only: [branches, tags]`, except when the pipeline has `workflow:rules`.
Variables seen by `if`: predefined, then the pipeline's, then (for jobs) the job's, then the run's
variables on top. Secret-backed variables are not visible to rules (they are never read here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conveyor.api.evaluation import (
    COMMIT_AUTHOR_MAX,
    COMMIT_MESSAGE_MAX,
    REASON_MAX,
    Evaluation,
    JobEvaluation,
)
from conveyor.api.pipeline import PipelineJob, PipelineSpec, Rule, WorkflowRule
from conveyor.engine.variables.expand import expand
from conveyor.gitlab.context import RuleContext
from conveyor.gitlab.expressions import ExpressionError, evaluate_expression
from conveyor.gitlab.globs import GlobError, match_any
from conveyor.gitlab.refs import DEFAULT_ONLY, changes_match, describe, policy_holds

SKIP_CI = re.compile(r"\[(ci[ _-]skip|skip[ _-]ci)\]", re.IGNORECASE)
# Sources whose pipelines GitLab creates with `ignore_skip_ci: true`.
IGNORES_SKIP_CI = frozenset({"web", "api", "trigger", "schedule", "pipeline"})


def skip_ci_marker(message: str) -> str | None:
    """The `[skip ci]`-style marker in a commit message, if any."""
    match = SKIP_CI.search(message)
    return match.group(0) if match else None


def _layer(*maps: Mapping[str, str]) -> dict[str, str]:
    """Later maps override earlier ones. Values are used as written by `if` (GitLab does not
    expand nested references there); globs and compare_to are expanded when used."""
    out: dict[str, str] = {}
    for values in maps:
        out.update(values)
    return out


def rule_matches(
    rule: Rule | WorkflowRule, ctx: RuleContext, variables: Mapping[str, str]
) -> tuple[bool, str | None]:
    """Whether every clause of the rule holds; the second value names a broken clause."""
    if rule.if_ is not None:
        try:
            if not evaluate_expression(rule.if_, variables):
                return False, None
        except ExpressionError as exc:
            return False, f"invalid if: {exc}"
    try:
        if rule.changes:
            paths = ctx.changed_paths
            if rule.changes_compare_to:
                target = expand(rule.changes_compare_to, variables.get)
                paths = ctx.changed_paths_since.get(target)
            globs = tuple(expand(g, variables.get) for g in rule.changes)
            if not changes_match(globs, ctx, paths, compared=bool(rule.changes_compare_to)):
                return False, None
        if rule.exists:
            globs = tuple(expand(g, variables.get) for g in rule.exists)
            if ctx.files is None or not match_any(globs, sorted(ctx.files)):
                return False, None
    except GlobError as exc:
        return False, f"invalid glob: {exc}"
    return True, None


def _workflow(
    pipeline: PipelineSpec, ctx: RuleContext, variables: Mapping[str, str]
) -> tuple[str | None, dict[str, str]]:
    """(reason to skip the run or None, variables of the matching rule)."""
    assert pipeline.workflow is not None
    for index, rule in enumerate(pipeline.workflow.rules):
        matched, problem = rule_matches(rule, ctx, variables)
        if problem:
            return f"workflow:rules[{index}]: {problem}", {}
        if matched:
            if rule.when == "never":
                return f"workflow:rules[{index}] matched with when: never", {}
            return None, dict(rule.variables)
    return "workflow:rules: no rule matched", {}


def _job(
    job: PipelineJob,
    ctx: RuleContext,
    variables: Mapping[str, str],
    has_workflow: bool,
) -> JobEvaluation | None:
    """The job's decision, or None when it runs as declared."""
    if job.rules is not None:
        for index, rule in enumerate(job.rules):
            matched, problem = rule_matches(rule, ctx, variables)
            if problem:
                return _excluded(job, f"rules[{index}]: {problem}")
            if not matched:
                continue
            if rule.when == "never":
                return _excluded(job, f"rules[{index}] matched with when: never")
            when = rule.when
            allow_failure = rule.allow_failure
            if allow_failure is None and when == "manual" and job.allow_failure is None:
                allow_failure = False  # manual from rules blocks, unlike job-level manual
            if when is None and allow_failure is None and not rule.variables:
                return None
            return JobEvaluation(
                name=job.name,
                reason=f"rules[{index}] matched",
                when=when,
                allow_failure=allow_failure,
                variables=dict(rule.variables),
            )
        return _excluded(job, "rules: no rule matched")
    only = job.only
    if only is None and not has_workflow:
        only = DEFAULT_ONLY
    if only is not None and not policy_holds(only, ctx, variables):
        return _excluded(job, f"only ({describe(only)}) does not match")
    if job.except_ is not None and policy_holds(job.except_, ctx, variables):
        return _excluded(job, f"except ({describe(job.except_)}) matches")
    return None


def _excluded(job: PipelineJob, reason: str) -> JobEvaluation:
    return JobEvaluation(name=job.name, excluded=True, reason=reason[:REASON_MAX])


def evaluate(pipeline: PipelineSpec, ctx: RuleContext) -> Evaluation:
    """The rules' outcome for one run of `pipeline`."""
    facts: dict[str, Any] = {  # Evaluation fields by name
        "ref_is_tag": ctx.ref_is_tag,
        "commit_message": ctx.commit_message[:COMMIT_MESSAGE_MAX] or None,
        "commit_author": (ctx.commit_author or "")[:COMMIT_AUTHOR_MAX] or None,
        "commit_timestamp": ctx.commit_timestamp,
        "default_branch": ctx.default_branch,
    }
    marker = skip_ci_marker(ctx.commit_message)
    if marker and ctx.source not in IGNORES_SKIP_CI:
        return Evaluation(skipped=True, reason=f"the commit message contains {marker}", **facts)
    pipeline_vars = _layer(ctx.variables, pipeline.variables, ctx.run_variables)
    workflow_vars: dict[str, str] = {}
    has_workflow = pipeline.workflow is not None and bool(pipeline.workflow.rules)
    if has_workflow:
        reason, workflow_vars = _workflow(pipeline, ctx, pipeline_vars)
        if reason is not None:
            return Evaluation(skipped=True, reason=reason[:REASON_MAX], **facts)
    jobs: list[JobEvaluation] = []
    for job in pipeline.jobs:
        variables = _layer(
            ctx.variables, pipeline.variables, workflow_vars, job.variables, ctx.run_variables
        )
        decision = _job(job, ctx, variables, has_workflow)
        if decision is not None:
            jobs.append(decision)
    return Evaluation(variables=workflow_vars, jobs=tuple(jobs), **facts)
