"""Pipelines and PipelineRuns on the real ci cluster, with the operator under its own RBAC."""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from tests.e2e.conveyor import (
    OPERATOR_USER,
    Conveyor,
    Operator,
    audit_entries,
    conveyor_cli,
    fails,
    job,
    job_status,
    lasts,
    phase,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.gitrepo import new_repo
from tests.e2e.support import Clusters, wait_until

STAGES = ["build", "test", "deploy", "report"]


def four_stage(unit: dict, deploy: dict) -> list[dict]:
    """build -> test (lint needs nothing; unit retries once; scan may fail) -> deploy -> report
    (notify on failure, cleanup always)."""
    return [
        job("build", "build", **lasts("2s")),
        job("lint", "test", needs=[]),
        job("unit", "test", retry={"max": 1}, **unit),
        job("scan", "test", allowFailure=True, **fails(3)),
        job("deploy", "deploy", needs=["build", "unit"], **deploy),
        job("notify-failure", "report", when="on_failure"),
        job("cleanup", "report", when="always"),
    ]


def test_four_stage_pipeline_succeeds_with_warnings(conveyor: Conveyor) -> None:
    conveyor.create(pipeline("app", four_stage(unit={}, deploy={}), stages=STAGES))
    conveyor.create(run("app-1", "app"))
    done = conveyor.wait_finished("app-1")

    assert phase(done) == "Succeeded"
    assert succeeded_condition(done)["reason"] == "SucceededWithWarnings"
    scan = job_status(done, "scan")
    assert (scan["phase"], scan["exitCode"], scan.get("allowedFailure")) == ("Failed", 3, True)
    assert job_status(done, "notify-failure")["phase"] == "Skipped"
    assert job_status(done, "cleanup")["phase"] == "Succeeded"
    assert job_status(done, "unit")["attempt"] == 1
    # needs: [] starts lint at once, before the 2-second build is over.
    assert job_status(done, "lint")["startTime"] < job_status(done, "build")["completionTime"]
    assert len(conveyor.jobs("app-1")) == 6  # notify-failure is skipped: no Job


def test_failure_is_retried_then_stops_later_stages(conveyor: Conveyor, operator: Operator) -> None:
    conveyor.create(pipeline("app", four_stage(unit=fails(2), deploy={}), stages=STAGES))
    conveyor.create(run("app-1", "app"))
    done = conveyor.wait_finished("app-1")

    assert phase(done) == "Failed"
    unit = job_status(done, "unit")
    assert (unit["phase"], unit["attempt"], unit["exitCode"]) == ("Failed", 2, 2)
    assert job_status(done, "deploy")["phase"] == "Skipped"
    assert job_status(done, "notify-failure")["phase"] == "Succeeded"
    assert job_status(done, "cleanup")["phase"] == "Succeeded"
    attempts = sorted(
        j.metadata.annotations["conveyor.dev/attempt"]
        for j in conveyor.jobs("app-1")
        if j.metadata.annotations["conveyor.dev/job"] == "unit"
    )
    assert attempts == ["1", "2"]
    # The metrics count each ending once: both failed attempts, the run, the allowed failure.
    labels = {"namespace": conveyor.ns, "pipeline": "app"}
    wait_until(
        lambda: (
            operator.metric("conveyor_pipelineruns_finished_total", **labels, phase="Failed") == 1
        ),
        timeout=30,
        what="the failed run in the metrics",
    )
    finished = "conveyor_jobs_finished_total"
    assert operator.metric(finished, **labels, job="unit", phase="Failed") == 2
    assert operator.metric(finished, **labels, job="scan", phase="Failed") == 1
    assert operator.metric(finished, **labels, job="deploy", phase="Skipped") == 1
    assert operator.metric(finished, **labels, job="build", phase="Succeeded") == 1
    assert operator.metric("conveyor_pipelineruns", namespace=conveyor.ns, phase="Failed") == 1
    assert operator.metric("conveyor_pipelinerun_duration_seconds_count", **labels, phase="Failed")


def test_job_timeout_fails_the_job_and_run(conveyor: Conveyor) -> None:
    slow_deploy = {"timeout": "2s", **lasts("120s")}
    conveyor.create(pipeline("app", four_stage(unit={}, deploy=slow_deploy), stages=STAGES))
    conveyor.create(run("app-1", "app"))
    done = conveyor.wait_finished("app-1", timeout=90)

    assert phase(done) == "Failed"
    deploy = job_status(done, "deploy")
    assert (deploy["phase"], deploy["reason"]) == ("Failed", "Timeout")
    assert job_status(done, "notify-failure")["phase"] == "Succeeded"


def test_allowed_exit_codes_only_tolerate_those_codes(conveyor: Conveyor) -> None:
    conveyor.create(
        pipeline(
            "codes",
            [
                job("tolerated", allowFailureExitCodes=[3], **fails(3)),
                job("not-tolerated", allowFailureExitCodes=[3], **fails(4)),
            ],
        )
    )
    conveyor.create(run("codes-1", "codes"))
    done = conveyor.wait_finished("codes-1")
    assert phase(done) == "Failed"
    assert job_status(done, "tolerated").get("allowedFailure") is True
    assert not job_status(done, "not-tolerated").get("allowedFailure")


def test_cancel_stops_running_jobs_and_keeps_them(conveyor: Conveyor, clusters: Clusters) -> None:
    conveyor.create(pipeline("long", [job("sleep", **lasts("600s")), job("after", "deploy")]))
    conveyor.create(run("long-1", "long"))
    conveyor.wait_run("long-1", lambda r: phase(r) == "Running")
    wait_until(lambda: conveyor.jobs("long-1"), what="the running Job")

    proc = conveyor_cli(clusters, "cancel", "long-1", "-n", conveyor.ns)
    assert proc.returncode == 0, proc.stderr
    done = conveyor.wait_finished("long-1")
    assert phase(done) == "Cancelled"
    assert succeeded_condition(done)["reason"] == "Cancelled"
    assert job_status(done, "sleep")["phase"] == "Cancelled"
    # Stopped, not deleted: the Job stays (with its pod and log) until the run goes.
    wait_until(
        lambda: [j.status.active or 0 for j in conveyor.jobs("long-1")] == [0],
        what="the Job to be stopped",
    )
    again = conveyor_cli(clusters, "cancel", "long-1", "-n", conveyor.ns)
    assert again.returncode == 1 and "already finished" in again.stderr


def test_blocking_manual_job_waits_for_play(conveyor: Conveyor, clusters: Clusters) -> None:
    conveyor.create(
        pipeline(
            "gated",
            [
                job("build", "build"),
                job("release", "deploy", when="manual", allowFailure=False),
                job("announce", "deploy", needs=["release"]),
            ],
        )
    )
    conveyor.create(run("gated-1", "gated"))
    waiting = conveyor.wait_run(
        "gated-1", lambda r: succeeded_condition(r).get("reason") == "ManualActionRequired"
    )
    assert phase(waiting) == "Running"
    assert job_status(waiting, "release")["phase"] == "Manual"
    assert "conveyor play gated-1 release" in succeeded_condition(waiting)["message"]
    assert len(conveyor.jobs("gated-1")) == 1

    bad = conveyor_cli(clusters, "play", "gated-1", "build", "-n", conveyor.ns)
    assert bad.returncode == 1 and "not waiting to be played" in bad.stderr
    proc = conveyor_cli(clusters, "play", "gated-1", "release", "-n", conveyor.ns)
    assert proc.returncode == 0, proc.stderr
    done = conveyor.wait_finished("gated-1")
    assert phase(done) == "Succeeded"
    assert job_status(done, "announce")["phase"] == "Succeeded"


def test_a_finished_runs_manual_job_is_played_and_the_run_ends_again(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    # The seed's prod deploy: `when: manual`, unprotected, so the pipeline passes without it
    # and someone plays it later (GitLab runs the pipeline again and ends with its result).
    conveyor.create(
        pipeline("late", [job("test", "test"), job("deploy-prod", "deploy", when="manual")])
    )
    conveyor.create(run("late-1", "late"))
    passed = conveyor.wait_finished("late-1")
    assert phase(passed) == "Succeeded"
    assert job_status(passed, "deploy-prod")["phase"] == "Manual"
    proc = conveyor_cli(clusters, "play", "late-1", "deploy-prod", "-n", conveyor.ns)
    assert proc.returncode == 0, proc.stderr
    again = conveyor.wait_run(
        "late-1",
        lambda r: phase(r) == "Succeeded" and job_status(r, "deploy-prod")["phase"] == "Succeeded",
    )
    assert again["status"]["completionTime"] >= passed["status"]["completionTime"]
    assert len(conveyor.jobs("late-1")) == 2
    events = clusters.kubectl("ci", "get", "events", "-n", conveyor.ns, "-o", "json").stdout
    assert "deploy-prod played after the run ended" in events
    # Nothing left to play: a clear refusal, not a silent success.
    proc = conveyor_cli(clusters, "play", "late-1", "deploy-prod", "-n", conveyor.ns)
    assert proc.returncode == 1 and "not waiting to be played" in proc.stderr


def test_a_manual_job_that_tolerates_some_exit_codes_blocks(conveyor: Conveyor) -> None:
    # docs.gitlab.com/ci/jobs/job_control/#types-of-manual-jobs: only allow_failure: true makes
    # a manual job optional; with allow_failure: {exit_codes} it blocks the later stages.
    conveyor.create(
        pipeline(
            "tolerant",
            [
                job("release", "build", when="manual", allowFailureExitCodes=[3]),
                job("announce", "deploy"),
            ],
        )
    )
    conveyor.create(run("tolerant-1", "tolerant"))
    waiting = conveyor.wait_run(
        "tolerant-1", lambda r: succeeded_condition(r).get("reason") == "ManualActionRequired"
    )
    assert phase(waiting) == "Running"
    assert job_status(waiting, "release")["phase"] == "Manual"
    assert job_status(waiting, "announce")["phase"] == "Pending"
    assert not conveyor.jobs("tolerant-1")


def test_invalid_pipelines_are_refused_or_reported(conveyor: Conveyor) -> None:
    with pytest.raises(ApiException) as refused:
        conveyor.create(pipeline("bad-stage", [job("a", "nope")], stages=["build"]))
    assert refused.value.status == 422
    assert "stage is not listed in stages" in refused.value.body

    with pytest.raises(ApiException) as duplicate:
        conveyor.create(pipeline("dup", [job("a"), job("a")]))
    assert duplicate.value.status == 422 and "Duplicate value" in duplicate.value.body

    conveyor.create(pipeline("missing-need", [job("a", needs=["ghost"])]))
    conveyor.create(
        pipeline("cycle", [job("a", needs=["b"]), job("b", needs=["a"])], stages=["test"])
    )
    for name in ("missing-need", "cycle"):
        conveyor.create(run(f"{name}-1", name))
        done = conveyor.wait_finished(f"{name}-1")
        cond = succeeded_condition(done)
        assert (phase(done), cond["reason"]) == ("Failed", "InvalidPipeline")
        assert not conveyor.jobs(f"{name}-1")
    assert "ghost" in succeeded_condition(conveyor.get_run("missing-need-1"))["message"]
    assert "cycle" in succeeded_condition(conveyor.get_run("cycle-1"))["message"]


def test_run_waits_for_a_missing_pipeline(conveyor: Conveyor) -> None:
    conveyor.create(run("early-1", "later"))
    waiting = conveyor.wait_run(
        "early-1", lambda r: succeeded_condition(r).get("reason") == "PipelineNotFound"
    )
    assert phase(waiting) == "Pending"
    assert "later" in succeeded_condition(waiting)["message"]
    conveyor.create(pipeline("later", [job("a")]))
    assert phase(conveyor.wait_finished("early-1")) == "Succeeded"


def test_kubectl_get_shows_the_columns(conveyor: Conveyor, clusters: Clusters) -> None:
    conveyor.create(pipeline("cols", [job("a", "build"), job("b", "deploy", **lasts("600s"))]))
    sha = "0123456789abcdef0123456789abcdef01234567"
    conveyor.create(run("cols-1", "cols", ref="release/1.0", revision={"ref": "main", "sha": sha}))
    conveyor.wait_run("cols-1", lambda r: (r.get("status") or {}).get("currentStage") == "deploy")
    out = clusters.kubectl("ci", "get", "pipelineruns", "-n", conveyor.ns).stdout.splitlines()
    assert out[0].split() == [
        "NAME",
        "PIPELINE",
        "REF",
        "SHA",
        "STATUS",
        "REASON",
        "STAGE",
        "RETRIED",
        "AGE",
        "DURATION",
    ]
    # Why it waits or ends (the Succeeded condition's reason); RETRIED stays empty here.
    assert out[1].split()[:7] == [
        "cols-1",
        "cols",
        "main",
        "01234567",
        "Running",
        "Running",
        "deploy",
    ]
    everything = clusters.kubectl("ci", "get", "conveyor", "-n", conveyor.ns).stdout
    assert "pipeline.conveyor.dev/cols" in everything
    assert "pipelinerun.conveyor.dev/cols-1" in everything
    assert "cols-1" in clusters.kubectl("ci", "get", "plr", "-n", conveyor.ns).stdout


def test_concurrency_limit_holds_runs_pending_oldest_first(conveyor: Conveyor) -> None:
    conveyor.create(pipeline("serial", [job("a", **lasts("2s"))], concurrency=1))
    names = [f"serial-{i}" for i in range(3)]
    for name in names:
        conveyor.create(run(name, "serial"))
    conveyor.wait_run("serial-0", lambda r: phase(r) == "Running")
    for name in names[1:]:  # the operator says they wait (it may not have written that yet)
        conveyor.wait_run(name, lambda r: phase(r) == "Pending")
    done = [conveyor.wait_finished(n) for n in names]
    assert all(phase(r) == "Succeeded" for r in done)
    spans = [(r["status"]["startTime"], r["status"]["completionTime"]) for r in done]
    # One at a time, in creation order: each starts no earlier than the previous one ended.
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end


def test_history_keeps_the_newest_runs_and_gitops_ones(conveyor: Conveyor) -> None:
    conveyor.create(pipeline("hist", [job("a")], historyLimit=2, concurrency=1))
    gitops = run("hist-gitops", "hist")
    gitops["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "argocd"}
    conveyor.create(gitops)
    conveyor.wait_finished("hist-gitops")
    for i in range(4):
        conveyor.create(run(f"hist-{i}", "hist"))
    wait_until(
        lambda: (
            sorted(r["metadata"]["name"] for r in conveyor.runs())
            == ["hist-2", "hist-3", "hist-gitops"]
        ),
        timeout=60,
        what="only the two newest runs and the GitOps-managed one to remain",
    )


def test_events_record_job_starts_ends_and_the_run_end(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    conveyor.create(pipeline("ev", [job("a")]))
    conveyor.create(run("ev-1", "ev"))
    conveyor.wait_finished("ev-1")

    def reasons() -> set[str]:
        events = clusters.kubectl_json(
            "ci", "get", "events", "-n", conveyor.ns,
            "--field-selector", "involvedObject.name=ev-1,involvedObject.kind=PipelineRun",
        )["items"]  # fmt: skip
        return {e["reason"] for e in events}

    wait_until(
        lambda: {"JobStarted", "JobSucceeded", "RunSucceeded"} <= reasons(), what="the events"
    )


def test_cli_run_and_get_as_developer(conveyor: Conveyor, clusters: Clusters) -> None:
    clusters.kubectl(
        "ci", "create", "rolebinding", "dev-edit", "--clusterrole=edit", "--user=developer",
        "-n", conveyor.ns,
    )  # fmt: skip
    conveyor.create(pipeline("cli", [job("a")]))
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    proc = wait_until(
        lambda: (
            (
                p := conveyor_cli(
                    clusters,
                    "run",
                    "cli",
                    "--ref",
                    "main",
                    "--sha",
                    sha,
                    "--var",
                    "GREETING=hi",
                    "-n",
                    conveyor.ns,
                    context="ci-as-developer",
                )
            ).returncode
            == 0
            and p
        ),
        what="developer allowed to create runs",
    )
    name = proc.stdout.strip()
    assert name.startswith("cli-")
    created = conveyor.get_run(name)
    assert created["spec"]["variables"] == {"GREETING": "hi"}
    conveyor.wait_finished(name)
    listing = conveyor_cli(clusters, "get", "-n", conveyor.ns, context="ci-as-developer")
    assert name in listing.stdout and "Succeeded" in listing.stdout
    detail = conveyor_cli(clusters, "get", name, "-n", conveyor.ns, context="ci-as-developer")
    assert "JOB" in detail.stdout and "Succeeded" in detail.stdout
    bad = conveyor_cli(clusters, "run", "cli", "--ref", "main", "--sha", "abc", "-n", conveyor.ns)
    assert bad.returncode == 2 and "not a full commit SHA" in bad.stderr


def test_operator_acts_only_as_its_service_account(conveyor: Conveyor) -> None:
    began = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    conveyor.create(pipeline("who", [job("a")]))
    conveyor.create(run("who-1", "who"))
    conveyor.wait_finished("who-1")
    creates = audit_entries(
        lambda e: (
            e["verb"] == "create"
            and (e.get("objectRef") or {}).get("resource") == "jobs"
            and (e.get("objectRef") or {}).get("namespace") == conveyor.ns
        )
    )
    assert creates and {e["user"].get("username") for e in creates} == {OPERATOR_USER}
    # No RBAC refusal, ever. (Writes into a namespace being deleted by an earlier test are
    # refused with 403 too, by the namespace lifecycle: those are not about permissions.)
    # (Only this test's namespace and cluster-scoped requests: other tests refuse the operator's
    # identity on purpose, e.g. the admission tests. And only since this test began: an API
    # server that other tests restart answers 403 for a moment after its start, before its RBAC
    # caches have filled, which is not about the operator's permissions.)
    refused = audit_entries(
        lambda e: (
            e["requestReceivedTimestamp"] >= began.replace("+00:00", "Z")
            and e["user"].get("username") == OPERATOR_USER
            and (e.get("responseStatus") or {}).get("code") == 403
            and (e.get("objectRef") or {}).get("namespace") in (conveyor.ns, None)
            and "NamespaceTerminating" not in json.dumps(e["responseStatus"])
        )
    )
    assert refused == [], [(e["verb"], e["requestURI"]) for e in refused]


def test_a_docker_in_docker_job_runs_with_its_daemon_untrusted(conveyor: Conveyor) -> None:
    conveyor.create(
        pipeline(
            "dind",
            [
                job(
                    "build",
                    "build",
                    services=[{"name": "docker:27-dind", "alias": "docker"}],
                    secretVariables=[{"name": "TOKEN", "secretName": "registry", "key": "t"}],
                )
            ],
        )
    )
    conveyor.create(run("dind-1", "dind"))
    assert phase(conveyor.wait_finished("dind-1")) == "Succeeded"
    (built,) = conveyor.jobs("dind-1")
    pod = built.spec.template.spec
    (daemon,) = pod.init_containers
    # Held until the daemon answers; its certificates shared with the script; no secrets;
    # privileged, as the tests' operator runs with --privileged-services (the script is not).
    assert daemon.startup_probe._exec.command[:2] == ["/bin/sh", "-c"]
    assert daemon.security_context.privileged is True
    assert "TOKEN" not in {e.name for e in daemon.env}
    (script,) = pod.containers
    assert "TOKEN" in {e.name for e in script.env}
    assert any(m.mount_path == "/certs/client" and m.read_only for m in script.volume_mounts)
    assert pod.host_aliases[0].hostnames == ["docker"]


def test_a_build_job_records_the_digest_it_pushed(conveyor: Conveyor, tmp_path: Path) -> None:
    repo = new_repo(tmp_path, {"src/Dockerfile": "FROM scratch\n"})
    digest = "sha256:" + "5e" * 32
    build = {
        "name": "image",
        "stage": "build",
        "build": {"image": "reg.example/app:$CI_COMMIT_SHORT_SHA", "context": "src"},
        # The fake kubelet ends the pod with this termination message, as buildctl's would.
        "podAnnotations": {"kwok.conveyor.dev/message": digest},
    }
    conveyor.create(pipeline("img", [build, job("test")], source={"url": repo.url}))
    conveyor.create(run("img-1", "img"))
    done = conveyor.wait_finished("img-1")
    assert phase(done) == "Succeeded"
    assert job_status(done, "image")["imageDigest"] == digest
    assert "imageDigest" not in job_status(done, "test")
    (built,) = [
        j for j in conveyor.jobs("img-1") if j.metadata.annotations["conveyor.dev/job"] == "image"
    ]
    container = built.spec.template.spec.containers[0]
    assert container.image.startswith("moby/buildkit:") and container.image.endswith("-rootless")
    assert container.security_context.run_as_user == 1000
    assert container.security_context.seccomp_profile.type == "Unconfined"
    env = {e.name: e.value for e in container.env}
    assert env["CONVEYOR_BUILD_IMAGE"] == f"reg.example/app:{repo.head()[:8]}"


def test_a_scan_checks_exactly_the_image_the_run_built(conveyor: Conveyor, tmp_path: Path) -> None:
    repo = new_repo(tmp_path, {"Dockerfile": "FROM scratch\n"})
    digest = "sha256:" + "a7" * 32
    build = {
        "name": "image",
        "stage": "build",
        "build": {"image": "reg.example/app:1"},
        "podAnnotations": {"kwok.conveyor.dev/message": digest},
    }
    scan = {
        "name": "scan",
        "stage": "test",
        "scan": {"build": "image", "severities": ["CRITICAL", "HIGH"]},
        "allowFailure": True,
        # What the scan script reports when Trivy finds vulnerabilities: exit 1 and the counts.
        **fails(1, **{"kwok.conveyor.dev/message": "CRITICAL=1 HIGH=2"}),
    }
    conveyor.create(pipeline("scanned", [build, scan], source={"url": repo.url}))
    conveyor.create(run("scanned-1", "scanned"))
    done = conveyor.wait_finished("scanned-1")
    assert phase(done) == "Succeeded"
    assert succeeded_condition(done)["reason"] == "SucceededWithWarnings"
    entry = job_status(done, "scan")
    assert entry["findings"] == {"CRITICAL": 1, "HIGH": 2}
    assert (entry["phase"], entry["exitCode"], entry["allowedFailure"]) == ("Failed", 1, True)
    (scan_job,) = [
        j
        for j in conveyor.jobs("scanned-1")
        if j.metadata.annotations["conveyor.dev/job"] == "scan"
    ]
    env = {e.name: e.value for e in scan_job.spec.template.spec.containers[0].env}
    assert env["CONVEYOR_SCAN_IMAGE"] == f"reg.example/app:1@{digest}"


def test_a_delayed_job_waits_its_time_or_until_played(
    conveyor: Conveyor, clusters: Clusters
) -> None:
    canary = job("canary", "deploy", when="delayed", startIn="4s")
    conveyor.create(pipeline("later", [job("build", "build"), canary], stages=["build", "deploy"]))
    conveyor.create(run("later-1", "later"))
    waiting = conveyor.wait_run(
        "later-1", lambda r: succeeded_condition(r).get("reason") == "Delayed"
    )
    scheduled = job_status(waiting, "canary")["scheduledAt"]
    assert "conveyor play later-1 canary" in succeeded_condition(waiting)["message"]
    done = conveyor.wait_finished("later-1")
    assert phase(done) == "Succeeded"
    assert job_status(done, "canary")["startTime"] >= scheduled

    # An hour's delay, played: it starts now.
    slow = job("canary", "deploy", when="delayed", startIn="1h")
    conveyor.create(
        pipeline("much-later", [job("build", "build"), slow], stages=["build", "deploy"])
    )
    conveyor.create(run("later-2", "much-later"))
    conveyor.wait_run("later-2", lambda r: succeeded_condition(r).get("reason") == "Delayed")
    played = conveyor_cli(clusters, "play", "later-2", "canary", "-n", conveyor.ns)
    assert played.returncode == 0, played.stderr
    assert phase(conveyor.wait_finished("later-2")) == "Succeeded"


def test_a_newer_run_of_the_ref_auto_cancels_an_older_interruptible_one(
    conveyor: Conveyor,
) -> None:
    jobs = [
        job("unit", "test", interruptible=True, **lasts("20s")),
        job("ship", "deploy", **lasts("20s")),  # not interruptible
    ]
    conveyor.create(pipeline("ac", jobs, autoCancel="conservative"))
    conveyor.create(run("ac-1", "ac", ref="main"))
    conveyor.wait_run("ac-1", lambda r: running(r, "unit"))
    conveyor.create(run("ac-2", "ac", ref="main"))
    first = conveyor.wait_finished("ac-1", timeout=60)
    assert (phase(first), succeeded_condition(first)["reason"]) == ("Cancelled", "Superseded")
    assert "auto-cancelled: run ac-2 of ref main is newer" in succeeded_condition(first)["message"]
    assert job_status(first, "unit")["phase"] == "Cancelled"
    # Another ref is not redundant; a run whose non-interruptible job started is kept.
    conveyor.create(run("ac-dev", "ac", ref="dev"))
    conveyor.wait_run("ac-2", lambda r: running(r, "ship"), timeout=60)
    conveyor.create(run("ac-3", "ac", ref="main"))
    assert phase(conveyor.wait_finished("ac-2", timeout=90)) == "Succeeded"
    assert phase(conveyor.wait_finished("ac-dev", timeout=90)) == "Succeeded"


def running(run_obj: dict, name: str) -> bool:
    jobs = (run_obj.get("status") or {}).get("jobs") or []
    return any(j["name"] == name and j["phase"] == "Running" for j in jobs)
