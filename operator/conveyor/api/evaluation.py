"""The result of evaluating a pipeline's GitLab rules for one run, as kept in the run's status.

The operator evaluates `workflow:rules`, `rules`, `only`/`except` and `[skip ci]` once, when the
run starts (it needs git for changed paths and file lists), and stores the outcome in
`status.evaluation`. Every later planning pass reads it from there, so planning stays pure and
never touches git again. To keep status small only what differs from "run the job as declared" is
recorded: a job that is not listed in `jobs` is included without overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import from_dict, to_dict
from conveyor.api.fields import model, spec_field
from conveyor.api.pipeline import (
    JOB_NAME_MAX,
    MAX_JOBS,
    VARIABLE_VALUE_MAX,
    VARIABLES_MAX,
    WHEN_VALUES,
)

# Commit messages are kept for CI_COMMIT_MESSAGE; longer ones are cut to keep status small.
COMMIT_MESSAGE_MAX = 4096
COMMIT_AUTHOR_MAX = 512
REASON_MAX = 256


def _variables(description: str) -> Any:
    return spec_field(
        description,
        default_factory=dict,
        max_properties=VARIABLES_MAX,
        item_max_length=VARIABLE_VALUE_MAX,
    )


@model("How the rules changed one job: excluded, or included with overrides.")
@dataclass(frozen=True)
class JobEvaluation:
    name: str = spec_field("Pipeline job name.", max_length=JOB_NAME_MAX, min_length=1)
    excluded: bool = spec_field(
        "The rules keep the job out of the run (phase Skipped, reason ExcludedByRules).",
        default=False,
        publish_default=False,
    )
    reason: str | None = spec_field(
        "Short reason, e.g. `rules: no rule matched` or `rules[1] matched`.",
        default=None,
        max_length=REASON_MAX,
    )
    when: str | None = spec_field("`when` of the matching rule.", default=None, enum=WHEN_VALUES)
    allow_failure: bool | None = spec_field("`allowFailure` from the matching rule.", default=None)
    variables: Mapping[str, str] = _variables("Variables of the matching rule.")


@model("Outcome of the pipeline's rules for this run, computed once when the run started.")
@dataclass(frozen=True)
class Evaluation:
    skipped: bool = spec_field(
        "The whole run is skipped ([skip ci] or workflow:rules): no job runs.",
        default=False,
        publish_default=False,
    )
    reason: str | None = spec_field("Why the run is skipped.", default=None, max_length=REASON_MAX)
    variables: Mapping[str, str] = _variables("Pipeline variables from the matching workflow rule.")
    jobs: tuple[JobEvaluation, ...] = spec_field(
        "Jobs excluded or changed by their rules; jobs not listed run as declared.",
        default_factory=tuple,
        max_items=MAX_JOBS,
        list_type="map",
        list_map_keys=("name",),
    )
    # Git facts the operator read at run start, kept for predefined variables of later Jobs.
    sha: str | None = spec_field(
        "The commit the run builds: spec.revision.sha, or what its ref pointed to at start.",
        default=None,
        max_length=40,
        pattern=r"^[0-9a-f]{40}$",
    )
    ref_is_tag: bool = spec_field(
        "The run's ref is a tag (CI_COMMIT_TAG), not a branch (CI_COMMIT_BRANCH).",
        default=False,
        publish_default=False,
    )
    commit_message: str | None = spec_field(
        "Message of the run's commit (CI_COMMIT_MESSAGE), cut at 4096 characters.",
        default=None,
        max_length=COMMIT_MESSAGE_MAX,
    )
    default_branch: str | None = spec_field(
        "The repository's default branch (CI_DEFAULT_BRANCH).", default=None, max_length=255
    )
    commit_author: str | None = spec_field(
        "Author of the run's commit, `Name <email>` (CI_COMMIT_AUTHOR).",
        default=None,
        max_length=COMMIT_AUTHOR_MAX,
    )
    commit_timestamp: str | None = spec_field(
        "Time of the run's commit in ISO 8601 (CI_COMMIT_TIMESTAMP).", default=None, max_length=64
    )

    def job(self, name: str) -> JobEvaluation | None:
        return next((j for j in self.jobs if j.name == name), None)

    @property
    def excluded(self) -> frozenset[str]:
        return frozenset(j.name for j in self.jobs if j.excluded)

    def to_dict(self) -> dict[str, Any]:
        """The compact JSON form: empty and default fields are left out."""
        compact: dict[str, Any] = _compact(to_dict(self))
        return compact

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Evaluation:
        return from_dict(cls, obj, "status.evaluation")


# Flags whose false value is the default and can be left out (allowFailure: false cannot).
_DEFAULT_FALSE = frozenset({"excluded", "skipped", "refIsTag"})


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _compact(v) for k, v in value.items()}
        return {
            k: v
            for k, v in out.items()
            if not (v is None or v == {} or v == [] or (v is False and k in _DEFAULT_FALSE))
        }
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value
