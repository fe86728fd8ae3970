"""Per-attempt transfer plans (presigned URLs for exactly the attempt's objects), the job pod
they shape, the supervisor's upload step (run for real with /bin/sh), the observer's reasons and
the operator's store options."""

from __future__ import annotations

import datetime
import json
import subprocess
import urllib.parse
from dataclasses import replace

import pytest

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.pipelinerun import ArtifactRecord, parse_run_status
from conveyor.cli.main import build_parser
from conveyor.cli.operator_cmd import job_options
from conveyor.kube import script as scripts
from conveyor.kube.jobspec import TRANSFER_DIR, build_job, transfer_plan_secret
from conveyor.kube.observe import observe_job
from conveyor.store import plan as plans
from conveyor.store.client import StoreClient
from conveyor.store.config import NOT_CONFIGURED, StoreConfig
from conveyor.store.sigv4 import Credentials

NOW = datetime.datetime(2026, 11, 30, 12, tzinfo=datetime.UTC)
CONFIG = StoreConfig("http://10.0.0.1:9000", "conveyor", "conveyor-system", "store")
CLIENT = StoreClient(CONFIG, Credentials("AK", "SK"), now=lambda: NOW)

SPEC = parse_pipeline_spec(
    {
        "stages": ["build", "test", "deploy"],
        "jobs": [
            {
                "name": "build",
                "stage": "build",
                "script": ["make"],
                "artifacts": {"paths": ["bin/"], "exclude": ["bin/*.log"]},
            },
            {
                "name": "docs",
                "stage": "build",
                "script": ["make docs"],
                "artifacts": {"paths": ["site/"]},
            },
            {"name": "lint", "stage": "build", "script": ["make lint"]},
            {
                "name": "test",
                "stage": "test",
                "script": ["make test"],
                "cache": [
                    {
                        "key": "deps-$CI_COMMIT_REF_SLUG",
                        "paths": ["vendor/"],
                        "fallbackKeys": ["deps-main"],
                    }
                ],
            },
            {"name": "isolated", "stage": "test", "script": ["true"], "dependencies": []},
            {"name": "deploy", "stage": "deploy", "script": ["./deploy"], "needs": ["build"]},
            {
                "name": "readonly",
                "stage": "test",
                "script": ["true"],
                "cache": [{"key": "k", "paths": ["x"], "policy": "pull"}],
            },
        ],
    }
)
RUN = PipelineRun.from_dict(
    {
        "metadata": {"name": "app-1", "namespace": "team-a", "uid": "u1"},
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
    }
)
D = "sha256:" + "ab" * 32
E = "sha256:" + "cd" * 32
# The run's status.jobs as the operator records them: build's second attempt kept an archive,
# docs' first too, lint keeps none (no `artifacts`).
JOBS = [
    {
        "name": "build",
        "phase": "Succeeded",
        "attempt": 2,
        "artifacts": [{"name": "a.tar.gz", "kind": "archive", "size": 3, "digest": D}],
    },
    {
        "name": "docs",
        "phase": "Succeeded",
        "attempt": 1,
        "artifacts": [{"name": "a.tar.gz", "kind": "archive", "size": 3, "digest": E}],
    },
    {"name": "lint", "phase": "Succeeded", "attempt": 1},
]


def statuses(entries):
    """status.jobs entries as the operator parses them from the stored run."""
    return parse_run_status({"jobs": [{"stage": "test", **e} for e in entries]}).jobs


def plan_of(job_name, jobs=JOBS, lookup=lambda _: None):
    job = SPEC.job(job_name)
    sources = plans.dependencies(SPEC, job, statuses(jobs))
    assert sources is not None
    return plans.transfer_plan(
        spec=SPEC,
        job=job,
        attempt=plans.AttemptRef("team-a", "app-1", "u1", job_name, 1),
        sources=sources,
        pipeline_name="app",
        project_dir="/builds/team-a/app",
        lookup=lookup,
        presign=CLIENT.presign,
        seconds=3600,
        max_bytes=1000,
    )


def path_of(url):
    return urllib.parse.urlsplit(url).path


