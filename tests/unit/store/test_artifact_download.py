"""ArtifactDownload: the operator's pure answer (which archive a request may have, or why not),
the URL it presigns (GET of exactly that key, a few minutes), the TTL, the CRD and the CLI's
request."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import urllib.parse
from dataclasses import replace

import pytest

from conveyor.api import PipelineRun, from_dict
from conveyor.api import artifactdownload as ad
from conveyor.api.crd import all_crds
from conveyor.api.pipelinerun import ArtifactRecord
from conveyor.cli.artifacts import request_body
from conveyor.cli.main import build_parser
from conveyor.store import download, sigv4
from conveyor.store.client import StoreClient
from conveyor.store.config import StoreConfig
from conveyor.store.sigv4 import Credentials

NOW = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)
CONFIG = StoreConfig("http://10.0.0.1:9000", "conveyor", "conveyor-system", "store")
CLIENT = StoreClient(CONFIG, Credentials("AK", "SK"), now=lambda: NOW)
DIGEST = "sha256:" + "ab" * 32
UID = "0b5b7c43-55a4-4d39-9d0f-1c6f2b0c7e11"


def _run(jobs, name="r1", **meta):
    """A run's body as the API server has it (its job entries get a stage)."""
    entries = [{"stage": "build", **j} for j in jobs]
    return {"metadata": {"name": name, "uid": UID, **meta}, "status": {"jobs": entries}}


def _odd_record():
    """A run whose build kept a record the API server would refuse (no sha256 digest): the
    operator does not rely on the schema alone."""
    run = PipelineRun.from_dict(_run([BUILD]))
    (build,) = run.status.jobs
    odd = replace(build, artifacts=(ArtifactRecord("bin.tar.gz", digest="sha256:zz"),))
    return replace(run, status=replace(run.status, jobs=(odd,)))


BUILD = {
    "name": "build",
    "phase": "Succeeded",
    "attempt": 2,
    "artifacts": [
        {
            "name": "bin.tar.gz",
            "kind": "archive",
            "size": 1234,
            "digest": DIGEST,
            "expiresAt": "2026-12-01T12:00:00Z",
        }
    ],
}


def _decide(spec, run, now=NOW):
    if isinstance(run, dict):
        run = PipelineRun.from_dict(run)
    return download.decide("team", from_dict(ad.ArtifactDownloadSpec, spec), run, now)


def test_a_recorded_archive_is_granted_by_its_exact_key_and_digest():
    grant = _decide({"run": "r1", "job": "build"}, _run([BUILD]))
    assert isinstance(grant, download.Grant)
    assert grant.key == f"artifacts/team/r1-{UID}/build/2/archive.tar.gz"
    assert (grant.attempt, grant.digest, grant.size) == (2, DIGEST, 1234)
    assert grant.name == "bin.tar.gz" and grant.expires_at == "2026-12-01T12:00:00Z"
    assert _decide({"run": "r1", "job": "build", "attempt": 2}, _run([BUILD])) == grant


