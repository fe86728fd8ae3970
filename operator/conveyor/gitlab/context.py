"""What the rules are evaluated against: the run's ref, source, variables and git facts.

The operator builds it once per run with `rule_context()`, from the run and what it read from git
(`GitFacts`), then calls `conveyor.gitlab.rules.evaluate()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.api.pipeline import PipelineSpec, Rule, WorkflowRule
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.variables.expand import expand
from conveyor.engine.variables.predefined import git_variables


@dataclass(frozen=True)
class RuleContext:
    """Inputs of rule evaluation. `None` paths mean "unknown": `changes` is then true (new
    branch or tag, no before SHA, schedules), as in GitLab; `exists` is then false. `changes`
    is also true for runs that are no push (see `refs.is_push`)."""

    ref: str
    ref_is_tag: bool = False
    # push | web | trigger | schedule | api (GitLab's names; merge_request_event etc. also work)
    source: str = "push"
    # Predefined variables (lowest precedence); the pipeline's and the job's YAML variables
    # are layered over them by the evaluator, then `run_variables` over everything.
    variables: Mapping[str, str] = field(default_factory=dict)
    run_variables: Mapping[str, str] = field(default_factory=dict)
    # The push's before SHA, when the run carries one: such a run is a push (see refs.is_push).
    before_sha: str | None = None
    changed_paths: frozenset[str] | None = None
    # Changed paths per `changes:compare_to` value (merge-base(ref, sha)..sha); missing: unknown.
    changed_paths_since: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    files: frozenset[str] | None = None  # every file of the repository at the run's SHA
    commit_message: str = ""
    commit_author: str | None = None  # `Name <email>`
    commit_timestamp: str | None = None  # ISO 8601
    default_branch: str | None = None
    project_path: str | None = None  # group/project, for `only: [main@group/project]`
    kubernetes_active: bool = False  # `only: kubernetes: active`; Conveyor has no such integration


@dataclass(frozen=True)
class GitFacts:
    """What the operator reads from git at run start (see RuleContext for the meaning of None)."""

    ref_is_tag: bool = False
    commit_message: str = ""
    commit_author: str | None = None
    commit_timestamp: str | None = None
    default_branch: str | None = None
    changed_paths: frozenset[str] | None = None
    changed_paths_since: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    files: frozenset[str] | None = None
    project_path: str | None = None


def rule_context(
    run: PipelineRun, facts: GitFacts, extra_variables: Mapping[str, str] | None = None
) -> RuleContext:
    """The context of `run`: predefined variables from the run and `facts`, plus
    `extra_variables` (e.g. CI_PROJECT_NAME, CI_REGISTRY_IMAGE from the operator's settings)."""
    if run.spec is None:
        raise ValueError("the PipelineRun has no spec")
    revision = run.spec.revision
    variables = {"CI": "true", "CONVEYOR": "true", "GITLAB_CI": "true"}
    variables |= dict(extra_variables or {})
    variables |= git_variables(
        ref=revision.ref,
        ref_is_tag=facts.ref_is_tag,
        sha=revision.sha,
        before_sha=revision.before_sha,
        commit_message=facts.commit_message,
        default_branch=facts.default_branch,
        pipeline_source=run.spec.pipeline_source,
        commit_author=facts.commit_author,
        commit_timestamp=facts.commit_timestamp,
    )
    return RuleContext(
        ref=revision.ref,
        ref_is_tag=facts.ref_is_tag,
        source=run.spec.pipeline_source,
        variables=variables,
        run_variables=dict(run.spec.variables),
        before_sha=revision.before_sha,
        changed_paths=facts.changed_paths,
        changed_paths_since=dict(facts.changed_paths_since),
        files=facts.files,
        commit_message=facts.commit_message,
        commit_author=facts.commit_author,
        commit_timestamp=facts.commit_timestamp,
        default_branch=facts.default_branch,
        project_path=facts.project_path,
    )


def compare_to_refs(
    pipeline: PipelineSpec, variables: Mapping[str, str] | None = None
) -> frozenset[str]:
    """Every `changes:compare_to` value of the pipeline, expanded with `variables` (e.g.
    `$CI_DEFAULT_BRANCH`), so the operator knows which diffs to compute for
    `GitFacts.changed_paths_since` (keyed by these expanded values)."""
    lookup = dict(variables or {}) | dict(pipeline.variables)
    refs: set[str] = set()
    rules: list[Rule | WorkflowRule] = [*(pipeline.workflow.rules if pipeline.workflow else ())]
    for job in pipeline.jobs:
        rules += list(job.rules or ())
    for rule in rules:
        if rule.changes_compare_to:
            refs.add(expand(rule.changes_compare_to, lookup.get))
    return frozenset(refs)


def uses_git_paths(pipeline: PipelineSpec) -> tuple[bool, bool]:
    """(changes used, exists used): lets the operator skip diffs and file listings nobody reads."""
    changes = exists = False
    rules: list[Rule | WorkflowRule] = [*(pipeline.workflow.rules if pipeline.workflow else ())]
    for job in pipeline.jobs:
        rules += list(job.rules or ())
        for policy in (job.only, job.except_):
            if policy is not None and policy.changes:
                changes = True
    for rule in rules:
        changes = changes or bool(rule.changes)
        exists = exists or bool(rule.exists)
    return changes, exists