def query_of(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def test_a_later_stage_downloads_earlier_artifacts_of_their_latest_attempt():
    plan = plan_of("test")
    assert [d["job"] for d in plan["downloads"]] == ["build", "docs"]  # lint keeps none
    assert path_of(plan["downloads"][0]["url"]) == (
        "/conveyor/artifacts/team-a/app-1-u1/build/2/archive.tar.gz"
    )
    assert query_of(plan["downloads"][0]["url"])["X-Amz-Expires"] == "3600"
    # Each download carries the digest recorded when its job ended: the binary checks it.
    assert [d["sha256"] for d in plan["downloads"]] == ["ab" * 32, "cd" * 32]
    assert "artifacts" not in plan  # test keeps none


def test_a_download_waits_for_its_sources_record_and_skips_what_kept_nothing():
    test = SPEC.job("test")
    unread = [{**JOBS[0], "artifacts": None}, JOBS[1]]
    unread[0].pop("artifacts")
    # build finished but its record is not read yet: nothing may start on a guess.
    assert plans.dependencies(SPEC, test, statuses(unread)) is None
    # Read, and it kept nothing: nothing to download from it.
    kept_nothing = [{**JOBS[0], "artifacts": []}, JOBS[1]]
    assert [d.job for d in plans.dependencies(SPEC, test, statuses(kept_nothing))] == ["docs"]
    # Still running (a needs job can start before an earlier stage ends): not waited for here.
    running = [{"name": "build", "phase": "Running", "attempt": 3}, JOBS[1]]
    assert [d.job for d in plans.dependencies(SPEC, test, statuses(running))] == ["docs"]
    # A record without a valid digest is not downloaded (nothing to check it against).
    # (The API server refuses such a record; the operator does not trust that alone.)
    (build, docs) = statuses(JOBS[:2])
    odd = (replace(build, artifacts=(ArtifactRecord("a", digest="sha256:zz"),)), docs)
    assert [d.job for d in plans.dependencies(SPEC, test, odd)] == ["docs"]
    # The latest attempt's archive, with its digest.
    (build, _docs) = plans.dependencies(SPEC, test, statuses(JOBS))
    assert (build.job, build.attempt, build.digest) == ("build", 2, D)


def test_native_deploys_and_scans_download_nothing():
    spec = parse_pipeline_spec(
        {
            "stages": ["build", "deploy"],
            "jobs": [
                {"name": "build", "stage": "build", "script": ["x"], "artifacts": {"paths": ["a"]}},
                {"name": "prod", "stage": "deploy", "deploy": {}, "environment": {"name": "prod"}},
                {"name": "scan", "stage": "deploy", "scan": {"image": "debian:12"}},
            ],
        }
    )
    assert plans.dependencies(spec, spec.job("prod"), statuses(JOBS)) == ()
    assert plans.dependencies(spec, spec.job("scan"), statuses(JOBS)) == ()


IMAGE_SPEC = parse_pipeline_spec(
    {
        "stages": ["build", "package"],
        "jobs": [
            {"name": "build", "stage": "build", "script": ["x"], "artifacts": {"paths": ["a"]}},
            {
                "name": "image",
                "stage": "package",
                "build": {"image": "reg/app:1", "context": "a"},
                "cache": [{"key": "k", "paths": ["x"]}],
            },
        ],
    }
)


def test_a_build_downloads_what_it_depends_on_and_nothing_else():
    """Its builder reads the checkout as its context: the archives of the jobs it depends on
    are extracted there first, checked against their digests. It keeps nothing and has no
    cache of the transfer binary's (its builder never runs it)."""
    image = IMAGE_SPEC.job("image")
    assert plans.uses_store(IMAGE_SPEC, image, None)
    jobs = statuses([JOBS[0]])  # build, attempt 2, its archive recorded
    (source,) = plans.dependencies(IMAGE_SPEC, image, jobs)
    assert (source.job, source.attempt, source.digest) == ("build", 2, D)
    plan = _plan(IMAGE_SPEC, image, sources=(source,))
    assert [d["job"] for d in plan["downloads"]] == ["build"]
    assert "artifacts" not in plan and plan["caches"] == []


def test_dependencies_empty_and_needs_narrow_the_downloads():
    assert plan_of("isolated")["downloads"] == []
    assert [d["job"] for d in plan_of("deploy")["downloads"]] == ["build"]


def test_uploads_are_presigned_puts_of_the_attempts_own_objects():
    plan = plan_of("build")
    up = plan["artifacts"]
    assert up["paths"] == ["bin/"] and up["exclude"] == ["bin/*.log"]
    assert up["maxBytes"] == 1000 and up["when"] == "on_success"
    assert path_of(up["url"]) == "/conveyor/artifacts/team-a/app-1-u1/build/1/archive.tar.gz"
    assert path_of(up["manifestUrl"]).endswith("/build/1/manifest.json")
    # Presigned with the store's key id, never its secret.
    assert "SK" not in json.dumps(plan).replace("SignedHeaders", "")
    assert query_of(up["url"])["X-Amz-Credential"].startswith("AK/")


def test_caches_are_tried_in_order_and_pull_policy_gets_no_upload_url():
    plan = plan_of("test", lookup={"CI_COMMIT_REF_SLUG": "feature"}.get)
    (cache,) = plan["caches"]
    assert [k["key"] for k in cache["pull"]] == ["deps-feature", "deps-main"]
    assert path_of(cache["push"]["url"]) == "/conveyor/caches/team-a/app/deps-feature"
    (readonly,) = plan_of("readonly")["caches"]
    assert "push" not in readonly and [k["key"] for k in readonly["pull"]] == ["k"]


def _run_and_job(job_fields):
    spec = parse_pipeline_spec({"jobs": [{"name": "j", "script": ["true"], **job_fields}]})
    return spec, spec.jobs[0]


def test_the_pod_gets_the_binary_from_an_init_container_and_the_plan_from_its_secret():
    spec, job = _run_and_job({"artifacts": {"paths": ["out"]}})
    built = build_job(run=RUN, pipeline=spec, job=job, attempt=1, transfer="app-1-j-1-plan-x7k2p")
    pod = built["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod.get("initContainers", [])}
    assert init["artifacts"]["command"] == ["/bin/conveyor-transfer", "init", TRANSFER_DIR]
    script = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in script["env"]}
    assert env["CONVEYOR_TRANSFER"] == f"{TRANSFER_DIR}/conveyor-transfer"
    assert env["CONVEYOR_TRANSFER_PLAN_FILE"] == "/conveyor/plan/plan.json"
    volume = next(
        v for v in pod["volumes"] if "secret" in v and v["name"] == "conveyor-transfer-plan"
    )
    assert volume["secret"]["secretName"] == "app-1-j-1-plan-x7k2p"
    for container in (init["artifacts"], script):
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/conveyor/plan"]["readOnly"] is True
    mount = next(m for m in script["volumeMounts"] if m["mountPath"] == TRANSFER_DIR)
    assert mount["readOnly"] is True
    # No store credentials anywhere in the Job, and no URL: the plan is only in its Secret.
    assert "secretKeyRef" not in json.dumps(built)
    assert "X-Amz" not in json.dumps(built)


def test_a_builds_pod_downloads_after_its_checkout_and_its_builder_gets_no_urls():
    source = parse_pipeline_spec(
        {
            "source": {"url": "https://git.example.com/app.git"},
            "stages": ["build", "package"],
            "jobs": [
                {"name": "build", "stage": "build", "script": ["x"], "artifacts": {"paths": ["a"]}},
                {"name": "image", "stage": "package", "build": {"image": "reg/app:1"}},
            ],
        }
    )
    built = build_job(
        run=RUN, pipeline=source, job=source.job("image"), attempt=1, transfer="app-1-plan-x"
    )
    pod = built["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["checkout", "artifacts"]
    assert pod["initContainers"][1]["command"] == ["/bin/conveyor-transfer", "init", TRANSFER_DIR]
    (builder,) = pod["containers"]
    assert "CONVEYOR_TRANSFER_PLAN_FILE" not in {e["name"] for e in builder.get("env", [])}
    mounts = {m["mountPath"] for m in builder["volumeMounts"]}
    assert "/conveyor/plan" not in mounts and TRANSFER_DIR not in mounts


def test_the_plan_secret_is_named_by_the_server_and_goes_with_its_run():
    _spec, job = _run_and_job({"artifacts": {"paths": ["out"]}})
    secret = transfer_plan_secret(RUN, job, 2, '{"projectDir":"/b"}')
    meta = secret["metadata"]
    # generateName: nobody can create it before the operator and have a job pod read theirs.
    assert "name" not in meta and meta["generateName"].endswith("-plan-")
    assert len(meta["generateName"]) + 5 <= 63
    assert meta["namespace"] == "team-a"
    assert meta["ownerReferences"][0]["uid"] == "u1"
    assert meta["labels"]["conveyor.dev/transfer-plan"] == "true"
    assert secret["stringData"] == {"plan.json": '{"projectDir":"/b"}'}


def test_without_a_store_the_job_fails_naming_what_is_missing():
    spec, job = _run_and_job({"artifacts": {"paths": ["out"]}})
    built = build_job(run=RUN, pipeline=spec, job=job, attempt=1, refusal=NOT_CONFIGURED)
    script = built["spec"]["template"]["spec"]["containers"][0]
    assert script["args"] == [NOT_CONFIGURED]
    assert "--artifact-store-endpoint" in NOT_CONFIGURED


def _supervise(tmp_path, main, transfer_exit):
    fake = tmp_path / "transfer"
    log = tmp_path / "calls"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit {transfer_exit}\n')
    fake.chmod(0o755)
    proc = subprocess.run(
        ["/bin/sh", "-c", scripts.SUPERVISOR, "x", "/bin/sh", main, "", ""],
        env={
            "PATH": "/usr/bin:/bin",
            "CONVEYOR_TRANSFER": str(fake),
            "CONVEYOR_TERMINATION_LOG": str(tmp_path / "term"),
        },
        capture_output=True,
        text=True,
    )
    return proc.returncode, log.read_text() if log.exists() else ""


def test_the_supervisor_uploads_after_the_script_with_its_result(tmp_path):
    assert _supervise(tmp_path, "true", 0) == (0, "upload success\n")
    (tmp_path / "calls").unlink()
    assert _supervise(tmp_path, "exit 3", 0) == (3, "upload failed\n")
    (tmp_path / "calls").unlink()
    # A failed upload fails a job that had succeeded.
    assert _supervise(tmp_path, "true", 1)[0] == 1


def test_the_observer_names_artifact_failures():
    def job_with(pod):
        return observe_job(
            {
                "metadata": {
                    "name": "j",
                    "annotations": {"conveyor.dev/job": "j", "conveyor.dev/attempt": "1"},
                },
                "status": {"conditions": [{"type": "Failed", "status": "True"}]},
            },
            [pod],
        )

    upload = job_with(
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": "script",
                        "state": {
                            "terminated": {"exitCode": 1, "message": "conveyor: artifacts: too big"}
                        },
                    }
                ]
            }
        }
    )
    assert upload.reason == "ArtifactsFailed" and "too big" in upload.message
    download = job_with(
        {
            "status": {
                "initContainerStatuses": [
                    {
                        "name": "artifacts",
                        "state": {
                            "terminated": {
                                "exitCode": 1,
                                "message": "conveyor: artifacts: HTTP 403",
                            }
                        },
                    }
                ]
            }
        }
    )
    assert download.reason == "ArtifactsDownloadFailed"


