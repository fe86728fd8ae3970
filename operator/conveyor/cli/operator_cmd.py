"""`conveyor operator`: run the Kopf operator in this process."""

from __future__ import annotations

import argparse
import datetime
import http.server
import logging
import os
import socket
import threading
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import __version__
from conveyor.api.durations import parse_duration
from conveyor.api.meta import GROUP, VERSION
from conveyor.cli.common import add_cluster_options, fail, target
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
from conveyor.store.config import DEFAULT_MAX_ARTIFACT_BYTES, StoreConfig

LEASE_NAME = "conveyor-operator"

if TYPE_CHECKING:  # Kopf, the Kubernetes client and the job builder load when the operator runs
    import kopf
    from kubernetes import client

    from conveyor.kube.jobspec import JobOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the operator (reconciles PipelineRuns into Jobs)",
        description=(
            "Run the Conveyor operator in the foreground. It watches Pipelines, PipelineRuns and "
            "the Jobs and pods it creates, and needs the CRDs installed first "
            "(kubectl apply -f crds/)."
        ),
    )
    add_cluster_options(p, namespace=False)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="serve only this namespace (repeatable); default: all namespaces",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)"
    )
    p.add_argument("--workers", type=int, default=16, help="concurrent reconcile passes (16)")
    p.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    p.add_argument("--checkout-image", default=DEFAULT_CHECKOUT_IMAGE, help="git image of jobs")
    p.add_argument("--default-image", default=DEFAULT_IMAGE, help="image of jobs that name none")
    p.add_argument(
        "--builder-image",
        default=DEFAULT_BUILDER_IMAGE,
        help="BuildKit rootless image that `build` jobs run (pin it by digest)",
    )
    p.add_argument(
        "--scanner-image",
        default=DEFAULT_SCANNER_IMAGE,
        help="Trivy image that `scan` jobs run (pin it by digest)",
    )
    p.add_argument(
        "--clair-url",
        default=DEFAULT_CLAIR_URL,
        help="Clair v4 that `scan: {scanner: clair}` jobs ask, as their pods reach it "
        f"(default {DEFAULT_CLAIR_URL}, where deploy/optional/clair.yaml serves it)",
    )
    p.add_argument(
        "--clair-scanner-image",
        default=DEFAULT_CLAIR_SCANNER_IMAGE,
        help="the Clair client image that `scan: {scanner: clair}` jobs run (pin it by digest)",
    )
    p.add_argument(
        "--scanner-db-repository",
        metavar="REPOSITORY",
        help="OCI repository of Trivy's vulnerability database for `scan` jobs "
        "(TRIVY_DB_REPOSITORY, e.g. registry.local:5000/aquasecurity/trivy-db:2; default: "
        "Trivy's own, on the Internet)",
    )
    p.add_argument(
        "--scanner-java-db-repository",
        metavar="REPOSITORY",
        help="OCI repository of Trivy's Java index, which only scans of Java images download "
        "(TRIVY_JAVA_DB_REPOSITORY; default: Trivy's own)",
    )
    p.add_argument(
        "--privileged-services",
        action="store_true",
        help="run jobs' service containers (docker:dind) privileged, as GitLab's runner "
        "`privileged = true` does; never the script container. Job namespaces must then allow "
        "privileged pods (Pod Security level `privileged`). Off: a Docker daemon cannot start",
    )
    p.add_argument(
        "--wait-for-services-timeout",
        type=_duration,
        default=f"{DEFAULT_WAIT_FOR_SERVICES_SECONDS}s",
        metavar="DURATION",
        help="how long a job waits for the services that set HEALTHCHECK_TCP_PORT to listen "
        "before its script starts anyway, with a warning (GitLab runner's "
        f"wait_for_services_timeout; {DEFAULT_WAIT_FOR_SERVICES_SECONDS}s)",
    )
    p.add_argument(
        "--tag-selector",
        action="append",
        default=[],
        metavar="TAG=LABEL=VALUE",
        type=_tag_option("parse_tag_selector"),
        help="GitLab runner tag TAG puts a job's pod on nodes labelled LABEL=VALUE (its "
        "nodeSelector), e.g. docker=conveyor.dev/node=real; repeatable. A job whose tag is "
        "mapped by neither this nor --tag-toleration fails, naming the tag",
    )
    p.add_argument(
        "--tag-toleration",
        action="append",
        default=[],
        metavar="TAG=KEY[=VALUE][:EFFECT]",
        type=_tag_option("parse_tag_toleration"),
        help="GitLab runner tag TAG lets a job's pod tolerate the taint KEY=VALUE:EFFECT of "
        "the tag's nodes, e.g. docker=conveyor.dev/real-node=true:NoSchedule; repeatable",
    )
    p.add_argument("--registry", help="CI_REGISTRY given to jobs")
    p.add_argument(
        "--registry-mirror",
        metavar="HOST:PORT",
        help="a plain-HTTP registry holding the public images under their paths (docker.io, "
        "gcr.io, quay.io, ghcr.io, registry.k8s.io): `build` jobs' BuildKit and docker:dind "
        "services pull through it, as the nodes' container runtime does",
    )
    p.add_argument(
        "--insecure-registry",
        metavar="HOST:PORT",
        action="append",
        default=[],
        help="a registry that `build` jobs and docker:dind services speak plain HTTP to "
        "(repeatable); e.g. the one --registry names, when it has no TLS",
    )
    p.add_argument("--registry-image", help="CI_REGISTRY_IMAGE given to jobs")
    p.add_argument(
        "--git-cache",
        metavar="DIR",
        type=Path,
        help="where bare clones of pipeline repositories are kept (default: $TMPDIR/conveyor-git)",
    )
    p.add_argument(
        "--webhook",
        metavar="HOST:PORT",
        type=_address,
        help="serve push webhooks (GitLab, GitHub) at http://HOST:PORT/hooks/<namespace>/"
        "<pipeline>; off unless given",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=_address,
        help="serve Prometheus metrics at http://HOST:PORT/metrics; off unless given",
    )
    p.add_argument(
        "--allow-local-repositories",
        action="store_true",
        help="let pipelines use file:// repositories (off: a pipeline could read any repository "
        "on the operator's filesystem; for local clusters and tests)",
    )
    p.add_argument(
        "--credentials-namespace",
        metavar="NS",
        default=DEFAULT_CREDENTIALS_NAMESPACE,
        help="where Environments' kubeconfig Secrets live: a namespace no team can read "
        f"(default {DEFAULT_CREDENTIALS_NAMESPACE}); runs in it are refused",
    )
    p.add_argument(
        "--approval-retention",
        metavar="DURATION",
        type=_duration,
        default="720h",
        help="how long an Approval is kept after its run is deleted: the record of who "
        "approved what (default 720h, 30 days)",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease "
        "acts; the others wait to take over (deploy/ runs two replicas so)",
    )
    p.add_argument(
        "--lease",
        metavar="NS/NAME",
        default=None,
        help="the Lease of --leader-elect (default: conveyor-operator in the operator's own "
        "namespace in a cluster, else in conveyor-system)",
    )
    store = p.add_argument_group(
        "artifact store",
        "S3-compatible object storage of artifacts and caches (README: Artifacts and caches). "
        "Without an endpoint, jobs that use artifacts or caches fail, saying so.",
    )
    store.add_argument("--artifact-store-endpoint", metavar="URL", help="e.g. https://s3.example")
    store.add_argument("--artifact-store-bucket", default="conveyor", help="bucket (conveyor)")
    store.add_argument(
        "--artifact-store-secret",
        metavar="NAME",
        help="Secret with the keys accessKey and secretKey, in --credentials-namespace (read "
        "by reference; the credentials never reach a job pod, a log, an event or a status)",
    )
    store.add_argument("--artifact-store-region", default="us-east-1", help="SigV4 region")
    store.add_argument(
        "--artifact-store-virtual-hosted",
        action="store_true",
        help="address the bucket as BUCKET.host (default: path-style, host/BUCKET)",
    )
    store.add_argument("--artifact-store-ca-file", metavar="PEM", help="CA of the store's TLS")
    store.add_argument(
        "--artifact-store-insecure", action="store_true", help="do not verify the store's TLS"
    )
    store.add_argument(
        "--artifact-max-size",
        type=_size,
        default=DEFAULT_MAX_ARTIFACT_BYTES,
        metavar="SIZE",
        help="largest artifacts archive of a job (e.g. 100Mi, 1Gi; default 1Gi): a larger one "
        "fails its job",
    )
    store.add_argument(
        "--artifacts-expire-in",
        default="30 days",
        help="expire_in of artifacts whose job gives none (GitLab's syntax; `never`)",
    )
    store.add_argument(
        "--artifact-sweep-interval",
        type=_duration,
        default="5m",
        metavar="DURATION",
        help="how often the store is swept of deleted runs' and expired artifacts (5m)",
    )
    store.add_argument(
        "--artifact-download-endpoint",
        metavar="URL",
        help="the store as users of `conveyor artifacts` reach it, when not at "
        "--artifact-store-endpoint (e.g. an in-cluster Service): their download URLs are "
        "signed for this host, so whatever is in front of the store must pass the Host header on",
    )
    store.add_argument(
        "--artifact-download-ttl",
        type=_duration,
        default="15m",
        metavar="DURATION",
        help="how long an ArtifactDownload (a team member's download request) is kept before "
        "the operator deletes it (15m); its URL works 5 minutes at most, never longer than this",
    )
    store.add_argument(
        "--transfer-image",
        default=DEFAULT_TRANSFER_IMAGE,
        help="image of the static transfer binary copied into job pods",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_operator)


