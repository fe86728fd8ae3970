"""The parts of Kubernetes object metadata and conventions the models use."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.api.fields import spec_field

GROUP = "conveyor.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Git's all-zero object name: "no commit" (a branch's creation or deletion, a first push).
ZERO_SHA = "0" * 40

# Labels and annotations Conveyor sets, read and guards (deploy/30-admission.yaml names them too).
LABEL_RUN = "conveyor.dev/pipelinerun"  # on a run's Jobs, pods, plan Secrets and Approvals
LABEL_PIPELINE = "conveyor.dev/pipeline"
LABEL_ENVIRONMENT = "conveyor.dev/environment"
LABEL_ENVIRONMENT_NAMESPACE = "conveyor.dev/environment-namespace"
LABEL_TRANSFER_PLAN = "conveyor.dev/transfer-plan"  # a job attempt's artifact transfer plan
LABEL_TRIGGER = "conveyor.dev/trigger"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "conveyor"  # LABEL_MANAGED_BY's value on what the operator makes
ANNOTATION_JOB = "conveyor.dev/job"
ANNOTATION_ATTEMPT = "conveyor.dev/attempt"
# Stamped on every PipelineRun at admission from request.userInfo.username.
ANNOTATION_INITIATOR = "conveyor.dev/initiator"
# Stamped at admission on the run on whoever set `spec.status: Cancelled`.
ANNOTATION_CANCELLED_BY = "conveyor.dev/cancelled-by"
ANNOTATION_RERUN_OF = "conveyor.dev/rerun-of"
ANNOTATION_TRIGGER_PREFIX = "conveyor.dev/trigger-"
# Who pushed the commit of a push run (from the webhook's payload); only the operator may set it,
# so an Approval can hold the pusher to the initiator's rule.
ANNOTATION_PUSHER = "conveyor.dev/trigger-pusher"
ANNOTATION_REF_TYPE = "conveyor.dev/ref-type"

# Lengths Kubernetes itself enforces.
DNS_SUBDOMAIN_MAX = 253
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


@dataclass(frozen=True)
class ObjectMeta:
    """The metadata fields the core reads (the API server owns their validation)."""

    name: str = spec_field("Object name.", default="")
    namespace: str | None = spec_field("Namespace.", default=None)
    uid: str | None = spec_field("Object UID.", default=None)
    resource_version: str | None = spec_field(
        "Version of the object, for optimistic concurrency.", default=None
    )
    generation: int | None = spec_field("Spec generation.", default=None)
    creation_timestamp: datetime.datetime | None = spec_field("Creation time.", default=None)
    deletion_timestamp: datetime.datetime | None = spec_field("Deletion time.", default=None)
    labels: Mapping[str, str] = spec_field("Labels.", default_factory=dict)
    annotations: Mapping[str, str] = spec_field("Annotations.", default_factory=dict)
