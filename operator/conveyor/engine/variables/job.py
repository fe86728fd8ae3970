"""A job's whole set of CI variables, with GitLab's precedence, and the names GitLab expands
with them (environments, resource groups, a build's image)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from conveyor.api import ModelError
from conveyor.api.pipeline import RESOURCE_GROUP_MAX, PipelineJob, PipelineSpec, SecretVariable
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.evaluation import effective_job
from conveyor.engine.variables.expand import Variables, reference_cycle
from conveyor.engine.variables.predefined import (
    RegistryNames,
    environment_slug,
    predefined_variables,
)

ENVIRONMENT_NAME_MAX = 255  # GitLab's limit


def job_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob, options: RegistryNames
) -> Variables:
    """All variables of the job with GitLab's precedence (highest last): predefined, pipeline,
    the matching workflow rule's, job, the matching job rule's, Secret-backed (like GitLab
    project variables), run. Rule variables come from the run's `status.evaluation`. Values
    are expanded against the whole set (see `Variables`), predefined ones never."""
    assert run.spec is not None
    evaluation = run.status.evaluation
    job = effective_job(job, evaluation)  # idempotent: rule variables merged over the job's
    variables = Variables()
    for name, value in predefined_variables(pipeline, run, job, options).items():
        variables.define_literal(name, value)
    for secret in merged_secret_variables(pipeline, job):
        variables.define_secret(secret)
    *yaml_layers, run_layer = user_variables(pipeline, run, job)
    for layer in yaml_layers:
        variables.define_all(layer, under_secrets=True)
    variables.define_all(run_layer)  # run variables rank above Secret-backed ones too
    if job.environment is not None:
        # GitLab expands the environment's name with the job's variables (not CI_ENVIRONMENT_*),
        # then its URL with those and CI_ENVIRONMENT_NAME/SLUG; job variables may use all three
        # (docs.gitlab.com/ci/variables/where_variables_can_be_used). A name the job defines
        # itself wins, as before.
        env_name = variables.expand_raw(job.environment.name)
        variables.define_default("CI_ENVIRONMENT_NAME", env_name)
        variables.define_default("CI_ENVIRONMENT_SLUG", environment_slug(env_name))
        if job.environment.url:
            url = variables.expand_raw(job.environment.url)
            variables.define_default("CI_ENVIRONMENT_URL", url)
    return variables


def user_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob
) -> list[Mapping[str, str]]:
    """The variable layers the pipeline and the run define for `job` (its rule's variables
    merged in), lowest precedence first."""
    assert run.spec is not None
    evaluation = run.status.evaluation
    job = effective_job(job, evaluation)
    layers: list[Mapping[str, str]] = [pipeline.variables]
    if evaluation is not None:
        layers.append(evaluation.variables)
    return [*layers, job.variables, run.spec.variables]


def variable_cycle(pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob) -> str | None:
    """GitLab refuses a job whose variables refer to each other in a cycle; the message, or
    None."""
    merged: dict[str, str] = {}
    for layer in user_variables(pipeline, run, job):
        merged.update(layer)
    cycle = reference_cycle(merged)
    return f"circular variable reference: {' -> '.join(cycle)}" if cycle else None


def with_names_expanded(
    pipeline: PipelineSpec,
    run: PipelineRun,
    options: RegistryNames,
    excluded: frozenset[str] = frozenset(),
) -> PipelineSpec:
    """GitLab expands the job's variables in environment names and resource groups: the run's
    jobs are gated, locked and deployed under the expanded names (and a build's image under
    the name its deploys will render). Jobs in `excluded` (the rules leave them out) are left
    as they are. Raises ModelError, naming
    the job, when a name expands to one that cannot be, or when the job's variables refer to
    each other in a cycle (GitLab refuses such a pipeline)."""
    jobs = []
    for job in pipeline.jobs:
        if job.name in excluded:  # a job the rules leave out never fails the run
            jobs.append(job)
            continue
        cycle = variable_cycle(pipeline, run, job)
        if cycle:
            raise ModelError(f"jobs[{job.name}].variables", cycle)
        env, group, build = job.environment, job.resource_group, job.build
        if (
            not (env is not None and "$" in env.name)
            and not (group and "$" in group)
            and not (build is not None and "$" in build.image)
        ):
            jobs.append(job)
            continue
        variables = job_variables(pipeline, run, job, options)
        if build is not None and "$" in build.image:
            image = variables.expand_raw(build.image)
            if not image or image.startswith((":", "@")):
                raise ModelError(
                    f"jobs[{job.name}].build.image",
                    f"{build.image!r} expands to {image!r}, which names no image",
                )
            job = dataclasses.replace(job, build=dataclasses.replace(build, image=image))
        if env is not None and "$" in env.name:
            # GitLab's names are free-form (review/$CI_COMMIT_REF_NAME); the Environment that
            # serves one is found by name, slug or pattern (engine.environments).
            name = variables.expand_raw(env.name).strip()
            if not name or len(name) > ENVIRONMENT_NAME_MAX:
                raise ModelError(
                    f"jobs[{job.name}].environment.name",
                    f"{env.name!r} expands to {name!r}: an environment name needs 1-"
                    f"{ENVIRONMENT_NAME_MAX} characters",
                )
            job = dataclasses.replace(job, environment=dataclasses.replace(env, name=name))
        if group and "$" in group:
            name = variables.expand_raw(group).strip()
            if not name or len(name) > RESOURCE_GROUP_MAX:
                raise ModelError(
                    f"jobs[{job.name}].resourceGroup",
                    f"{group!r} expands to {name!r}: a resource group needs 1-"
                    f"{RESOURCE_GROUP_MAX} characters",
                )
            job = dataclasses.replace(job, resource_group=name)
        jobs.append(job)
    return dataclasses.replace(pipeline, jobs=tuple(jobs))


def merged_secret_variables(pipeline: PipelineSpec, job: PipelineJob) -> list[SecretVariable]:
    """Pipeline Secret variables overridden by the job's of the same name."""
    merged = {s.name: s for s in pipeline.secret_variables}
    merged.update({s.name: s for s in job.secret_variables})
    return list(merged.values())
