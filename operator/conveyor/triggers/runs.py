"""The PipelineRun a push creates.

Its name is a function of (pipeline, ref, sha) only, so however often one push is seen (a webhook
redelivery, a poll after a restart, a webhook and a poll both) there is one run: the second create
gets 409 Conflict, which the caller reports as "exists". The flip side: a ref that comes back to a
commit it already ran (a revert by force-push) starts no new run while the old one is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.api.meta import ANNOTATION_REF_TYPE, API_VERSION, LABEL_TRIGGER, ZERO_SHA
from conveyor.api.meta import ANNOTATION_TRIGGER_PREFIX as ANNOTATION_PREFIX
from conveyor.engine.names import DNS_LABEL_MAX, label_value, short_hash, slug
from conveyor.kube.jobspec import LABEL_PIPELINE
from conveyor.triggers.events import PushEvent, known_sha, qualify, split_ref

TRIGGERS = ("poll", "webhook")
PIPELINE_SOURCE_PUSH = "push"
NAME_HASH_LENGTH = 10
ANNOTATION_VALUE_MAX = 256  # annotations are for people; keep a hostile payload from bloating them


def run_name(pipeline_name: str, ref: str, sha: str, *, tag: bool = False) -> str:
    """`<pipeline slug>-<10 hex>`, a DNS-1123 label of at most 63 characters.

    The hash covers the qualified ref, so a branch and a tag of the same name at the same commit
    are two runs, and the full pipeline name, so truncated slugs never collide.
    """
    suffix = "-" + short_hash(pipeline_name, qualify(ref, tag=tag), sha, length=NAME_HASH_LENGTH)
    head = slug(pipeline_name, DNS_LABEL_MAX - len(suffix)) or "run"
    return head + suffix


def _normalise_ref(ref: str, tag: bool) -> tuple[str, bool]:
    split = split_ref(ref)
    return split if split is not None else (ref, tag)


def run_for_push(
    pipeline_name: str,
    pipeline_namespace: str,
    ref: str,
    sha: str,
    before_sha: str | None,
    source: str,
    labels: Mapping[str, str] | None = None,
    *,
    tag: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The PipelineRun manifest for a push of `ref` (short name or refs/heads|tags/...) to `sha`.

    `source` is the trigger that saw the push (`poll` or `webhook`); the run's pipelineSource is
    `push` either way, as in GitLab. `labels` and `annotations` are added; ours win on conflict.
    """
    if source not in TRIGGERS:
        raise ValueError(f"source must be one of {', '.join(TRIGGERS)}, not {source!r}")
    short, tag = _normalise_ref(ref, tag)
    revision: dict[str, Any] = {"ref": short, "sha": sha}
    # A push always has a before: the previous head, or zeros for a new branch or tag. Zeros tell
    # the operator that the changed paths are unknown, so `changes` rules are true (GitLab's
    # rule); a run with no beforeSha at all (made by hand) diffs against the commit's parent.
    revision["beforeSha"] = known_sha(before_sha) or ZERO_SHA
    all_labels = dict(labels or {})
    all_labels[LABEL_PIPELINE] = label_value(pipeline_name)
    all_labels[LABEL_TRIGGER] = source
    all_annotations = {k: v[:ANNOTATION_VALUE_MAX] for k, v in (annotations or {}).items()}
    all_annotations[ANNOTATION_REF_TYPE] = "tag" if tag else "branch"
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {
            "name": run_name(pipeline_name, short, sha, tag=tag),
            "namespace": pipeline_namespace,
            "labels": all_labels,
            "annotations": all_annotations,
        },
        "spec": {
            "pipelineRef": {"name": pipeline_name},
            "revision": revision,
            "pipelineSource": PIPELINE_SOURCE_PUSH,
        },
    }


def delivery_annotations(event: PushEvent) -> dict[str, str]:
    """What the run records of the delivery: provider, delivery id, repository, pusher."""
    found = {
        "provider": event.provider,
        "delivery": event.delivery,
        "repository": event.repository,
        "pusher": event.pusher,
    }
    return {ANNOTATION_PREFIX + k: v for k, v in found.items() if v}


def run_for_event(
    pipeline_name: str,
    pipeline_namespace: str,
    event: PushEvent,
    source: str,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`run_for_push` for a parsed webhook delivery or a poll's event."""
    return run_for_push(
        pipeline_name,
        pipeline_namespace,
        event.ref,
        event.sha,
        event.before_sha,
        source,
        labels,
        tag=event.tag,
        annotations=delivery_annotations(event),
    )