_SIZE_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2}
_SIZE_UNITS |= {"Gi": 1024**3}


def _size(text: str) -> int:
    """Bytes from a Kubernetes-style quantity: 1048576, 100Mi, 1Gi, 500M."""
    number = text.rstrip("KMGi")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in _SIZE_UNITS or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 100Mi or 1Gi, not {text!r}")
    return int(number) * _SIZE_UNITS[unit]


def store_config(args: argparse.Namespace) -> StoreConfig | None:
    if not args.artifact_store_endpoint:
        return None
    if not args.artifact_store_secret:
        raise ValueError("--artifact-store-endpoint needs --artifact-store-secret")
    return StoreConfig(
        endpoint=args.artifact_store_endpoint.rstrip("/"),
        bucket=args.artifact_store_bucket,
        secret_namespace=args.credentials_namespace,
        secret_name=args.artifact_store_secret,
        region=args.artifact_store_region,
        path_style=not args.artifact_store_virtual_hosted,
        ca_file=args.artifact_store_ca_file,
        insecure=args.artifact_store_insecure,
        max_artifact_bytes=args.artifact_max_size,
        download_endpoint=(args.artifact_download_endpoint or "").rstrip("/") or None,
    )


def _tag_option(parser: str) -> Any:
    """An argparse type that checks the text with conveyor.engine.tags' `parser` (loaded when
    used: `conveyor --help` stays light) and keeps it as it is."""

    def check(text: str) -> str:
        from conveyor.engine import tags

        try:
            getattr(tags, parser)(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from e
        return text

    return check


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 0.0.0.0:8081, not {text!r}")
    return host or "0.0.0.0", int(port)


def _duration(text: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(seconds=parse_duration(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a duration such as 720h or 30m: {e}") from e


def connection_info(cfg: client.Configuration) -> kopf.ConnectionInfo:
    """Kopf's credentials from the same configuration the Kubernetes client uses."""
    import kopf

    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    scheme, _, token = auth.partition(" ") if auth else ("", "", "")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        scheme=scheme or None,
        token=token or None,
    )


def crds_served(api: client.ApiClient) -> bool:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    names = {r.name for r in resources.resources}
    return {"pipelines", "pipelineruns", "artifactdownloads"} <= names


def lease_of(args: argparse.Namespace) -> tuple[str, str]:
    if args.lease:
        namespace, sep, name = args.lease.partition("/")
        if not sep or not namespace or not name:
            raise SystemExit(f"conveyor operator: --lease takes NS/NAME, not {args.lease!r}")
        return namespace, name
    from conveyor.kube.client import IN_CLUSTER_NAMESPACE

    try:
        namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
    except OSError:
        namespace = DEFAULT_CREDENTIALS_NAMESPACE
    return namespace or DEFAULT_CREDENTIALS_NAMESPACE, LEASE_NAME


def lead(args: argparse.Namespace, cfg: client.Configuration, identity: str) -> None:
    """Blocks until this replica holds the lease, answering the liveness probe meanwhile (a
    standby is healthy); from then on every write passes the fence."""
    from kubernetes import client

    from conveyor.kube import fence
    from conveyor.kube.leader import Elector

    namespace, name = lease_of(args)
    elector = Elector(client.ApiClient(cfg), namespace, name, identity)
    standby = serve_liveness(args.liveness) if args.liveness else None
    try:
        elector.acquire()
    finally:
        if standby is not None:
            standby.shutdown()
            standby.server_close()
    fence.set_leadership(elector.holds)
    elector.keep(lost=fence.check)


def serve_liveness(url: str) -> http.server.HTTPServer:
    """A bare liveness endpoint for a standby replica (Kopf serves it once leading)."""
    parts = urllib.parse.urlsplit(url)

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == parts.path else 404)
            self.end_headers()
            self.wfile.write(b"standby\n")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        (parts.hostname or "0.0.0.0", parts.port or 80), Healthy
    )
    threading.Thread(target=server.serve_forever, name="standby-liveness", daemon=True).start()
    return server


def job_options(args: argparse.Namespace) -> JobOptions:
    from conveyor.engine.tags import tag_map
    from conveyor.kube.jobspec import JobOptions

    return JobOptions(
        checkout_image=args.checkout_image,
        default_image=args.default_image,
        registry=args.registry,
        registry_image=args.registry_image,
        privileged_services=args.privileged_services,
        builder_image=args.builder_image,
        registry_mirror=args.registry_mirror,
        insecure_registries=tuple(args.insecure_registry),
        scanner_image=args.scanner_image,
        clair_scanner_image=args.clair_scanner_image,
        clair_url=args.clair_url or None,
        scanner_db_repository=args.scanner_db_repository,
        scanner_java_db_repository=args.scanner_java_db_repository,
        credentials_namespace=args.credentials_namespace,
        approval_retention=args.approval_retention,
        tags=tag_map(args.tag_selector, args.tag_toleration),
        transfer_image=args.transfer_image,
        wait_for_services_seconds=max(1, int(args.wait_for_services_timeout.total_seconds())),
        artifact_sweep_interval=args.artifact_sweep_interval,
        artifact_store=store_config(args),
        artifacts_expire_in=None
        if args.artifacts_expire_in.strip().lower() == "never"
        else args.artifacts_expire_in,
    )


def run_operator(args: argparse.Namespace) -> int:
    import kopf
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from conveyor.handlers.registration import Runtime  # registers the handlers
    from conveyor.kube import fence
    from conveyor.kube.client import Kube, KubeConfigError
    from conveyor.kube.identity import IdentityMismatch, verify_identity

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        options = job_options(args)
    except ValueError as e:  # one tag mapped to two values of a label
        return fail(str(e))
    from conveyor.reconcile.retry import QuietRequestRetries

    quiet = QuietRequestRetries()  # Kopf's error per failed request attempt: once per cause
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    if not args.verbose:  # Kopf logs every handler call at INFO: one line per watch event
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        cfg = target(args).configuration()
    except KubeConfigError as e:
        return fail(str(e))
    # One connection per thread that calls the API server (status, Jobs, events, deploys'
    # reads): past the pool's size, urllib3 drops connections and TLS handshakes again.
    cfg.connection_pool_maxsize = 40
    api = client.ApiClient(cfg)
    try:
        if not crds_served(api):
            return fail(
                f"the API server does not serve {GROUP}/{VERSION} pipelines, pipelineruns and "
                "artifactdownloads: "
                "install the CRDs first (kubectl apply -f crds/)"
            )
    except ApiException as e:
        return fail(f"cannot reach the API server at {cfg.host}: {e.status} {e.reason}")
    except OSError as e:
        return fail(f"cannot reach the API server at {cfg.host}: {e}")
    try:
        me = verify_identity(api)
    except IdentityMismatch as e:
        return fail(str(e))
    except ApiException as e:
        return fail(
            f"cannot check this operator's identity against Conveyor's admission policies: "
            f"{e.status} {e.reason} (it needs to list validating and mutating admission "
            "policies: deploy/10-rbac.yaml)"
        )
    logging.getLogger("conveyor").info("running as %s", me)
    identity = f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    # Audit logs tell replicas apart by it (they share one service account).
    api.user_agent = f"conveyor-operator/{__version__} ({identity})"
    fence.guard(api)
    if args.leader_elect:
        lead(args, cfg, identity)
    runtime = Runtime(
        connection=connection_info(cfg),
        kube=Kube(api),
        options=options,
        allow_local_repositories=args.allow_local_repositories,
        webhook_address=args.webhook,
        metrics_address=args.metrics,
        workers=args.workers,
        download_ttl=args.artifact_download_ttl,
    )
    if args.git_cache is not None:
        runtime.git_cache = args.git_cache
    kopf.run(
        standalone=True,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness,
        memo=runtime,
    )
    return 0
