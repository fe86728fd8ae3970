"""What the caller keeps of one deployment so that the next one can prune and a failed one can
roll back: the rendered manifests and the identities of the objects applied. Pure data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# (apiVersion, kind, namespace or None for cluster-scoped, name)
ObjectKey = tuple[str, str, str | None, str]


def group_of(api_version: str) -> str:
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def identity(key: ObjectKey) -> tuple[str, str, str | None, str]:
    """An object's identity regardless of API version: autoscaling/v2 and autoscaling/v1 serve
    the same HorizontalPodAutoscaler, and a template that moves between versions must not
    make prune delete what was just applied."""
    api_version, kind, namespace, name = key
    return group_of(api_version), kind, namespace, name


def label_selector(labels: Mapping[str, str]) -> str:
    """`k=v,k=v`: the selector matching objects that carry all of `labels`."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True)
class DeployRecord:
    """One deployment as the caller stores it (e.g. in a ConfigMap beside the run: it holds
    whole manifests, so it does not belong in a status). JSON-able via to_dict/from_dict."""

    manifests: list[dict[str, Any]] = field(default_factory=list)
    objects: list[ObjectKey] = field(default_factory=list)

    @property
    def kinds(self) -> set[tuple[str, str]]:
        """(apiVersion, kind) of every object applied: what the next prune must look at."""
        return {(k[0], k[1]) for k in self.objects}

    @property
    def namespaces(self) -> set[str]:
        return {k[2] for k in self.objects if k[2]}

    def to_dict(self) -> dict[str, Any]:
        return {"manifests": self.manifests, "objects": [list(k) for k in self.objects]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeployRecord:
        objects: list[ObjectKey] = [
            (str(a), str(k), None if ns is None else str(ns), str(n))
            for a, k, ns, n in data.get("objects") or []
        ]
        return cls(manifests=list(data.get("manifests") or []), objects=objects)


def kinds_of(
    *records: DeployRecord | None, extra: Iterable[tuple[str, str]] = ()
) -> set[tuple[str, str]]:
    """The union of the kinds of `records` (None skipped) and `extra`."""
    out = set(extra)
    for record in records:
        if record is not None:
            out |= record.kinds
    return out


def keys(objects: Sequence[Any]) -> set[ObjectKey]:
    """The keys of AppliedObjects (anything with a `key`)."""
    return {o.key for o in objects}
