"""`conveyor artifacts RUN JOB [-o DIR]`: download what a job kept, byte for byte.

By default through an ArtifactDownload (api/artifactdownload.py): the CLI creates one in the
run's namespace with the user's kubeconfig, the operator answers with a presigned GET URL of
exactly that archive and the digest recorded when the job ended, the CLI downloads it, checks
the sha256 before extracting anything, and deletes the request. Whoever RBAC lets create
ArtifactDownloads in the namespace may download; the store's credentials stay with the operator.

`--direct` is the platform's way when the operator is down: it reads the store's credentials
from their Secret with the user's own identity (only those RBAC lets read it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.api.artifactdownload import READY, ArtifactDownload, ArtifactDownloadStatus
from conveyor.api.pipelinerun import ArtifactRecord, PipelineRun
from conveyor.cli.common import EXIT_USAGE, add_cluster_options, fail, kube_command
from conveyor.cli.objects import get_run, parse
from conveyor.kube.defaults import DEFAULT_CREDENTIALS_NAMESPACE

if TYPE_CHECKING:
    from conveyor.kube.client import Kube

DEFAULT_STORE_SECRET = f"{DEFAULT_CREDENTIALS_NAMESPACE}/artifact-store"


DEFAULT_WAIT_SECONDS = 60
CHUNK = 1024 * 1024
MAX_ARCHIVE = 5 * 1024**3  # S3's largest single PUT: no archive is larger


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "artifacts",
        help="download the artifacts a job of a run kept",
        description=(
            "Download the artifacts archive of JOB of RUN (its latest attempt), check its "
            "sha256 against the digest recorded when the job ended, and extract it into DIR. "
            "It asks the operator with an ArtifactDownload in the run's namespace (you need "
            "RBAC to create those there: edit and view have it) and downloads from the short-"
            "lived URL the operator answers with. --direct reads the store's credentials from "
            "their Secret instead (the platform's way when the operator is down)."
        ),
    )
    p.add_argument("run", metavar="RUN", help="name of a PipelineRun")
    p.add_argument("job", metavar="JOB", help="a job of the run")
    p.add_argument("-o", "--output", metavar="DIR", default=".", help="where to extract (.)")
    p.add_argument(
        "--attempt", type=int, metavar="N", help="the attempt of JOB (only the latest has a record)"
    )
    p.add_argument(
        "--ca-file",
        metavar="PEM",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_CA_FILE"),
        help="the CA bundle that signed the store's https certificate, trusted instead of the "
        "system's CAs, as the operator's --artifact-store-ca-file "
        "(env CONVEYOR_ARTIFACT_STORE_CA_FILE)",
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for the operator's answer ({DEFAULT_WAIT_SECONDS})",
    )
    direct = p.add_argument_group(
        "direct", "download with the store's own credentials, read from their Secret as you"
    )
    direct.add_argument(
        "--direct",
        action="store_true",
        help="read the store's credentials from --store-secret and download without the operator",
    )
    direct.add_argument(
        "--store-endpoint",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_ENDPOINT"),
        help="the store's URL, as the operator's --artifact-store-endpoint "
        "(env CONVEYOR_ARTIFACT_STORE_ENDPOINT)",
    )
    direct.add_argument(
        "--store-bucket",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_BUCKET", "conveyor"),
        help="bucket (env CONVEYOR_ARTIFACT_STORE_BUCKET; default conveyor)",
    )
    direct.add_argument(
        "--store-secret",
        metavar="NS/NAME",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_SECRET", DEFAULT_STORE_SECRET),
        help=f"the store's credentials Secret (default {DEFAULT_STORE_SECRET})",
    )
    add_cluster_options(p)
    p.set_defaults(func=kube_command(cmd_artifacts))


def attempt_record(run: PipelineRun, job: str, attempt: int | None) -> tuple[int, ArtifactRecord]:
    """(attempt number, its archive record) from the run's status; ValueError saying why not."""
    name = run.name
    entry = run.status.job(job)
    if entry is None:
        known = ", ".join(e.name for e in run.status.jobs) or "none yet"
        raise ValueError(f"run {name} has no job {job!r} (its jobs: {known})")
    number = attempt or entry.attempt
    if number != entry.attempt:
        raise ValueError(f"only the latest attempt ({entry.attempt}) has a record")
    records = [r for r in entry.artifacts or () if r.kind == "archive"]
    if not records:
        raise ValueError(f"job {job} of run {name} kept no artifacts (or they expired)")
    assert number is not None  # a job with a record has an attempt
    return number, records[0]


def safe_extract(data: bytes | IO[bytes], dest: Path) -> list[str]:
    fileobj = io.BytesIO(data) if isinstance(data, bytes) else data
    with tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        tar.extractall(dest, filter="data")  # no absolute paths, no escapes, no devices
    return names


def request_body(run: str, job: str, attempt: int | None) -> dict[str, Any]:
    """An ArtifactDownload for JOB of RUN, named by the API server."""
    from conveyor.api.meta import API_VERSION

    spec: dict[str, Any] = {"run": run, "job": job}
    if attempt is not None:
        spec["attempt"] = attempt
    prefix = f"{run}-{job}"[:40].lower()
    prefix = "".join(c if c.isalnum() or c == "-" else "-" for c in prefix).strip("-") or "dl"
    return {
        "apiVersion": API_VERSION,
        "kind": "ArtifactDownload",
        "metadata": {"generateName": prefix + "-"},
        "spec": spec,
    }