@pytest.mark.parametrize(
    ("spec", "run", "reason", "words"),
    [
        ({"run": "elsewhere", "job": "build"}, None, ad.RUN_NOT_FOUND, "no PipelineRun elsewhere"),
        (
            {"run": "r1", "job": "build"},
            _run([BUILD], deletionTimestamp="2026-11-30T11:00:00Z"),
            ad.RUN_NOT_FOUND,
            "in namespace team",
        ),
        ({"run": "r1", "job": "nope"}, _run([BUILD]), ad.JOB_NOT_FOUND, "its jobs: build"),
        ({"run": "r1", "job": "nope"}, _run([]), ad.JOB_NOT_FOUND, "none yet"),
        (
            {"run": "r1", "job": "build", "attempt": 1},
            _run([BUILD]),
            ad.ATTEMPT_NOT_FOUND,
            "latest attempt (2) only",
        ),
        (
            {"run": "r1", "job": "build"},
            _run([{"name": "build", "phase": "Running", "attempt": 1}]),
            ad.NOT_FINISHED,
            "has not finished (Running)",
        ),
        (
            {"run": "r1", "job": "build"},
            _run([{"name": "build", "phase": "Pending"}]),
            ad.NOT_FINISHED,
            "has not run",
        ),
        (
            {"run": "r1", "job": "build"},
            _run([{"name": "build", "phase": "Succeeded", "attempt": 1}]),
            ad.NOT_RECORDED,
            "not recorded yet",
        ),
        (
            {"run": "r1", "job": "build"},
            _run([{"name": "build", "phase": "Succeeded", "attempt": 1, "artifacts": []}]),
            ad.NO_ARTIFACTS,
            "kept no artifacts",
        ),
        (
            {"run": "r1", "job": "build"},
            _odd_record(),
            ad.NO_ARTIFACTS,
            "kept no artifacts",
        ),
        (
            {"run": "r1", "job": "build"},
            _run([{**BUILD, "artifacts": [{"name": "r.xml", "kind": "junit", "digest": DIGEST}]}]),
            ad.NO_ARTIFACTS,
            "kept no artifacts",
        ),
    ],
)
def test_refusals_name_why(spec, run, reason, words):
    refusal = _decide(spec, run)
    assert isinstance(refusal, download.Refusal)
    assert refusal.reason == reason and words in refusal.message, refusal


def test_a_job_without_artifacts_in_the_recorded_pipeline_kept_none():
    """A job that keeps no artifacts never gets a record: it is not 'not recorded yet'."""
    pipeline = {
        "jobs": [
            {"name": "build", "script": ["make"], "artifacts": {"paths": ["bin/"]}},
            {"name": "test", "script": ["make test"]},
        ]
    }
    test = {"name": "test", "phase": "Succeeded", "attempt": 1}
    run = _run([BUILD, test])
    run["status"]["pipelineSpec"] = pipeline
    refusal = _decide({"run": "r1", "job": "test"}, run)
    assert isinstance(refusal, download.Refusal) and refusal.reason == ad.NO_ARTIFACTS
    assert "job test of run r1 (attempt 1) kept no artifacts" in refusal.message
    running = _run([{**test, "phase": "Running"}])
    running["status"]["pipelineSpec"] = pipeline
    assert _decide({"run": "r1", "job": "test"}, running).reason == ad.NO_ARTIFACTS
    # The job that does keep some, finished but not read yet: try again shortly.
    unread = _run([{"name": "build", "phase": "Succeeded", "attempt": 1}])
    unread["status"]["pipelineSpec"] = pipeline
    assert _decide({"run": "r1", "job": "build"}, unread).reason == ad.NOT_RECORDED
    assert download.keeps_artifacts(PipelineRun.from_dict(unread), "build") is True
    assert download.keeps_artifacts(PipelineRun.from_dict(unread), "nope") is None
    # not started: no record
    assert download.keeps_artifacts(PipelineRun.from_dict(_run([])), "build") is None


def test_expired_artifacts_are_refused_from_their_expiry_on():
    spec, run = {"run": "r1", "job": "build"}, _run([BUILD])
    expiry = datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.UTC)
    assert isinstance(_decide(spec, run, expiry - datetime.timedelta(seconds=1)), download.Grant)
    refusal = _decide(spec, run, expiry)
    assert isinstance(refusal, download.Refusal) and refusal.reason == ad.EXPIRED
    assert "expired at 2026-12-01T12:00:00Z" in refusal.message
    never = _run([{**BUILD, "artifacts": [{**BUILD["artifacts"][0], "expiresAt": None}]}])
    assert isinstance(_decide(spec, never, expiry), download.Grant)


