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
    generation: int | None = spec_field("Spec generation.", default=None)
    creation_timestamp: datetime.datetime | None = spec_field("Creation time.", default=None)
    deletion_timestamp: datetime.datetime | None = spec_field("Deletion time.", default=None)
    labels: Mapping[str, str] = spec_field("Labels.", default_factory=dict)
    annotations: Mapping[str, str] = spec_field("Annotations.", default_factory=dict)
