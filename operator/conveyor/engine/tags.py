"""GitLab runner tags onto nodes: the platform maps each tag the cluster serves to node labels
(`--tag-selector TAG=LABEL=VALUE`) and to taints the tag's nodes carry (`--tag-toleration
TAG=KEY[=VALUE][:EFFECT]`); a job's `tags` then become its pod's nodeSelector entries and
tolerations. GitLab picks a runner that has every tag of the job; here every tag adds its labels,
so the pod lands on a node that has them all.

A tag the operator does not map fails the job, naming the tag: GitLab leaves such a job pending
until a runner with the tag registers, which on a cluster would be a run that never ends and
says nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.api.pipeline import Toleration

REASON_UNMAPPED_TAG = "UnmappedTag"  # the job's reason when a tag has no mapping
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


class TagError(ValueError):
    """A job's tags cannot be placed: the message names the tag."""

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(message)
        self.tag = tag


@dataclass(frozen=True)
class TagMap:
    """What the operator was told of tags: tag -> node labels, tag -> tolerations."""

    selectors: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    tolerations: Mapping[str, tuple[Toleration, ...]] = field(default_factory=dict)

    def mapped(self, tag: str) -> bool:
        return tag in self.selectors or tag in self.tolerations

    @property
    def tags(self) -> list[str]:
        return sorted(set(self.selectors) | set(self.tolerations))


def parse_tag_selector(text: str) -> tuple[str, str, str]:
    """`TAG=LABEL=VALUE` -> (tag, label, value). Label keys and values hold no `=`."""
    parts = text.split("=")
    if len(parts) != 3 or not all(p.strip() for p in parts[:2]):
        raise ValueError(
            f"expected TAG=LABEL=VALUE, e.g. docker=conveyor.dev/node=real, not {text!r}"
        )
    tag, label, value = (p.strip() for p in parts)
    return tag, label, value


def parse_tag_toleration(text: str) -> tuple[str, Toleration]:
    """`TAG=KEY=VALUE:EFFECT`, `TAG=KEY=VALUE` (every effect) or `TAG=KEY:EFFECT` (operator
    Exists), as `kubectl taint` writes a taint."""
    tag, sep, rest = text.partition("=")
    example = "docker=conveyor.dev/real-node=true:NoSchedule"
    if not sep or not tag.strip() or not rest:
        raise ValueError(f"expected TAG=KEY[=VALUE][:EFFECT], e.g. {example}, not {text!r}")
    effect: str | None = None
    if ":" in rest:
        rest, _, effect = rest.rpartition(":")
        if effect not in EFFECTS:
            raise ValueError(f"{text!r}: the effect must be one of {', '.join(EFFECTS)}")
    key, has_value, value = rest.partition("=")
    if not key or "=" in value:
        raise ValueError(f"expected TAG=KEY[=VALUE][:EFFECT], e.g. {example}, not {text!r}")
    if has_value:
        return tag.strip(), Toleration(key=key, operator="Equal", value=value, effect=effect)
    return tag.strip(), Toleration(key=key, operator="Exists", effect=effect)


def tag_map(selectors: Iterable[str] = (), tolerations: Iterable[str] = ()) -> TagMap:
    """The operator's TagMap from its repeated --tag-selector and --tag-toleration options."""
    labels: dict[str, dict[str, str]] = {}
    for text in selectors:
        tag, label, value = parse_tag_selector(text)
        known = labels.setdefault(tag, {})
        if known.get(label, value) != value:
            raise ValueError(
                f"tag {tag!r} maps label {label} to both {known[label]!r} and {value!r}"
            )
        known[label] = value
    taints: dict[str, list[Toleration]] = {}
    for text in tolerations:
        tag, toleration = parse_tag_toleration(text)
        if toleration not in taints.setdefault(tag, []):
            taints[tag].append(toleration)
    return TagMap(labels, {t: tuple(v) for t, v in taints.items()})


def placement(
    tags: Sequence[str],
    node_selector: Mapping[str, str] | None,
    tolerations: Sequence[Toleration] | None,
    mapping: TagMap,
) -> tuple[dict[str, str], list[Toleration]]:
    """The pod's nodeSelector and tolerations: the job's own (or the pipeline's), plus what its
    tags map to. Raises TagError, naming the tag, for a tag the operator does not map or whose
    label contradicts the job's own nodeSelector."""
    selector = dict(node_selector or {})
    own = dict(selector)
    placed = list(tolerations or ())
    for tag in tags:
        if not mapping.mapped(tag):
            served = ", ".join(mapping.tags) or "none"
            raise TagError(
                tag,
                f"no node serves tag {tag!r}: the operator maps tags to nodes with --tag-selector "
                f"(tags it maps: {served}); GitLab would leave the job pending until a runner "
                "with the tag registers",
            )
        for label, value in mapping.selectors.get(tag, {}).items():
            if selector.get(label, value) != value:
                whose = "the job's nodeSelector" if label in own else "another tag"
                raise TagError(
                    tag,
                    f"tag {tag!r} needs {label}={value}, but {whose} asks for "
                    f"{label}={selector[label]}: no node has both",
                )
            selector[label] = value
        for toleration in mapping.tolerations.get(tag, ()):
            if toleration not in placed:
                placed.append(toleration)
    return selector, placed