def test_operator_store_options():
    parser = build_parser()
    args = parser.parse_args(
        [
            "operator",
            "--artifact-store-endpoint",
            "http://s3:9000/",
            "--artifact-store-secret",
            "store",
            "--artifact-max-size",
            "100Mi",
        ]
    )
    options = job_options(args)
    assert options.artifact_store == StoreConfig(
        "http://s3:9000", "conveyor", "conveyor-system", "store", max_artifact_bytes=100 << 20
    )
    assert job_options(parser.parse_args(["operator"])).artifact_store is None
    with pytest.raises(ValueError, match="--artifact-store-secret"):
        job_options(parser.parse_args(["operator", "--artifact-store-endpoint", "http://s3"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["operator", "--artifact-max-size", "lots"])


def test_the_transfer_binary_go_tests():
    """transfer/: globs, archive round trip, no extraction outside the project directory,
    `when`, the size limit, cache fallback order (go test)."""
    import shutil
    from pathlib import Path

    go = shutil.which("go") or "/usr/local/go/bin/go"
    proc = subprocess.run(
        [go, "test", "-count=1", "./..."],
        cwd=Path(__file__).resolve().parents[3] / "transfer",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "GOFLAGS": "-mod=mod",
             "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_cli_finds_the_latest_attempts_archive_and_extracts_safely(tmp_path):
    import io
    import tarfile

    from conveyor.api.pipelinerun import ArtifactRecord, PipelineRun
    from conveyor.cli.artifacts import attempt_record, safe_extract
    from conveyor.cli.objects import parse

    job = {"name": "b", "stage": "build", "phase": "Succeeded", "attempt": 2}
    body = {
        "metadata": {"name": "r"},
        "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}},
        "status": {"jobs": [{**job, "artifacts": [{"name": "a.tar.gz"}]}]},
    }
    run_obj = parse(PipelineRun, body)
    assert attempt_record(run_obj, "b", None) == (2, ArtifactRecord("a.tar.gz"))
    with pytest.raises(ValueError, match="no job 'x'"):
        attempt_record(run_obj, "x", None)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(tarfile.TarError):
        safe_extract(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_an_attempt_failed_by_its_artifacts_keeps_that_reason():
    from conveyor.engine import attempts
    from conveyor.engine.model import ObservedJob

    seen = ObservedJob(
        "j-1", "j", 1, "failed", exit_code=1, reason="ArtifactsFailed", message="too big"
    )
    assert attempts._from_observed(seen).reason == "ArtifactsFailed"
    script = ObservedJob("j-1", "j", 1, "failed", exit_code=1, reason="BackoffLimitExceeded")
    assert attempts._from_observed(script).reason == "ScriptFailure"


def _plan(spec, job, checkout=True, sources=()):
    return plans.transfer_plan(
        spec=spec,
        job=job,
        attempt=plans.AttemptRef("team-a", "app-1", "u1", job.name, 1),
        sources=sources,
        pipeline_name="app",
        project_dir="/builds/team-a/app",
        lookup=lambda _: None,
        presign=CLIENT.presign,
        seconds=3600,
        max_bytes=1000,
        checkout=checkout,
    )


def test_a_cache_with_key_files_is_keyed_by_the_blob_ids_the_operator_read():
    import hashlib

    from conveyor.kube.jobspec import JobOptions
    from conveyor.reconcile.artifacts import KEY_FILES_UNREAD, ArtifactService, Prepared

    spec = parse_pipeline_spec(
        {"jobs": [{"name": "j", "script": ["true"],
                   "cache": [{"keyFiles": {"files": ["go.sum", "*.mod"]}, "paths": [".go/"]},
                             {"keyFiles": {"files": ["none.lock"], "prefix": "p"},
                              "paths": ["x"]}]}]}
    )  # fmt: skip
    service = ArtifactService(None, CONFIG, JobOptions())  # type: ignore[arg-type]
    service._client = CLIENT
    # Without the blob ids (the controller reads them first) the job fails, saying so.
    assert service.prepare(RUN, spec, spec.jobs[0], 1, ()) == Prepared(refusal=KEY_FILES_UNREAD)
    blobs = {"go.sum": ("2" * 40,), "*.mod": ("1" * 40, "2" * 40), "none.lock": ()}
    prepared = service.prepare(RUN, spec, spec.jobs[0], 1, (), blobs)
    assert prepared.plan is not None
    caches = json.loads(prepared.plan)["caches"]
    digest = hashlib.sha1(("1" * 40 + "-" + "2" * 40).encode()).hexdigest()
    assert caches[0]["push"]["key"] == f"0_go_*-{digest}"
    assert [k["key"] for k in caches[0]["pull"]] == [f"0_go_*-{digest}"]
    assert caches[1]["push"]["key"] == "p-default"  # no such file: GitLab's `default`
    unconfigured = ArtifactService(None, None, JobOptions())  # type: ignore[arg-type]
    assert unconfigured.prepare(RUN, spec, spec.jobs[0], 1, ()) == Prepared(refusal=NOT_CONFIGURED)


def test_untracked_is_in_the_plan_and_the_checkout_lists_tracked_files():
    from conveyor.kube.jobspec import CHECKOUT_CONTAINER

    spec = parse_pipeline_spec(
        {"source": {"url": "https://git.example.com/app.git"},
         "jobs": [{"name": "j", "script": ["true"],
                   "artifacts": {"untracked": True, "exclude": ["*.log"]},
                   "cache": [{"key": "k", "untracked": True}, {"key": "p", "paths": ["x"]}]},
                  {"name": "plain", "script": ["true"], "artifacts": {"paths": ["x"]}}]}
    )  # fmt: skip
    job, plain = spec.jobs
    plan = _plan(spec, job)
    assert plan["trackedFile"] == plans.TRACKED_FILE
    assert plan["artifacts"]["untracked"] is True and plan["artifacts"]["paths"] == []
    assert plan["artifacts"]["exclude"] == ["*.log"]
    assert [c["untracked"] for c in plan["caches"]] == [True, False]
    # No checkout (a pipeline without a source): no list, every file is untracked.
    assert "trackedFile" not in _plan(spec, job, checkout=False)
    assert "trackedFile" not in _plan(spec, plain)
    assert _plan(spec, plain)["artifacts"]["untracked"] is False

    def checkout_env(job, transfer):
        built = build_job(run=RUN, pipeline=spec, job=job, attempt=1, transfer=transfer)
        (checkout,) = [
            c for c in built["spec"]["template"]["spec"]["initContainers"]
            if c["name"] == CHECKOUT_CONTAINER
        ]  # fmt: skip
        return {e["name"]: e.get("value") for e in checkout["env"]}

    assert checkout_env(job, "plan-x")["CONVEYOR_TRACKED_FILE"] == plans.TRACKED_FILE
    assert "CONVEYOR_TRACKED_FILE" not in checkout_env(plain, "plan-x")
    assert "CONVEYOR_TRACKED_FILE" not in checkout_env(job, None)
    # Outside the project directory: never archived itself.
    assert not plans.TRACKED_FILE.startswith("/builds/team-a/")
