"""Semantic validation of a pipeline and the job graph it implies.

The CRD's CEL rules refuse most of these at admission; the engine checks them again because inline
specs, imported .gitlab-ci.yml files and Pipelines edited after a run started reach it too, and
cycles or backward needs cannot be expressed cheaply in CEL.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from conveyor.api.pipeline import PipelineJob, PipelineSpec
from conveyor.engine.artifacts import validate_artifacts


def validate_pipeline(spec: PipelineSpec, excluded: Collection[str] = ()) -> list[str]:
    """Problems that make the pipeline unrunnable, each naming the job or stage at fault.

    `excluded` are jobs the run's rules removed: a job that still runs and `needs` one of them
    (not optionally) makes the run invalid, as GitLab refuses such a pipeline."""
    problems: list[str] = []
    if not spec.jobs:
        return ["pipeline has no jobs"]
    stage_index = {stage: i for i, stage in enumerate(spec.stages)}
    if len(stage_index) != len(spec.stages):
        problems.append("stages: duplicate stage names")
    names = [j.name for j in spec.jobs]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"jobs: duplicate job name '{name}'")
        seen.add(name)
    by_name = {j.name: j for j in spec.jobs}
    for job in spec.jobs:
        if job.stage not in stage_index:
            problems.append(f"job '{job.name}': stage '{job.stage}' is not listed in stages")
    for job in spec.jobs:
        if job.name in excluded:
            continue
        for need in (*(job.needs or ()), *job.optional_needs):
            other = by_name.get(need)
            optional = need in job.optional_needs and need not in (job.needs or ())
            if other is None or need in excluded:
                if not optional:
                    problems.append(
                        f"job '{job.name}' needs job '{need}', but '{need}' does not exist in "
                        "the pipeline"
                    )
            elif stage_index.get(other.stage, -1) > stage_index.get(job.stage, -1):
                problems.append(
                    f"job '{job.name}' needs job '{need}', which is in a later stage "
                    f"('{other.stage}')"
                )
    for job in spec.jobs:
        if job.scan is None or job.scan.build is None or job.name in excluded:
            continue
        built = by_name.get(job.scan.build)
        if built is None or built.build is None:
            problems.append(
                f"job '{job.name}' scans the image of job '{job.scan.build}', which is not a "
                "build job of the pipeline"
            )
        elif job.scan.build not in (job.needs or ()) and stage_index.get(
            built.stage, -1
        ) >= stage_index.get(job.stage, -1):
            problems.append(
                f"job '{job.name}' scans the image of job '{job.scan.build}', which does not "
                "run before it (put it in an earlier stage, or in needs)"
            )
    problems.extend(validate_artifacts(spec))
    # Whatever else is wrong: every problem is named at once, not one per fix.
    cycle = find_cycle(spec.jobs)
    if cycle:
        problems.append("needs form a cycle: " + " -> ".join(cycle))
    return problems


def find_cycle(jobs: Sequence[PipelineJob]) -> list[str] | None:
    """A cycle of `needs` edges as a list of job names (first == last), or None."""
    names = {j.name for j in jobs}
    needs = {j.name: list(j.dag_needs(names) or ()) for j in jobs}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for need in needs.get(name, ()):
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need in needs and state.get(need) is None:
                found = visit(need)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for job in jobs:
        if state.get(job.name) is None:
            found = visit(job.name)
            if found:
                return found
    return None


def job_needs(spec: PipelineSpec, job: PipelineJob) -> tuple[str, ...] | None:
    """The job's DAG edges (its needs and its optional needs present in the pipeline), or None
    for a job that follows stage order."""
    return job.dag_needs({j.name for j in spec.jobs})


def predecessors(spec: PipelineSpec, job: PipelineJob) -> tuple[str, ...]:
    """Jobs whose outcome `job` waits for: its needs, or every job of the earlier stages."""
    needs = job_needs(spec, job)
    if needs is not None:
        return needs
    index = spec.stages.index(job.stage)
    earlier = set(spec.stages[:index])
    return tuple(j.name for j in spec.jobs if j.stage in earlier)


def execution_order(spec: PipelineSpec) -> list[PipelineJob]:
    """Jobs ordered so each comes after its predecessors (valid pipelines only).

    Stage order first, declaration order within a stage, then moved after same-stage needs.
    """
    stage_index = {s: i for i, s in enumerate(spec.stages)}
    ordered = sorted(spec.jobs, key=lambda j: stage_index[j.stage])
    preds = {j.name: set(predecessors(spec, j)) for j in ordered}
    done: set[str] = set()
    order: list[PipelineJob] = []
    while ordered:
        ready = next((j for j in ordered if preds[j.name] <= done), None)
        if ready is None:  # pragma: no cover - validate_pipeline refuses cycles first
            raise ValueError("needs form a cycle")
        ordered.remove(ready)
        order.append(ready)
        done.add(ready.name)
    return order
