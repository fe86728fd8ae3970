"""The operator's settings of job pods (its command-line options)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from conveyor.engine.tags import TagMap
from conveyor.kube.defaults import (
    DEFAULT_BUILDER_IMAGE,
    DEFAULT_CHECKOUT_IMAGE,
    DEFAULT_CLAIR_SCANNER_IMAGE,
    DEFAULT_CLAIR_URL,
    DEFAULT_CREDENTIALS_NAMESPACE,
    DEFAULT_IMAGE,
    DEFAULT_SCANNER_IMAGE,
    DEFAULT_TRANSFER_IMAGE,
    DEFAULT_WAIT_FOR_SERVICES_SECONDS,
)
from conveyor.store.config import StoreConfig


@dataclass(frozen=True)
class JobOptions:
    """Operator-level settings of job pods."""

    checkout_image: str = DEFAULT_CHECKOUT_IMAGE
    default_image: str = DEFAULT_IMAGE
    registry: str | None = None  # CI_REGISTRY
    registry_image: str | None = None  # CI_REGISTRY_IMAGE
    # GitLab's runner `privileged = true`, for service containers only (a Docker daemon needs
    # it): the platform's decision, never the pipeline's; the script container never is.
    privileged_services: bool = False
    builder_image: str = DEFAULT_BUILDER_IMAGE  # the image `build` jobs run
    # A plain-HTTP registry holding the public images under their paths (docker.io, gcr.io,
    # quay.io...): the builder's BuildKit and Docker-in-Docker services pull through it, as the
    # nodes' containerd does. None: they pull from the public registries.
    registry_mirror: str | None = None
    # Registries (HOST:PORT) that builders and Docker daemons speak plain HTTP to.
    insecure_registries: tuple[str, ...] = ()
    scanner_image: str = DEFAULT_SCANNER_IMAGE  # the image `scan` jobs run
    clair_scanner_image: str = DEFAULT_CLAIR_SCANNER_IMAGE  # the image Clair `scan` jobs run
    clair_url: str | None = DEFAULT_CLAIR_URL  # the platform's Clair v4 (indexer and matcher)
    # Where scan jobs' Trivy gets its vulnerability database (TRIVY_DB_REPOSITORY) and, for
    # Java scans only, its Java index (TRIVY_JAVA_DB_REPOSITORY): a platform's own registry
    # instead of Aqua's public ones. A job's own TRIVY_* variables still win.
    scanner_db_repository: str | None = None
    scanner_java_db_repository: str | None = None
    # Where Environments' kubeconfig Secrets live: a namespace only the platform and the
    # operator can read, never a team's. No job pod ever gets them; native deploys use them.
    credentials_namespace: str = DEFAULT_CREDENTIALS_NAMESPACE
    # How long an Approval is kept once its run is gone: the record of who approved what.
    approval_retention: datetime.timedelta = datetime.timedelta(days=30)
    # GitLab runner tags -> node labels and tolerations (--tag-selector, --tag-toleration).
    tags: TagMap = field(default_factory=TagMap)
    # The image whose static binary moves artifacts and caches (init container, then copied).
    transfer_image: str = DEFAULT_TRANSFER_IMAGE
    # How long a job waits for its services' HEALTHCHECK_TCP_PORTs (GitLab runner's
    # wait_for_services_timeout) before its script starts anyway.
    wait_for_services_seconds: int = DEFAULT_WAIT_FOR_SERVICES_SECONDS
    # The S3-compatible store of artifacts and caches; None: jobs that use them fail, saying so.
    artifact_store: StoreConfig | None = None
    # expire_in of artifacts whose job says none (GitLab.com: 30 days); None: never.
    artifacts_expire_in: str | None = "30 days"
    # How often the operator deletes deleted runs' and expired artifacts from the store.
    artifact_sweep_interval: datetime.timedelta = datetime.timedelta(minutes=5)