def _verify(url: str, method: str) -> bool:
    """Checks a presigned URL as S3 does, for `method` on the URL's own path."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    signature = query.pop("X-Amz-Signature")
    canonical = "\n".join(
        [
            method,
            parts.path,
            sigv4.canonical_query(query),
            f"host:{parts.netloc}\n",
            "host",
            sigv4.UNSIGNED,
        ]
    )
    date = query["X-Amz-Date"]
    scope = f"{date[:8]}/us-east-1/s3/aws4_request"
    to_sign = (
        f"{sigv4.ALGORITHM}\n{date}\n{scope}\n" + hashlib.sha256(canonical.encode()).hexdigest()
    )
    key = sigv4.signing_key("SK", date[:8], "us-east-1")
    return hmac.compare_digest(
        hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature
    )


def test_the_answer_is_a_get_of_exactly_that_object_for_a_few_minutes():
    grant = _decide({"run": "r1", "job": "build"}, _run([BUILD]))
    status = download.answer(grant, CLIENT.presign, NOW)
    assert status["phase"] == ad.READY
    assert (status["digest"], status["size"], status["attempt"]) == (DIGEST, 1234, 2)
    assert status["urlExpiresAt"] == "2026-11-30T12:05:00Z"
    assert status["expiresAt"] == "2026-12-01T12:00:00Z"
    url = status["url"]
    parts = urllib.parse.urlsplit(url)
    assert parts.netloc == "10.0.0.1:9000"
    assert parts.path == f"/conveyor/artifacts/team/r1-{UID}/build/2/archive.tar.gz"
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query["X-Amz-Expires"] == str(download.URL_SECONDS) == "300"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert _verify(url, "GET")
    # The same signature is worth nothing for another method or another object.
    assert not _verify(url, "PUT") and not _verify(url, "DELETE")
    other = url.replace("/build/2/", "/deploy/1/")
    assert not _verify(other, "GET")
    # Shorter when the request's TTL is shorter.
    short = download.answer(grant, CLIENT.presign, NOW, seconds=30)
    assert "X-Amz-Expires=30&" in short["url"] and short["urlExpiresAt"] == "2026-11-30T12:00:30Z"


def test_a_refusal_has_no_url():
    status = download.answer(download.Refusal(ad.NO_ARTIFACTS, "kept nothing"), CLIENT.presign, NOW)
    assert status == {"phase": ad.FAILED, "reason": ad.NO_ARTIFACTS, "error": "kept nothing"}
    assert len(download.refused(ad.EXPIRED, "x" * 5000)["error"]) == ad.ERROR_MAX_LENGTH


def _request(name, created, status=None, deleting=None):
    meta = {"namespace": "team", "name": name, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = deleting
    return {"metadata": meta, "spec": {"run": "r1", "job": "build"}, "status": status or {}}


def test_requests_go_after_their_ttl_and_the_unanswered_are_found():
    ttl = datetime.timedelta(minutes=15)
    bodies = [
        _request("old", "2026-11-30T11:45:00Z", {"phase": "Ready"}),
        _request("young", "2026-11-30T11:59:55Z"),
        _request("waiting", "2026-11-30T11:59:00Z"),
        _request("going", "2026-11-30T11:59:00Z", deleting="2026-11-30T11:59:30Z"),
        _request("answered", "2026-11-30T11:50:00Z", {"phase": "Failed"}),
    ]
    assert download.expired_requests(bodies, NOW, ttl) == [("team", "old")]
    grace = datetime.timedelta(seconds=10)
    assert [b["metadata"]["name"] for b in download.unanswered(bodies, NOW, grace)] == ["waiting"]


def test_the_crd_keeps_spec_immutable_and_status_bounded():
    crd = all_crds()["conveyor.dev_artifactdownloads.yaml"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert spec["required"] == ["run", "job"]
    assert {"rule": "self == oldSelf"}.items() <= spec["x-kubernetes-validations"][0].items()
    assert set(spec["properties"]) == {"run", "job", "attempt"}  # no namespace to name
    status = schema["properties"]["status"]["properties"]
    assert status["url"]["maxLength"] == ad.URL_MAX_LENGTH
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Run", "Job", "Attempt", "Phase", "Reason"]
    assert not any("url" in c["jsonPath"] for c in version["additionalPrinterColumns"])


def test_the_cli_asks_with_a_generated_name():
    body = request_body("r1", "build app", None)
    assert body["kind"] == "ArtifactDownload" and body["apiVersion"] == "conveyor.dev/v1alpha1"
    assert body["metadata"] == {"generateName": "r1-build-app-"}
    assert body["spec"] == {"run": "r1", "job": "build app"}
    assert request_body("r1", "b", 3)["spec"]["attempt"] == 3
    assert len(request_body("r" * 63, "j" * 200, None)["metadata"]["generateName"]) <= 41
    args = build_parser().parse_args(["artifacts", "r1", "build"])
    assert (args.direct, args.timeout, args.output) == (False, 60, ".")


def _downloads(config, ttl=datetime.timedelta(minutes=15)):
    import dataclasses

    from conveyor.kube.jobspec import JobOptions
    from conveyor.reconcile.artifacts import ArtifactService
    from conveyor.reconcile.downloads import Downloads

    service = ArtifactService(None, config, JobOptions())  # type: ignore[arg-type]
    service._client = StoreClient(dataclasses.replace(config), Credentials("AK", "SK"))
    return Downloads(None, service, None, lambda: NOW, ttl)  # type: ignore[arg-type]


def test_the_operator_answers_from_the_run_of_the_requests_namespace_in_its_view():
    runs = {("team", "r1"): [_run([BUILD])], ("other", "r2"): [_run([BUILD], name="r2")]}
    downloads = _downloads(CONFIG)
    status = downloads._status("team", ad.ArtifactDownloadSpec("r1", "build"), runs)
    assert status["phase"] == ad.READY
    assert f"/conveyor/artifacts/team/r1-{UID}/build/2/" in status["url"]
    # A request's TTL shorter than five minutes bounds its URL.
    short = _downloads(CONFIG, datetime.timedelta(seconds=30))
    assert (
        "X-Amz-Expires=30&"
        in short._status("team", ad.ArtifactDownloadSpec("r1", "build"), runs)["url"]
    )
    # Without a store: refused, saying so.
    none = _downloads(CONFIG)
    none.artifacts.config = None
    refused = none._status("team", ad.ArtifactDownloadSpec("r1", "build"), runs)
    assert refused["reason"] == ad.STORE_UNAVAILABLE and "no artifact store" in refused["error"]


def test_download_urls_are_signed_for_the_endpoint_users_reach():
    import dataclasses

    public = dataclasses.replace(CONFIG, download_endpoint="https://s3.example.com")
    runs = {("team", "r1"): [_run([BUILD])]}
    status = _downloads(public)._status("team", ad.ArtifactDownloadSpec("r1", "build"), runs)
    parts = urllib.parse.urlsplit(status["url"])
    assert (parts.scheme, parts.netloc) == ("https", "s3.example.com")
    # Signed for that host: S3 checks the Host header it receives against the signature.
    assert _verify(status["url"], "GET")
    assert not _verify(status["url"].replace("s3.example.com", "10.0.0.1:9000"), "GET")
    args = build_parser().parse_args(
        [
            "operator",
            "--artifact-store-endpoint",
            "http://minio.store.svc:9000",
            "--artifact-store-secret",
            "s",
            "--artifact-download-endpoint",
            "https://s3.example.com/",
        ]
    )
    from conveyor.cli.operator_cmd import store_config

    config = store_config(args)
    assert config is not None and config.download_endpoint == "https://s3.example.com"
    assert args.artifact_download_ttl == datetime.timedelta(minutes=15)


async def test_a_request_that_cannot_be_read_never_stops_the_others_being_answered():
    """The sweep answers what an event missed: a body the model refuses is logged and left."""

    answered: dict[str, dict] = {}

    class Kube:
        def patch_download_status(self, namespace, name, status):
            answered[name] = status

        def delete_download(self, namespace, name):
            raise AssertionError("nothing is past its TTL")

    async def io(call, *args):
        return call(*args)

    downloads = _downloads(CONFIG)
    downloads.kube, downloads.io = Kube(), io
    created = "2026-11-30T11:59:00Z"  # a minute before NOW: unanswered, within the TTL

    def request(name, spec):
        meta = {"name": name, "namespace": "team", "creationTimestamp": created}
        return {"metadata": meta, "spec": spec}

    odd = request("odd", {"run": "r1", "job": "build", "attempt": 0})  # attempt >= 1
    fine = request("fine", {"run": "r1", "job": "build"})
    await downloads.sweep_once([odd, fine], {("team", "r1"): [_run([BUILD])]})
    assert list(answered) == ["fine"] and answered["fine"]["phase"] == ad.READY