def _answer(kube: Kube, ns: str, name: str, seconds: int) -> ArtifactDownloadStatus | None:
    """The request's status once the operator has answered; None after `seconds`."""
    deadline = time.monotonic() + seconds
    while (remaining := int(deadline - time.monotonic())) > 0:
        for kind, body in kube.watch_download(ns, name, remaining):
            if kind == "DELETED":
                return None
            status = parse(ArtifactDownload, body).status
            if status.phase:
                return status
    return None


class Oversized(Exception):
    """The store sent more bytes than the record says the archive has."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The CAs to trust: `ca_file`'s when given (as the operator's store client), else the
    system's. OSError naming the file when it is not a readable PEM bundle."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise OSError(f"--ca-file {ca_file}: not a readable PEM CA bundle ({e})") from None


def _fetch(url: str, dest: IO[bytes], limit: int, context: ssl.SSLContext | None = None) -> str:
    """Streams `url` into `dest`, at most `limit` bytes; returns sha256:<hex>. Errors never
    show the URL (a bearer credential)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as resp:
            while chunk := resp.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise Oversized(f"larger than the recorded {limit} bytes")
                digest.update(chunk)
                dest.write(chunk)
    except urllib.error.HTTPError as e:
        raise OSError(f"the artifact store answered HTTP {e.code}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise OSError(
                f"the artifact store's certificate is not trusted ({e.reason.verify_message}): "
                "give the CA that signed it with --ca-file"
            ) from None
        raise OSError(f"the artifact store is unreachable: {e.reason}") from None
    return "sha256:" + digest.hexdigest()


def cmd_artifacts(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    if args.direct:
        return cmd_direct(args, kube, ns)
    created = kube.create_download(ns, request_body(args.run, args.job, args.attempt))
    name = created["metadata"]["name"]
    try:
        return _download(args, kube, ns, name)
    finally:
        _forget(kube, ns, name)


def _download(args: argparse.Namespace, kube: Kube, ns: str, name: str) -> int:
    status = _answer(kube, ns, name, args.timeout)
    if status is None:
        return fail(
            f"no answer to artifactdownload {name} in namespace {ns} within {args.timeout}s: "
            "is the Conveyor operator running, with an artifact store, and watching this "
            "namespace? (kubectl -n conveyor-system get pods, and its log)"
        )
    if status.phase != READY or not status.url:
        return fail(f"{status.error or 'refused'} ({status.reason})")
    recorded = status.digest
    try:
        context = tls_context(args.ca_file)
    except OSError as e:
        return fail(str(e), EXIT_USAGE)
    with tempfile.TemporaryFile() as archive:
        try:
            digest = _fetch(status.url, archive, status.size or MAX_ARCHIVE, context)
        except Oversized as e:
            digest = str(e)
        except OSError as e:
            return fail(f"downloading the artifacts of {args.job}: {e}")
        if digest != recorded:
            return fail(
                f"the archive downloaded is not the one its job uploaded ({digest}, recorded "
                f"{recorded}): nothing extracted"
            )
        size = archive.tell()
        archive.seek(0)
        dest = Path(args.output)
        dest.mkdir(parents=True, exist_ok=True)
        names = safe_extract(archive, dest)
    _report(status.name or "artifacts", names, size, digest, dest)
    return 0


def _forget(kube: Kube, ns: str, name: str) -> None:
    """Deletes the request; if that fails, the operator's TTL sweep deletes it."""
    from kubernetes.client.rest import ApiException

    with contextlib.suppress(ApiException, OSError):
        kube.delete_download(ns, name)


def _report(name: str, names: list[str], size: int, digest: str, dest: Path) -> None:
    print(f"{name}: {len(names)} file(s), {size} bytes, {digest}")
    for file in names:
        print(f"  {dest / file}")


def cmd_direct(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    from conveyor.store import plan as plans
    from conveyor.store.client import StoreClient, StoreError
    from conveyor.store.config import ACCESS_KEY, SECRET_KEY, StoreConfig
    from conveyor.store.sigv4 import Credentials

    if not args.store_endpoint:
        return fail("give --store-endpoint (the operator's --artifact-store-endpoint)", EXIT_USAGE)
    try:
        tls_context(args.ca_file)  # the store client reads it: say now if it cannot
    except OSError as e:
        return fail(str(e), EXIT_USAGE)
    secret_ns, sep, secret_name = args.store_secret.partition("/")
    if not sep:
        return fail("--store-secret is NS/NAME", EXIT_USAGE)
    run = get_run(kube, ns, args.run)
    try:
        number, record = attempt_record(run, args.job, args.attempt)
    except ValueError as e:
        return fail(str(e))
    data = kube.read_secret_data(secret_ns, secret_name)
    config = StoreConfig(
        args.store_endpoint.rstrip("/"),
        args.store_bucket,
        secret_ns,
        secret_name,
        ca_file=args.ca_file,
    )
    client = StoreClient(config, Credentials(data[ACCESS_KEY].decode(), data[SECRET_KEY].decode()))
    ref = plans.AttemptRef(ns, args.run, run.metadata.uid or "", args.job, number)
    try:
        archive = client.get(ref.key(plans.ARCHIVE_OBJECT))
    except StoreError as e:
        return fail(str(e))
    if archive is None:
        return fail(f"the archive of {args.job} (attempt {number}) is not in the store any more")
    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    if record.digest and digest != record.digest:
        return fail(f"the archive's digest {digest} is not the recorded {record.digest}")
    dest = Path(args.output)
    dest.mkdir(parents=True, exist_ok=True)
    names = safe_extract(archive, dest)
    _report(record.name, names, len(archive), digest, dest)
    return 0
