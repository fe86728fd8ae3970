"""The operator's artifact store settings (operator options) and the credentials Secret.

Credentials are read from a Secret (keys `accessKey`, `secretKey`, as Argo Workflows' artifact
repositories name them) by reference only: never logged, never in events or status.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024  # 1 GiB
ACCESS_KEY = "accessKey"
SECRET_KEY = "secretKey"
NOT_CONFIGURED = (
    "this job uses artifacts or caches but the operator has no artifact store: "
    "start it with --artifact-store-endpoint, --artifact-store-bucket and "
    "--artifact-store-secret (README: Operator options)"
)


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str  # http(s)://host:port
    bucket: str
    secret_namespace: str  # the Secret with accessKey/secretKey
    secret_name: str
    region: str = DEFAULT_REGION
    path_style: bool = True
    ca_file: str | None = None
    insecure: bool = False
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    # The store as `conveyor artifacts` users reach it, when not at `endpoint` (an in-cluster
    # address): their download URLs are signed for this host.
    download_endpoint: str | None = None
