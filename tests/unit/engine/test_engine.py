"""The planner's GitLab semantics, exercised through a tiny in-memory world.

`World` is not a Kubernetes mock: it only holds the planner's own inputs (observed Jobs, the
run's status) and applies a Plan the way the handlers will (create -> an active Job exists,
delete -> it is gone, status -> written back).
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from conveyor.api import PipelineRun, parse_pipeline_spec, to_dict
from conveyor.api.evaluation import Evaluation, JobEvaluation
from conveyor.api.pipelinerun import JobStatus, dump_run_status
from conveyor.engine import (
    ObservedJob,
    RunSummary,
    invalid_pipeline_status,
    missing_pipeline_status,
    plan,
    redundant,
)
from conveyor.engine.evaluation import effective_job
from conveyor.engine.validate import validate_pipeline

T0 = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)


def pipeline(*jobs, **spec):
    return parse_pipeline_spec({"jobs": list(jobs), **spec})


def job(name, stage="test", **fields):
    return {"name": name, "stage": stage, "script": [f"echo {name}"], **fields}


class World:
    def __init__(self, spec, run_spec=None, name="run-1"):
        self.spec = spec
        self.run_spec = {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}}
        self.run_spec.update(run_spec or {})
        self.name = name
        self.status = {}
        self.jobs: dict[str, ObservedJob] = {}
        self.now = T0
        self.created: list[str] = []
        self.events = []

    def run(self):
        return PipelineRun.from_dict(
            {
                "metadata": {"name": self.name, "uid": "uid-1", "generation": 1},
                "spec": self.run_spec,
                "status": self.status,
            }
        )

    def plan(self, may_start=True):
        return plan(self.spec, self.run(), list(self.jobs.values()), self.now, may_start=may_start)

    def step(self, may_start=True, seconds=1):
        self.now += datetime.timedelta(seconds=seconds)
        result = self.plan(may_start)
        for c in result.create:
            self.created.append(c.job_name)
            self.jobs.setdefault(
                c.job_name,
                ObservedJob(c.job_name, c.pipeline_job, c.attempt, "active", start_time=self.now),
            )
        for name in result.delete:
            self.jobs.pop(name, None)
        for name in result.stop:
            # A stopped Job stays; its pod ends past its deadline and the Job fails.
            if name in self.jobs:
                self.jobs[name] = dataclasses.replace(self.jobs[name], state="failed")
        self.status = dump_run_status(result.status)  # written back, as the operator does
        self.events += result.events
        return result

    def finish(self, pipeline_job, state="succeeded", exit_code=None, reason=None):
        matches = [o for o in self.jobs.values() if o.pipeline_job == pipeline_job]
        latest = max(matches, key=lambda o: o.attempt)
        if exit_code is None:
            exit_code = 0 if state == "succeeded" else 1
        self.jobs[latest.job_name] = dataclasses.replace(
            latest, state=state, exit_code=exit_code, reason=reason, completion_time=self.now
        )

    def phases(self):
        return {j["name"]: j["phase"] for j in self.status["jobs"]}

    def condition(self):
        return next(c for c in self.status["conditions"] if c["type"] == "Succeeded")

    def settle(self, outcomes=None, limit=50):
        """Step, finishing every active Job (succeeded unless `outcomes` says otherwise)."""
        outcomes = outcomes or {}
        for _ in range(limit):
            self.step()
            if self.status["phase"] not in ("Pending", "Running"):
                return
            active = {o.pipeline_job for o in self.jobs.values() if o.state == "active"}
            if not active and not self.plan().create:
                return
            for name in active:
                self.finish(name, *outcomes.get(name, ("succeeded",)))
        raise AssertionError("did not settle")


def active_jobs(world):
    return sorted(o.pipeline_job for o in world.jobs.values() if o.state == "active")


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jobs", "stages", "expected"),
    [
        ([job("a", stage="lint")], None, "stage 'lint' is not listed in stages"),
        ([job("a", needs=["ghost"])], None, "needs job 'ghost', but 'ghost' does not exist"),
        ([job("a", stage="build", needs=["b"]), job("b", stage="test")], None, "later stage"),
        ([job("a", needs=["b"]), job("b", needs=["a"])], None, "cycle: a -> b -> a"),
    ],
)
def test_invalid_pipelines_fail_without_jobs(jobs, stages, expected):
    spec = pipeline(*jobs, **({"stages": stages} if stages else {}))
    world = World(spec)
    result = world.step()
    assert result.create == []
    assert world.status["phase"] == "Failed"
    cond = world.condition()
    assert (cond["status"], cond["reason"]) == ("False", "InvalidPipeline")
    assert expected in cond["message"]


def test_empty_pipeline_is_invalid():
    spec = dataclasses.replace(pipeline(job("a")), jobs=())
    world = World(spec)
    world.step()
    assert world.condition()["reason"] == "InvalidPipeline"
    assert "no jobs" in world.condition()["message"]


# --- ordering -----------------------------------------------------------------------------


def test_stages_run_in_order_and_the_run_succeeds():
    world = World(
        pipeline(job("compile", "build"), job("unit"), job("lint"), job("ship", "deploy"))
    )
    world.step()
    assert active_jobs(world) == ["compile"]
    assert world.status["phase"] == "Running"
    assert world.status["currentStage"] == "build"
    assert world.condition()["status"] == "Unknown"
    world.finish("compile")
    world.step()
    assert active_jobs(world) == ["lint", "unit"]
    assert world.status["currentStage"] == "test"
    world.finish("unit")
    world.step()
    assert active_jobs(world) == ["lint"]
    world.finish("lint")
    world.step()
    assert active_jobs(world) == ["ship"]
    world.finish("ship")
    world.step(seconds=83)
    assert world.status["phase"] == "Succeeded"
    assert world.condition()["status"] == "True"
    assert world.condition()["reason"] == "Succeeded"
    assert world.status["duration"] == "1m26s"  # first Job planned at T0+1s
    assert "currentStage" not in world.status
    assert ("Normal", "RunSucceeded") in [(e.type, e.reason) for e in world.events]


def test_needs_make_a_dag():
    world = World(
        pipeline(
            job("compile", "build"),
            job("slow", "build"),
            job("unit", needs=["compile"]),
            job("docs", "deploy", needs=[]),
        )
    )
    world.step()
    assert active_jobs(world) == ["compile", "docs", "slow"]
    world.finish("compile")
    world.step()
    assert "unit" in active_jobs(world)  # does not wait for "slow"


# --- when / failures ----------------------------------------------------------------------


def test_failure_skips_later_on_success_and_runs_on_failure_and_always():
    world = World(
        pipeline(
            job("compile", "build"),
            job("vet", "build"),
            job("unit"),
            job("notify", when="on_failure"),
            job("cleanup", "deploy", when="always"),
            job("ship", "deploy"),
        )
    )
    world.settle({"compile": ("failed", 2)})
    phases = world.phases()
    assert phases["vet"] == "Succeeded"  # the rest of the stage still ran
    assert phases["unit"] == "Skipped"
    assert phases["ship"] == "Skipped"
    assert phases["notify"] == "Succeeded"
    assert phases["cleanup"] == "Succeeded"
    assert world.status["phase"] == "Failed"
    cond = world.condition()
    assert (cond["status"], cond["reason"]) == ("False", "Failed")
    assert "compile" in cond["message"]
    failed = next(j for j in world.status["jobs"] if j["name"] == "compile")
    assert (failed["exitCode"], failed["reason"]) == (2, "ScriptFailure")


def test_on_failure_jobs_are_skipped_when_nothing_failed():
    world = World(pipeline(job("a"), job("b", "deploy", when="on_failure")))
    world.settle()
    assert world.phases()["b"] == "Skipped"
    assert world.status["phase"] == "Succeeded"


def test_when_never_and_all_skipped():
    world = World(pipeline(job("a", when="never")))
    world.step()
    assert world.phases() == {"a": "Skipped"}
    assert world.status["phase"] == "Skipped"


def test_allowed_failure_gives_warnings():
    world = World(pipeline(job("flaky", allowFailure=True), job("ship", "deploy")))
    world.settle({"flaky": ("failed",)})
    assert world.phases()["ship"] == "Succeeded"
    flaky = next(j for j in world.status["jobs"] if j["name"] == "flaky")
    assert flaky["allowedFailure"] is True
    assert world.status["phase"] == "Succeeded"
    assert world.condition()["reason"] == "SucceededWithWarnings"


def test_allow_failure_exit_codes():
    spec = pipeline(job("a", allowFailureExitCodes=[3]), job("b", allowFailureExitCodes=[3]))
    world = World(spec)
    world.settle({"a": ("failed", 3), "b": ("failed", 4)})
    assert world.status["phase"] == "Failed"
    assert "'b'" in world.condition()["message"] and "'a'" not in world.condition()["message"]


# --- manual -------------------------------------------------------------------------------


def test_optional_manual_job_does_not_block():
    world = World(pipeline(job("deploy", "deploy", when="manual"), job("unit")))
    world.settle()
    assert world.phases()["deploy"] == "Manual"
    assert world.status["phase"] == "Succeeded"


def test_blocking_manual_job_holds_later_stages_until_played():
    spec = pipeline(
        job("approve", "build", when="manual", allowFailure=False), job("ship", "deploy")
    )
    world = World(spec)
    world.step()
    assert world.phases() == {"approve": "Manual", "ship": "Pending"}
    assert world.status["phase"] == "Running"
    cond = world.condition()
    assert (cond["status"], cond["reason"]) == ("Unknown", "ManualActionRequired")
    assert "conveyor play run-1 approve" in cond["message"]
    world.step()
    assert world.jobs == {}
    world.run_spec["play"] = ["approve"]
    world.step()
    assert active_jobs(world) == ["approve"]
    world.finish("approve")
    world.step()
    assert active_jobs(world) == ["ship"]


def test_a_manual_job_tolerating_exit_codes_blocks_like_gitlab():
    # docs.gitlab.com/ci/jobs/job_control/#types-of-manual-jobs: only allow_failure: true makes
    # a manual job optional; allow_failure: {exit_codes: [...]} leaves it blocking.
    spec = pipeline(job("approve", "build", when="manual", allowFailureExitCodes=[3]), job("ship"))
    world = World(spec)
    world.step()
    assert world.phases() == {"approve": "Manual", "ship": "Pending"}
    assert world.condition()["reason"] == "ManualActionRequired"
    world.run_spec["play"] = ["approve"]
    world.step()
    world.finish("approve", "failed", 3)  # a tolerated failure lets the pipeline go on
    world.step()
    assert active_jobs(world) == ["ship"]


def test_needs_on_unplayed_optional_manual_job_waits():
    world = World(pipeline(job("gate", "build", when="manual"), job("after", needs=["gate"])))
    world.step()
    assert world.phases() == {"gate": "Manual", "after": "Pending"}
    assert world.condition()["reason"] == "ManualActionRequired"


def test_manual_job_after_failure_is_skipped():
    world = World(pipeline(job("a", "build"), job("deploy", "deploy", when="manual")))
    world.settle({"a": ("failed",)})
    assert world.phases()["deploy"] == "Skipped"


# --- retry and timeouts -------------------------------------------------------------------


def test_retry_creates_new_attempts_then_gives_up():
    world = World(pipeline(job("a", retry={"max": 2})))
    world.step()
    first = world.created[-1]
    world.finish("a", "failed")
    result = world.step()
    assert [(c.pipeline_job, c.attempt) for c in result.create] == [("a", 2)]
    assert result.create[0].job_name != first
    assert world.status["jobs"][0]["attempt"] == 2
    assert any(e.reason == "JobRetrying" for e in result.events)
    world.finish("a", "failed")
    world.step()
    world.finish("a", "failed")
    result = world.step()
    assert result.create == []
    assert world.status["jobs"][0]["attempt"] == 3
    assert world.status["phase"] == "Failed"


def test_retry_when_filters_failure_kinds():
    world = World(pipeline(job("a", retry={"max": 2, "when": ["script_failure"]}, timeout="10m")))
    world.step()
    world.finish("a", "failed", exit_code=None, reason="DeadlineExceeded")
    result = world.step()
    assert result.create == []
    entry = world.status["jobs"][0]
    assert (entry["phase"], entry["reason"]) == ("Failed", "Timeout")


def test_retry_exit_codes():
    world = World(pipeline(job("a", retry={"max": 1, "exitCodes": [137]})))
    world.step()
    world.finish("a", "failed", exit_code=1)
    assert world.step().create == []

    world = World(pipeline(job("a", retry={"max": 1, "exitCodes": [137]})))
    world.step()
    world.finish("a", "failed", exit_code=137)
    assert [c.attempt for c in world.step().create] == [2]


def test_run_timeout_stops_active_jobs():
    world = World(pipeline(job("a"), timeout="10m"))
    world.step()
    assert active_jobs(world) == ["a"]
    result = world.step(seconds=600)
    assert result.stop == [world.created[0]] and result.delete == []
    assert world.status["phase"] == "Failed"
    assert world.condition()["reason"] == "Timeout"
    assert world.phases() == {"a": "Cancelled"}


# --- cancel -------------------------------------------------------------------------------


def test_cancel_stops_active_jobs_keeping_them_and_freezes_the_run():
    world = World(pipeline(job("a", "build"), job("b", "build"), job("c")))
    world.step()
    world.finish("a")
    world.run_spec["status"] = "Cancelled"
    result = world.step()
    assert result.create == []
    # Stopped, not deleted: the Job and its pod's log stay until the run goes.
    assert result.stop == [j for j in world.created if "-b-" in j] and result.delete == []
    assert world.phases() == {"a": "Succeeded", "b": "Cancelled", "c": "Cancelled"}
    assert world.status["phase"] == "Cancelled"
    assert world.condition()["reason"] == "Cancelled"
    frozen = dict(world.status)
    world.run_spec.pop("status")
    world.step(seconds=100)
    assert world.status == frozen


# --- level-triggered properties -------------------------------------------------------------


def test_planning_is_idempotent_and_converges():
    world = World(pipeline(job("a", "build"), job("b", "build"), job("c")))
    first, again = world.plan(), world.plan()
    assert first == again
    world.step()
    # The plan was applied: planning again creates nothing new.
    assert world.plan().create == []
    before = len(world.created)
    world.step()
    world.step()
    assert len(world.created) == before


def test_planned_but_unobserved_jobs_are_requested_again_with_the_same_name():
    world = World(pipeline(job("a")))
    first = world.plan()
    world.status = dump_run_status(first.status)  # status written, the Job create lost
    again = world.plan()
    assert [c.job_name for c in again.create] == [c.job_name for c in first.create]


def test_records_survive_garbage_collected_jobs():
    world = World(pipeline(job("a", "build"), job("b")))
    world.step()
    world.finish("a")
    world.step()
    world.jobs = {k: v for k, v in world.jobs.items() if v.pipeline_job != "a"}  # Job deleted
    world.step()
    assert world.phases()["a"] == "Succeeded"
    assert active_jobs(world) == ["b"]


def test_vanished_running_job_fails_as_deleted():
    world = World(pipeline(job("a")))
    world.step()
    world.step()
    world.jobs.clear()
    world.step()
    entry = world.status["jobs"][0]
    assert (entry["phase"], entry["reason"]) == ("Failed", "JobDeleted")


def test_concurrency_wait_keeps_run_pending():
    world = World(pipeline(job("a")))
    result = world.step(may_start=False)
    assert result.create == []
    assert world.status["phase"] == "Pending"
    assert world.condition()["reason"] == "WaitingForConcurrency"
    assert "startTime" not in world.status
    world.step(may_start=True)
    assert world.status["phase"] == "Running"
    assert world.status["startTime"]


def test_status_basics_and_events():
    world = World(pipeline(job("a")))
    world.run_spec["revision"] = {"ref": "main", "sha": "a" * 40}
    world.step()
    world.step()
    assert world.status["shortSha"] == "aaaaaaaa"
    assert world.status["pipelineName"] == "app"
    assert world.status["observedGeneration"] == 1
    world.finish("a")
    world.step()
    reasons = [e.reason for e in world.events]
    assert reasons == ["JobStarted", "JobSucceeded", "RunSucceeded"]
    assert all(isinstance(e, tuple) and len(e) == 3 for e in world.events)


def test_condition_transition_time_kept_while_status_unchanged():
    world = World(pipeline(job("a", "build"), job("b")))
    world.step()
    stamp = world.condition()["lastTransitionTime"]
    world.finish("a")
    world.step(seconds=30)
    assert world.condition()["lastTransitionTime"] == stamp


def test_missing_pipeline_waits_then_fails_if_started():
    world = World(pipeline(job("a")))
    status = missing_pipeline_status(world.run(), T0)
    assert status.phase == "Pending"
    cond = status.conditions[0]
    assert (cond.status, cond.reason) == ("Unknown", "PipelineNotFound")
    world.step()
    status = missing_pipeline_status(world.run(), T0)
    assert status.phase == "Failed"
    assert status.conditions[0].reason == "PipelineNotFound"


def test_large_pipeline_plans_quickly_and_status_is_small():
    import json

    jobs = [job(f"job-{i:03}", ("build", "test", "deploy")[i % 3]) for i in range(200)]
    world = World(pipeline(*jobs))
    world.settle()
    assert world.status["phase"] == "Succeeded"
    assert len(json.dumps(world.status)) < 48 * 1024
    assert to_dict(world.run().status)["phase"] == "Succeeded"


def test_unparseable_pipeline_status():
    world = World(pipeline(job("a")))
    status = invalid_pipeline_status(world.run(), T0, "spec.jobs: at least 1 item(s) required")
    assert status.phase == "Failed"
    cond = status.conditions[0]
    assert (cond.status, cond.reason) == ("False", "InvalidPipeline")
    assert "spec.jobs" in cond.message
    assert dump_run_status(status)["completionTime"] == "2025-01-01T12:00:00Z"


def test_a_failure_says_in_its_own_words_what_went_wrong():
    world = World(pipeline(job("deploy")))
    world.step()
    (observed,) = world.jobs.values()
    world.jobs[observed.job_name] = dataclasses.replace(
        observed,
        state="failed",
        reason="DeployFailed",
        message="kind ServiceMonitor is not served by the target cluster",
        completion_time=world.now,
    )
    world.step()
    (entry,) = world.status["jobs"]
    assert entry["message"] == "kind ServiceMonitor is not served by the target cluster"
    assert world.condition()["message"] == (
        "job 'deploy' failed: kind ServiceMonitor is not served by the target cluster"
    )
    # Later passes, from the status alone (the Job gone), keep it.
    world.jobs.clear()
    world.step()
    assert world.status["jobs"][0]["message"] == entry["message"]


# --- build jobs ----------------------------------------------------------------------------


DIGEST = "sha256:" + "ab" * 32


def build_job(name, stage="build"):
    return {"name": name, "stage": stage, "build": {"image": "reg.example/app:1"}}


def test_a_build_records_the_digest_it_pushed_and_keeps_it():
    world = World(pipeline(build_job("image"), job("lint", "build"), job("after")))
    world.step()
    for name in ("image", "lint"):
        world.finish(name)
        latest = next(j for j in world.jobs.values() if j.pipeline_job == name)
        world.jobs[latest.job_name] = dataclasses.replace(latest, message=DIGEST)
    world.step()
    entries = {j["name"]: j for j in world.status["jobs"]}
    assert entries["image"]["imageDigest"] == DIGEST
    assert "imageDigest" not in entries["lint"]  # only a build job's message is a digest
    # The Jobs go (garbage collection): the status keeps what they said.
    world.jobs = {k: v for k, v in world.jobs.items() if v.pipeline_job == "after"}
    world.step()
    assert {j["name"]: j for j in world.status["jobs"]}["image"]["imageDigest"] == DIGEST


def test_a_build_whose_message_is_no_digest_records_none():
    world = World(pipeline(build_job("image")))
    world.step()
    world.finish("image")
    latest = next(iter(world.jobs.values()))
    world.jobs[latest.job_name] = dataclasses.replace(latest, message="sha256:short")
    world.step()
    assert "imageDigest" not in world.status["jobs"][0]


def test_a_scan_records_its_findings_whether_it_passes_or_fails():
    scan = {"name": "scan", "stage": "test", "scan": {"build": "image"}, "allowFailure": True}
    world = World(pipeline(build_job("image"), scan))
    world.settle()
    world = World(pipeline(build_job("image"), scan))
    world.step()
    world.finish("image")
    world.step()
    world.finish("scan", "failed", exit_code=1)
    latest = next(j for j in world.jobs.values() if j.pipeline_job == "scan")
    world.jobs[latest.job_name] = dataclasses.replace(latest, message="CRITICAL=1 HIGH=2")
    world.step()
    entry = {j["name"]: j for j in world.status["jobs"]}["scan"]
    assert entry["findings"] == {"CRITICAL": 1, "HIGH": 2}
    assert entry["message"] == "CRITICAL=1 HIGH=2" and entry["allowedFailure"] is True
    assert world.condition()["reason"] == "SucceededWithWarnings"


def test_a_clean_scan_records_no_findings():
    world = World(pipeline(build_job("image"), {"name": "scan", "scan": {"image": "x"}}))
    world.step()
    world.finish("image")
    world.step()
    world.finish("scan")
    latest = next(j for j in world.jobs.values() if j.pipeline_job == "scan")
    world.jobs[latest.job_name] = dataclasses.replace(latest, message="none")
    world.step()
    assert {j["name"]: j for j in world.status["jobs"]}["scan"]["findings"] == {}


@pytest.mark.parametrize(
    ("scan_of", "stage", "words"),
    [
        ("ghost", "test", "scans the image of job 'ghost', which is not a build job"),
        ("lint", "test", "scans the image of job 'lint', which is not a build job"),
        ("image", "build", "which does not run before it"),
    ],
)
def test_a_scan_of_a_build_needs_a_build_before_it(scan_of, stage, words):
    spec = pipeline(
        build_job("image"), job("lint", "build"),
        {"name": "scan", "stage": stage, "scan": {"build": scan_of}},
    )  # fmt: skip
    (problem,) = validate_pipeline(spec)
    assert words in problem
    in_needs = pipeline(
        build_job("image"), {"name": "scan", "stage": "build", "scan": {"build": "image"},
                             "needs": ["image"]},
    )  # fmt: skip
    assert validate_pipeline(in_needs) == []


# --- delayed jobs --------------------------------------------------------------------------


def delayed(name="canary", stage="deploy", start_in="10m", **fields):
    return job(name, stage, when="delayed", startIn=start_in, **fields)


def test_a_delayed_job_starts_its_delay_after_it_could_have_started():
    world = World(pipeline(job("build", "build"), delayed(), stages=["build", "deploy"]))
    world.step()
    world.finish("build")
    ready_at = world.now + datetime.timedelta(seconds=1)
    result = world.step()
    entry = {j["name"]: j for j in world.status["jobs"]}["canary"]
    assert (entry["phase"], entry["reason"]) == ("Pending", "Delayed")
    due = ready_at + datetime.timedelta(minutes=10)
    assert entry["scheduledAt"] == due.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result.create == [] and result.wake_at == due
    assert world.condition()["reason"] == "Delayed"
    assert "conveyor play run-1 canary" in world.condition()["message"]
    # Later passes keep the time; at it, the job starts.
    world.step(seconds=300)
    assert world.plan().create == []
    world.step(seconds=300)
    assert active_jobs(world) == ["canary"]
    assert "scheduledAt" not in {j["name"]: j for j in world.status["jobs"]}["canary"]


def test_playing_a_delayed_job_starts_it_now():
    world = World(pipeline(delayed(stage="test")), run_spec={"play": ["canary"]})
    world.step()
    assert active_jobs(world) == ["canary"]


def test_a_delayed_job_after_a_failure_is_skipped():
    world = World(pipeline(job("build", "build"), delayed(), stages=["build", "deploy"]))
    world.settle({"build": ("failed",)})
    assert world.phases()["canary"] == "Skipped"
    assert world.status["phase"] == "Failed"


def test_a_delay_needs_its_start_in_and_the_other_way_round():
    with pytest.raises(Exception, match="startIn: required with when: delayed"):
        pipeline(job("a", when="delayed"))
    with pytest.raises(Exception, match="startIn: required with when: delayed"):
        pipeline(job("a", startIn="5m"))
    with pytest.raises(Exception, match="at most a week"):
        pipeline(delayed(start_in="169h"))


def test_a_rule_that_makes_a_delayed_job_manual_drops_the_delay():
    spec = pipeline(delayed(stage="test"))
    evaluation = Evaluation(jobs=(JobEvaluation(name="canary", when="manual"),))
    job = effective_job(spec.jobs[0], evaluation)
    assert (job.when, job.start_in) == ("manual", None)
    world = World(spec)
    world.plan = lambda may_start=True: plan(  # the run as the operator plans it
        world.spec, world.run(), list(world.jobs.values()), world.now, evaluation=evaluation
    )
    world.step()
    assert world.phases()["canary"] == "Manual"


# --- auto-cancel of redundant runs ---------------------------------------------------------


def summary(name, minute, ref="main", phase="Running"):
    return RunSummary(name, T0 + datetime.timedelta(minutes=minute), phase, ref=ref)


def test_a_newer_run_of_the_ref_makes_an_older_one_redundant():
    old, new = summary("r1", 0), summary("r2", 1)
    assert redundant(old, [old, new], [], set()) == "auto-cancelled: run r2 of ref main is newer"
    # Not the other way round, nor across refs, nor once finished.
    assert redundant(new, [old, new], [], set()) is None
    assert redundant(old, [old, summary("r3", 2, ref="dev")], [], set()) is None
    done = summary("r1", 0, phase="Succeeded")
    assert redundant(done, [done, new], [], set()) is None


def test_a_started_job_that_is_not_interruptible_keeps_the_run():
    old, new = summary("r1", 0), summary("r2", 1)
    running = [JobStatus("build", "build", "Running", attempt=1)]
    assert redundant(old, [old, new], running, set()) is None
    assert redundant(old, [old, new], running, {"build"}) is not None
    waiting = [JobStatus("deploy", "deploy", "Pending")]  # not started: no attempt
    assert redundant(old, [old, new], waiting, set()) is not None


# --- retry on request (conveyor retry: spec.retry) ----------------------------------------


def _failed_world():
    world = World(pipeline(job("a", "build"), job("b"), job("c", "build")))
    world.settle({"a": ("failed",)})
    assert world.status["phase"] == "Failed"
    assert world.phases() == {"a": "Failed", "b": "Skipped", "c": "Succeeded"}
    return world


def test_a_retried_job_runs_again_in_the_same_run_and_the_run_with_it():
    world = _failed_world()
    world.run_spec["retry"] = [{"job": "a", "attempt": 1}]
    result = world.step()
    assert [(c.pipeline_job, c.attempt) for c in result.create] == [("a", 2)]
    assert world.status["phase"] == "Running" and world.status.get("completionTime") is None
    assert world.phases() == {"a": "Pending", "b": "Pending", "c": "Succeeded"}
    reasons = [e.reason for e in result.events]
    assert reasons[0] == "RunRetried" and "JobRetried" in reasons
    world.settle()
    assert world.status["phase"] == "Succeeded"
    assert world.phases() == {"a": "Succeeded", "b": "Succeeded", "c": "Succeeded"}
    # What succeeded before was kept: c ran once.
    assert sum("-c-" in j for j in world.created) == 1


def test_a_retry_is_planned_once_however_often_the_pass_runs():
    world = _failed_world()
    world.run_spec["retry"] = [{"job": "a", "attempt": 1}]
    assert world.plan() == world.plan()
    world.step()
    assert [c.attempt for c in world.step().create] == []  # attempt 2 exists: nothing more
    world.finish("a", "failed")
    world.step()
    world.step()
    assert world.status["phase"] == "Failed"  # the request named attempt 1, not attempt 2


def test_a_stale_or_gated_retry_leaves_a_finished_run_as_it_is():
    world = _failed_world()
    frozen = dict(world.status)
    world.run_spec["retry"] = [{"job": "a", "attempt": 7}, {"job": "c", "attempt": 1}]
    world.step()
    assert world.status == frozen
    # A gated job is never retried: its new attempt would deploy on the old Approval.
    world.run_spec["retry"] = [{"job": "a", "attempt": 1}]
    gated = plan(
        world.spec, world.run(), list(world.jobs.values()), world.now, gated=frozenset({"a"})
    )
    assert gated.create == [] and dump_run_status(gated.status) == frozen


def test_a_cancelled_run_is_never_retried():
    world = World(pipeline(job("a"), job("b")))
    world.step()
    world.finish("a", "failed")
    world.run_spec["status"] = "Cancelled"
    world.step()
    world.run_spec["retry"] = [{"job": "a", "attempt": 1}]
    frozen = dict(world.status)
    assert world.step().create == [] and world.status == frozen


def test_the_cancel_names_who_cancelled():
    world = World(pipeline(job("a")))
    world.step()
    world.run_spec["status"] = "Cancelled"
    run = world.run()
    run = dataclasses.replace(
        run,
        metadata=dataclasses.replace(
            run.metadata, annotations={"conveyor.dev/cancelled-by": "alice"}
        ),
    )
    result = plan(world.spec, run, list(world.jobs.values()), world.now)
    (event,) = [e for e in result.events if e.reason == "RunCancelled"]
    assert event.message == "Cancelled: the run was cancelled by alice"


def test_every_problem_of_a_pipeline_is_named_at_once():
    from conveyor.reconcile.pipelines import pipeline_status

    body = {
        "metadata": {"name": "app", "generation": 3},
        "spec": {
            "jobs": [
                job("a", needs=["b"]),
                job("b", needs=["a"]),
                job("c", needs=["nope"]),
            ]
        },
    }
    status = pipeline_status(body, T0)
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidPipeline")
    assert "'nope' does not exist" in ready["message"]
    assert "needs form a cycle: a -> b -> a" in ready["message"]
