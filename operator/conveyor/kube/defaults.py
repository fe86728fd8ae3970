"""The operator's defaults that the `conveyor` command shows in its help: kept apart from the
job builder so that `conveyor --help` does not load it."""

from __future__ import annotations

DEFAULT_CHECKOUT_IMAGE = "alpine/git:2.47.2"
DEFAULT_IMAGE = "alpine:3.20"
# BuildKit's rootless image (buildctl-daemonless.sh, uid 1000); pin a digest with --builder-image.
DEFAULT_BUILDER_IMAGE = "moby/buildkit:v0.19.0-rootless"
# Trivy; hack/images/trivy.sh builds this name locally. Pin a digest with --scanner-image.
DEFAULT_SCANNER_IMAGE = "aquasec/trivy:0.74.0"
# Conveyor's Clair client (scanners/cmd/conveyor-clair-scan/, hack/images/clair-scan.sh) and
# where deploy/optional/clair.yaml serves Clair v4.
DEFAULT_CLAIR_SCANNER_IMAGE = "conveyor-clair-scan:0.1.0"
DEFAULT_CLAIR_URL = "http://clair.clair.svc:6060"
# Conveyor's artifact transfer binary (transfer/, hack/images/conveyor-transfer.sh), copied
# into job pods that use artifacts or caches.
DEFAULT_TRANSFER_IMAGE = "conveyor-transfer:0.3.0"
DEFAULT_CREDENTIALS_NAMESPACE = "conveyor-system"
# The job pod's containers: the checkout (an init container), then the script.
CHECKOUT_CONTAINER = "checkout"
SCRIPT_CONTAINER = "script"
# The init container that installs the transfer binary and downloads artifacts and caches.
TRANSFER_CONTAINER = "artifacts"
# The init container, after the services, that waits until they listen (HEALTHCHECK_TCP_PORT).
SERVICES_WAIT_CONTAINER = "wait-for-services"
# GitLab runner's wait_for_services_timeout default.
DEFAULT_WAIT_FOR_SERVICES_SECONDS = 30
