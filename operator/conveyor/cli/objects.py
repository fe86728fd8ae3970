"""Where the CLI and the dashboard meet Conveyor's objects: each body the API server returns is
parsed here, once, into its model (api/), and everything after reads typed values.

A body the model refuses (a CLI older or newer than the operator, an object edited by hand) is
said naming the object and the field: a command about that object fails (CommandError, exit 1);
a listing leaves it out with one line on stderr and shows the rest.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from conveyor.api.approval import Approval
from conveyor.api.artifactdownload import ArtifactDownload
from conveyor.api.codec import ModelError, from_dict
from conveyor.api.environment import Environment
from conveyor.api.meta import ObjectMeta
from conveyor.api.pipeline import Pipeline, PipelineSpec
from conveyor.api.pipelinerun import PipelineRun
from conveyor.cli.common import CommandError

if TYPE_CHECKING:
    from conveyor.kube.client import Kube


S = TypeVar("S")
S_co = TypeVar("S_co", covariant=True)


class _HasSpec(Protocol[S_co]):
    @property
    def spec(self) -> S_co | None: ...


K = TypeVar("K", bound=_HasSpec[object])

# The kinds as kubectl names them, for messages.
KINDS: dict[type[Any], str] = {
    PipelineRun: "pipelinerun",
    Approval: "approval",
    Environment: "environment",
    ArtifactDownload: "artifactdownload",
    Pipeline: "pipeline",
}


class Unreadable(CommandError):
    """A Conveyor object its model refuses; the message names the object and the field."""

    def __init__(self, kind: str, body: Mapping[str, Any], error: ModelError) -> None:
        self.what = f"{kind} {object_name(body)}"
        self.error = error
        super().__init__(f"{self.what} cannot be read: {error}")

    def skipped(self) -> str:
        """What a listing says of the object it leaves out."""
        return f"conveyor: skipped {self.what}: {self.error}"


def object_name(body: Mapping[str, Any]) -> str:
    """`NAMESPACE/NAME` of a body (as much of it as it has)."""
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return "?"
    name = str(metadata.get("name") or "?")
    return f"{metadata['namespace']}/{name}" if metadata.get("namespace") else name


def parse(model: type[K], body: Mapping[str, Any]) -> K:
    """`body` as `model`, its spec required as the CRD requires it; Unreadable if refused."""
    kind = KINDS.get(model, model.__name__.lower())
    try:
        parsed = from_dict(model, body)
    except ModelError as e:
        raise Unreadable(kind, body, e) from None
    if parsed.spec is None:
        raise Unreadable(kind, body, ModelError("spec", "required field is missing"))
    return parsed


def parse_each(model: type[K], bodies: Iterable[Mapping[str, Any]]) -> list[K]:
    """The bodies the model accepts; each refused one is one line on stderr, and left out."""
    out = []
    for body in bodies:
        try:
            out.append(parse(model, body))
        except Unreadable as e:
            print(e.skipped(), file=sys.stderr, flush=True)
    return out


def spec_of(obj: _HasSpec[S]) -> S:
    """The spec of an object parse() accepted (it refuses one without)."""
    spec = obj.spec
    assert spec is not None, "parsed without parse()"
    return spec


def created(metadata: ObjectMeta) -> datetime.datetime:
    """When an object was created, for sorting (one without a time first)."""
    return metadata.creation_timestamp or datetime.datetime.min.replace(tzinfo=datetime.UTC)


def get_run(kube: Kube, ns: str, name: str) -> PipelineRun:
    return parse(PipelineRun, kube.get_run(ns, name))


def list_runs(kube: Kube, where: str | None) -> list[PipelineRun]:
    return parse_each(PipelineRun, kube.list_runs(where))


def list_approvals(kube: Kube, ns: str) -> list[Approval]:
    return parse_each(Approval, kube.list_approvals(ns))


def pipeline_spec(kube: Kube, ns: str, run: PipelineRun) -> PipelineSpec | None:
    """The spec of the Pipeline the run names, for what it will run before it has started;
    None when it names none, or it is gone or not readable (the jobs are then taken for
    pods'). A Pipeline its model refuses is said, as any object."""
    from kubernetes.client.rest import ApiException

    name = run.pipeline_name
    if not name:
        return None
    try:
        body = kube.get_pipeline(ns, name)
    except ApiException:
        return None
    return spec_of(parse(Pipeline, body))
