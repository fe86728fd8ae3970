"""CustomResourceDefinitions of Conveyor's resources, built from the models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.api.approval import ApprovalSpec, ApprovalStatus
from conveyor.api.artifactdownload import ArtifactDownloadSpec, ArtifactDownloadStatus
from conveyor.api.environment import EnvironmentSpec, EnvironmentStatus
from conveyor.api.fields import Validation
from conveyor.api.meta import GROUP, VERSION
from conveyor.api.openapi import schema_for
from conveyor.api.pipeline import PipelineSpec, PipelineStatus
from conveyor.api.pipelinerun import PipelineRunSpec, PipelineRunStatus

CATEGORY = "conveyor"

# A run's name becomes the value of the conveyor.dev/pipelinerun label on its Jobs and pods.
RUN_NAME_RULE = Validation(
    rule="size(self.metadata.name) <= 63",
    message="metadata.name must be at most 63 characters: it is used as a label value",
    reason="FieldValueInvalid",
)


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[Any]
    status: type[Any]
    description: str
    columns: tuple[dict[str, Any], ...]
    root_validations: tuple[Validation, ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


def _column(
    name: str, path: str, description: str, type_: str = "string", *, priority: int = 0
) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": type_,
        "jsonPath": path,
        "description": description,
    }
    if priority:
        column["priority"] = priority  # shown with `kubectl get -o wide` only
    return column


def _condition(type_: str, field: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


_AGE = _column("Age", ".metadata.creationTimestamp", "Time since creation.", "date")

PIPELINE = Kind(
    kind="Pipeline",
    plural="pipelines",
    singular="pipeline",
    short_names=("pl",),
    spec=PipelineSpec,
    status=PipelineStatus,
    description="A reusable CI/CD pipeline definition in the shape of a .gitlab-ci.yml.",
    columns=(
        _column("Ready", _condition("Ready", "status"), "Whether runs of it can run."),
        _column("Reason", _condition("Ready", "reason"), "Valid, or InvalidPipeline."),
        _column("Source", ".spec.source.url", "Repository URL."),
        _column("Jobs", ".status.jobCount", "Number of jobs.", "integer"),
        _AGE,
        _column("Message", _condition("Ready", "message"), "Every problem, named.", priority=1),
    ),
)

PIPELINE_RUN = Kind(
    kind="PipelineRun",
    plural="pipelineruns",
    singular="pipelinerun",
    short_names=("plr",),
    spec=PipelineRunSpec,
    status=PipelineRunStatus,
    description="One execution of a pipeline at one revision; its status is the record.",
    columns=(
        _column("Pipeline", ".status.pipelineName", "Pipeline run."),
        _column("Ref", ".spec.revision.ref", "Branch or tag."),
        _column("SHA", ".status.shortSha", "Short commit SHA."),
        _column("Status", ".status.phase", "Phase of the run."),
        _column(
            "Reason",
            _condition("Succeeded", "reason"),
            "Why: what the run waits for (ManualActionRequired, WaitingForApproval, Delayed, "
            "WaitingForEnvironment, ...) or how it ended.",
        ),
        _column("Stage", ".status.currentStage", "Lowest stage with unfinished jobs."),
        _column(
            "Retried", ".status.jobs[?(@.attempt>1)].name", "A job on its second attempt or later."
        ),
        _AGE,
        _column("Duration", ".status.duration", "Run duration once finished."),
        _column("Message", _condition("Succeeded", "message"), "What the run says.", priority=1),
    ),
    root_validations=(RUN_NAME_RULE,),
)

ENVIRONMENT = Kind(
    kind="Environment",
    plural="environments",
    singular="environment",
    short_names=("env",),
    spec=EnvironmentSpec,
    status=EnvironmentStatus,
    description="A deploy target: kubeconfig Secret and context, namespace, url, variables, "
    "approval policy.",
    columns=(
        _column("Namespace", ".spec.namespace", "Target namespace deploys go to."),
        _column("URL", ".spec.url", "URL of the deployed application."),
        _column(
            "Approvals",
            ".spec.protection.requiredApprovals",
            "Approvals a deploy needs (0: unprotected).",
            "integer",
        ),
        _AGE,
    ),
)

APPROVAL = Kind(
    kind="Approval",
    plural="approvals",
    singular="approval",
    short_names=("appr",),
    spec=ApprovalSpec,
    status=ApprovalStatus,
    description="The gate in front of one job of one run: approvers vote, the operator decides.",
    columns=(
        _column("Run", ".spec.pipelineRun", "The PipelineRun."),
        _column("Job", ".spec.job", "The gated job."),
        _column("Environment", ".spec.environment", "The Environment deployed to."),
        _column("Decision", ".status.decision", "Pending, Approved, Rejected, Expired, Cancelled."),
        _column("Approvals", ".status.approvals", "Approvals that count / approvals required."),
        _AGE,
    ),
)

ARTIFACT_DOWNLOAD = Kind(
    kind="ArtifactDownload",
    plural="artifactdownloads",
    singular="artifactdownload",
    short_names=("adl",),
    spec=ArtifactDownloadSpec,
    status=ArtifactDownloadStatus,
    description="A request to download the artifacts of one job of a run of this namespace; "
    "the operator answers with a short-lived presigned URL and the recorded digest.",
    columns=(
        _column("Run", ".spec.run", "The PipelineRun."),
        _column("Job", ".spec.job", "The job."),
        _column("Attempt", ".status.attempt", "The attempt answered for.", "integer"),
        _column("Phase", ".status.phase", "Ready or Failed."),
        _column("Reason", ".status.reason", "Why it failed."),
        _column("Size", ".status.size", "Archive size in bytes.", "integer"),
        _AGE,
        _column("Error", ".status.error", "Why it failed, in words.", priority=1),
    ),
)

KINDS = (PIPELINE, PIPELINE_RUN, ENVIRONMENT, APPROVAL, ARTIFACT_DOWNLOAD)


def root_schema(kind: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": schema_for(kind.spec),
            "status": schema_for(kind.status),
        },
        "required": ["spec"],
    }
    if kind.root_validations:
        schema["x-kubernetes-validations"] = [v.to_schema() for v in kind.root_validations]
    return schema


def build_crd(kind: Kind) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "conveyor"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {"openAPIV3Schema": root_schema(kind)},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind this package defines."""
    return {kind.file_name: build_crd(kind) for kind in KINDS}
