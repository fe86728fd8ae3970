"""`conveyor artifacts RUN JOB [-o DIR]`: download what a job kept, byte for byte.

Authorisation is the user's kubeconfig, twice over: the run is read through the API server (so
only those who may read runs of the namespace learn where a job's artifacts are), and the
store's credentials are read from their Secret with the user's own identity, never the
operator's: only those RBAC lets read that Secret (the platform, by default) download directly.
The archive's sha256 is checked against the run's record before anything is extracted.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.cli.common import EXIT_USAGE, add_cluster_options, fail, kube_command
from conveyor.kube.defaults import DEFAULT_CREDENTIALS_NAMESPACE

if TYPE_CHECKING:
    from conveyor.kube.client import Kube

DEFAULT_STORE_SECRET = f"{DEFAULT_CREDENTIALS_NAMESPACE}/artifact-store"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "artifacts",
        help="download the artifacts a job of a run kept",
        description=(
            "Download the artifacts archive of JOB of RUN (its latest attempt unless "
            "--attempt) from the artifact store, check its sha256 against the run's record, "
            "and extract it into DIR. The store's credentials are read from their Secret with "
            "your kubeconfig: you need RBAC to read that Secret."
        ),
    )
    p.add_argument("run", metavar="RUN", help="name of a PipelineRun")
    p.add_argument("job", metavar="JOB", help="a job of the run")
    p.add_argument("-o", "--output", metavar="DIR", default=".", help="where to extract (.)")
    p.add_argument("--attempt", type=int, metavar="N", help="an earlier attempt of JOB")
    p.add_argument(
        "--store-endpoint",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_ENDPOINT"),
        help="the store's URL, as the operator's --artifact-store-endpoint "
        "(env CONVEYOR_ARTIFACT_STORE_ENDPOINT)",
    )
    p.add_argument(
        "--store-bucket",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_BUCKET", "conveyor"),
        help="bucket (env CONVEYOR_ARTIFACT_STORE_BUCKET; default conveyor)",
    )
    p.add_argument(
        "--store-secret",
        metavar="NS/NAME",
        default=os.environ.get("CONVEYOR_ARTIFACT_STORE_SECRET", DEFAULT_STORE_SECRET),
        help=f"the store's credentials Secret (default {DEFAULT_STORE_SECRET})",
    )
    add_cluster_options(p)
    p.set_defaults(func=kube_command(cmd_artifacts))


def attempt_record(run: dict[str, Any], job: str, attempt: int | None) -> tuple[int, dict]:
    """(attempt number, its archive record) from the run's status; ValueError saying why not."""
    name = run["metadata"]["name"]
    entries = (run.get("status") or {}).get("jobs") or []
    entry = next((e for e in entries if e.get("name") == job), None)
    if entry is None:
        known = ", ".join(e["name"] for e in entries) or "none yet"
        raise ValueError(f"run {name} has no job {job!r} (its jobs: {known})")
    number = attempt or entry.get("attempt")
    if number != entry.get("attempt"):
        raise ValueError(f"only the latest attempt ({entry.get('attempt')}) has a record")
    records = [r for r in entry.get("artifacts") or () if r.get("kind", "archive") == "archive"]
    if not records:
        raise ValueError(f"job {job} of run {name} kept no artifacts (or they expired)")
    return int(number), records[0]


def safe_extract(data: bytes, dest: Path) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
        tar.extractall(dest, filter="data")  # no absolute paths, no escapes, no devices
    return names


def cmd_artifacts(args: argparse.Namespace, kube: Kube, ns: str) -> int:
    from conveyor.store import plan as plans
    from conveyor.store.client import StoreClient, StoreError
    from conveyor.store.config import ACCESS_KEY, SECRET_KEY, StoreConfig
    from conveyor.store.sigv4 import Credentials

    if not args.store_endpoint:
        return fail("give --store-endpoint (the operator's --artifact-store-endpoint)", EXIT_USAGE)
    secret_ns, sep, secret_name = args.store_secret.partition("/")
    if not sep:
        return fail("--store-secret is NS/NAME", EXIT_USAGE)
    run = kube.get_run(ns, args.run)
    try:
        number, record = attempt_record(run, args.job, args.attempt)
    except ValueError as e:
        return fail(str(e))
    data = kube.read_secret_data(secret_ns, secret_name)
    config = StoreConfig(args.store_endpoint.rstrip("/"), args.store_bucket, secret_ns, secret_name)
    client = StoreClient(config, Credentials(data[ACCESS_KEY].decode(), data[SECRET_KEY].decode()))
    ref = plans.AttemptRef(ns, args.run, run["metadata"].get("uid", ""), args.job, number)
    try:
        archive = client.get(ref.key(plans.ARCHIVE_OBJECT))
    except StoreError as e:
        return fail(str(e))
    if archive is None:
        return fail(f"the archive of {args.job} (attempt {number}) is not in the store any more")
    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    if record.get("digest") and digest != record["digest"]:
        return fail(f"the archive's digest {digest} is not the recorded {record['digest']}")
    dest = Path(args.output)
    dest.mkdir(parents=True, exist_ok=True)
    names = safe_extract(archive, dest)
    print(
        f"{record.get('name', 'artifacts')}: {len(names)} file(s), {len(archive)} bytes, {digest}"
    )
    for name in names:
        print(f"  {dest / name}")
    return 0
