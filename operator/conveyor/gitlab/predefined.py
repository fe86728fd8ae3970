"""GitLab's predefined variables that come from git data (commit message, ref kind, before SHA).

Pure helpers: the operator reads git once when a run starts, keeps the facts in the run's
`status.evaluation` (`refIsTag`, `commitMessage`, `defaultBranch`), and both the rule evaluator
and the Job builder derive the variables from them with these functions.
"""

from __future__ import annotations

from conveyor.engine.names import ref_slug

ZERO_SHA = "0" * 40


def commit_title(message: str) -> str:
    """CI_COMMIT_TITLE: the full first line of the message."""
    return message.split("\n", 1)[0].rstrip("\r")


def commit_description(message: str) -> str:
    """CI_COMMIT_DESCRIPTION: GitLab gives the message without its first line when the title is
    shorter than 100 characters, else the whole message."""
    title = commit_title(message)
    if len(title) < 100:
        return message.split("\n", 1)[1].lstrip("\n") if "\n" in message else ""
    return message


def git_variables(
    *,
    ref: str,
    ref_is_tag: bool | None,
    sha: str | None,
    before_sha: str | None,
    commit_message: str | None,
    default_branch: str | None,
    pipeline_source: str,
) -> dict[str, str]:
    """The git-derived predefined variables GitLab sets; `ref_is_tag=None` (unknown) sets
    neither CI_COMMIT_BRANCH nor CI_COMMIT_TAG, and a None message sets no message variables."""
    out = {
        "CI_COMMIT_SHA": sha or "",
        "CI_COMMIT_SHORT_SHA": (sha or "")[:8],
        "CI_COMMIT_REF_NAME": ref,
        "CI_COMMIT_REF_SLUG": ref_slug(ref),
        "CI_COMMIT_BEFORE_SHA": before_sha or ZERO_SHA,
        "CI_PIPELINE_SOURCE": pipeline_source,
    }
    if ref_is_tag is True:
        out["CI_COMMIT_TAG"] = ref
    elif ref_is_tag is False:
        out["CI_COMMIT_BRANCH"] = ref
    if commit_message is not None:
        out["CI_COMMIT_MESSAGE"] = commit_message
        out["CI_COMMIT_TITLE"] = commit_title(commit_message)
        out["CI_COMMIT_DESCRIPTION"] = commit_description(commit_message)
    if default_branch:
        out["CI_DEFAULT_BRANCH"] = default_branch
    return out
