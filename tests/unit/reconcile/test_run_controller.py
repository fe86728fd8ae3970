"""RunController in process: its passes against a fake of the few Kube calls it makes, the fake
also playing the watch (the views are rebuilt from what the fake holds after every write, as
Kopf's indices would be). The decisions of a pass (approvals, retries, supersession) are
covered here without a cluster; the e2e suite covers the wiring to a real API server."""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from conveyor.engine.deploy_order import claim_entries
from conveyor.kube.jobspec import LABEL_RUN, JobOptions
from conveyor.kube.observe import compact_job
from conveyor.reconcile.runs import RunController
from conveyor.reconcile.sources import Sources
from conveyor.reconcile.views import Views, run_summary

NS = "team"
KEY = (NS, "r")
SHA = "a" * 40
T0 = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.UTC)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


class FakeKube:
    """The objects the operator reads and writes, in memory, and the calls it made."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.approvals: dict[tuple[str, str], dict[str, Any]] = {}
        self.environments: dict[tuple[str, str], dict[str, Any]] = {}
        self.pipelines: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}  # Job name -> its pods
        self.events: list[dict[str, Any]] = []
        self.deleted_jobs: list[str] = []
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        return body

    # -- the calls RunController makes
    def patch_run_status(
        self, namespace: str, name: str, patch: dict[str, Any], version: str | None = None
    ) -> dict:
        body = self.runs[(namespace, name)]
        if version is not None and version != body["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        body["status"] = apply_merge_patch(body.get("status") or {}, patch)
        return copy.deepcopy(self._stamp(body))

    def create_job(self, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(job)
        body["metadata"].update(uid=f"job-{next(self._uids)}", namespace=namespace)
        body["metadata"].setdefault("creationTimestamp", "2026-11-30T10:00:00Z")
        body["status"] = {"active": 1, "startTime": "2026-11-30T10:00:01Z"}
        self.jobs[(namespace, body["metadata"]["name"])] = self._stamp(body)
        return body

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted_jobs.append(name)
        self.jobs.pop((namespace, name), None)

    def stop_job(self, namespace: str, name: str) -> None:
        self.delete_job(namespace, name)

    def list_job_pods(self, namespace: str, job: str, uid: str | None) -> list[dict]:
        return copy.deepcopy(self.pods.get(job, []))

    def delete_run(self, namespace: str, name: str) -> None:
        self.runs.pop((namespace, name), None)

    def create_approval(self, namespace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        key = (namespace, body["metadata"]["name"])
        if key in self.approvals:
            return None
        stored = copy.deepcopy(body)
        stored["metadata"].update(namespace=namespace, uid=f"approval-{next(self._uids)}")
        self.approvals[key] = self._stamp(stored)
        return stored

    def patch_approval_status(self, namespace: str, name: str, patch: dict) -> dict:
        body = self.approvals[(namespace, name)]
        body["status"] = apply_merge_patch(body.get("status") or {}, patch)
        return copy.deepcopy(self._stamp(body))

    def delete_approval(self, namespace: str, name: str) -> None:
        self.approvals.pop((namespace, name), None)

    def create_event(self, namespace: str, body: dict[str, Any]) -> None:
        self.events.append(body)

    # -- what the test does to the cluster
    def jobs_of(self, pipeline_job: str, run: str = "r") -> list[dict[str, Any]]:
        return [
            j
            for j in self.jobs.values()
            if j["metadata"]["annotations"].get("conveyor.dev/job") == pipeline_job
            and j["metadata"]["labels"][LABEL_RUN] == run
        ]

    def job_of(self, pipeline_job: str, run: str = "r") -> dict[str, Any]:
        found = self.jobs_of(pipeline_job, run)
        assert len(found) == 1, (pipeline_job, list(self.jobs))
        return found[-1]

    def fail(self, pipeline_job: str, exit_code: int, run: str = "r") -> None:
        """The newest attempt's script exits with `exit_code`, as its pod tells."""
        job = max(self.jobs_of(pipeline_job, run), key=lambda j: j["metadata"]["name"])
        name = job["metadata"]["name"]
        job["status"] = {
            "failed": 1,
            "startTime": "2026-11-30T10:00:01Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        }
        self._stamp(job)
        terminated = {"exitCode": exit_code, "reason": "Error"}
        self.pods[name] = [
            {
                "metadata": {"name": f"{name}-pod", "labels": {"job-name": name}},
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [{"name": "script", "state": {"terminated": terminated}}],
                },
            }
        ]

    def succeed(self, pipeline_job: str, run: str = "r") -> None:
        job = max(self.jobs_of(pipeline_job, run), key=lambda j: j["metadata"]["name"])
        job["status"] = {
            "succeeded": 1,
            "startTime": "2026-11-30T10:00:01Z",
            "completionTime": "2026-11-30T10:00:09Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
        self._stamp(job)

    def vote(self, pipeline_job: str, user: str, decision: str) -> dict[str, Any]:
        (approval,) = [a for a in self.approvals.values() if a["spec"]["job"] == pipeline_job]
        approval["spec"].setdefault("votes", {})[user] = {"decision": decision, "groups": []}
        self._stamp(approval)
        return approval

    # -- the watch: Kopf's indices, as the handlers build them
    def views(self) -> Views:
        def grouped(pairs: Any) -> dict[Any, list[Any]]:
            out: dict[Any, list[Any]] = {}
            for key, value in pairs:
                out.setdefault(key, []).append(copy.deepcopy(value))
            return out

        runs = self.runs.values()
        return Views(
            runs=grouped(((NS, b["metadata"]["name"]), b) for b in runs),
            runs_by_pipeline=grouped(
                ((NS, b["spec"]["pipelineRef"]["name"]), run_summary(b))
                for b in runs
                if "pipelineRef" in b["spec"]
            ),
            pipelines=grouped(((NS, name), b) for (_, name), b in self.pipelines.items()),
            jobs=grouped(
                ((NS, j["metadata"]["labels"][LABEL_RUN]), compact_job(j))
                for j in self.jobs.values()
            ),
            environments=grouped(((NS, name), b) for (_, name), b in self.environments.items()),
            approvals=grouped(((NS, a["spec"]["pipelineRun"]), a) for a in self.approvals.values()),
            deploy_claims=grouped(
                ((NS, lock), entries) for b in runs for lock, entries in claim_entries(b).items()
            ),
        )


PIPELINE = {
    "stages": ["build", "deploy"],
    "jobs": [
        {"name": "build", "stage": "build", "image": "debian", "script": ["make"]},
        {
            "name": "to-prod",
            "stage": "deploy",
            "image": "debian",
            "script": ["./deploy"],
            "environment": {"name": "prod"},
        },
    ],
}


class Harness:
    def __init__(self, tmp_path: Any, pipeline: dict[str, Any] = PIPELINE) -> None:
        self.kube = FakeKube()
        self.now = T0
        self.controller = RunController(
            self.kube,  # type: ignore[arg-type]
            JobOptions(),
            Sources(self.kube, tmp_path),  # type: ignore[arg-type]
            clock=lambda: self.now,
        )
        self.kube.environments[(NS, "prod")] = {
            "metadata": {"name": "prod", "namespace": NS, "uid": "env-prod"},
            "spec": {
                "kubeconfigSecret": {"name": "prod-kubeconfig"},
                "namespace": "app",
                "protection": {"requiredApprovals": 1, "approvers": ["alice", "bob"]},
            },
        }
        self.kube.runs[KEY] = {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {
                "name": "r",
                "namespace": NS,
                "uid": "run-uid",
                "creationTimestamp": "2026-11-30T09:59:00Z",
                "resourceVersion": "0",
            },
            "spec": {"pipelineSpec": pipeline, "revision": {"ref": "main", "sha": SHA}},
        }

    def add_run(self, name: str, minute: int, pipeline: str) -> None:
        """Another run, of Pipeline `pipeline` (which the test adds to kube.pipelines)."""
        self.kube.runs[(NS, name)] = {
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": f"uid-{name}",
                "creationTimestamp": f"2026-11-30T09:{minute:02d}:00Z",
                "resourceVersion": "0",
            },
            "spec": {"pipelineRef": {"name": pipeline}, "revision": {"ref": "main", "sha": SHA}},
        }

    def reconcile(self, run: str = "r") -> None:
        """One pass, on the view of everything the fake holds now."""
        self.controller.bind(self.kube.views())
        asyncio.run(self.controller.reconcile((NS, run)))

    def status_of(self, run: str) -> dict[str, Any]:
        return self.kube.runs[(NS, run)].get("status") or {}

    @property
    def status(self) -> dict[str, Any]:
        return self.status_of("r")

    def job(self, name: str, run: str = "r") -> dict[str, Any]:
        return next(j for j in self.status_of(run)["jobs"] if j["name"] == name)

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.kube.events]


def waiting_for_approval(h: Harness) -> dict[str, Any]:
    h.reconcile()  # build's Job is created
    h.kube.succeed("build")
    h.reconcile()  # build succeeded: the gate is reached and its Approval asked for
    assert h.status["phase"] == "WaitingForApproval"
    (approval,) = h.kube.approvals.values()
    return approval


def test_a_gate_reached_asks_for_an_approval_and_its_approval_starts_the_job(tmp_path):
    h = Harness(tmp_path)
    approval = waiting_for_approval(h)
    assert (approval["spec"]["pipelineRun"], approval["spec"]["job"]) == ("r", "to-prod")
    assert approval["spec"]["environment"] == "prod"
    assert h.job("to-prod")["reason"] == "WaitingForApproval"
    with pytest.raises(AssertionError):
        h.kube.job_of("to-prod")  # no Job before the approval
    h.kube.vote("to-prod", "alice", "approve")
    h.reconcile()
    assert h.kube.job_of("to-prod")["metadata"]["annotations"]["conveyor.dev/job"] == "to-prod"
    (approval,) = h.kube.approvals.values()
    assert approval["status"]["decision"] == "Approved"
    assert "ApprovalApproved" in h.reasons()
    h.kube.succeed("to-prod")
    h.reconcile()
    assert h.status["phase"] == "Succeeded"


def test_a_rejected_approval_fails_the_job_and_the_run(tmp_path):
    h = Harness(tmp_path)
    waiting_for_approval(h)
    h.kube.vote("to-prod", "bob", "reject")
    h.reconcile()
    assert h.status["phase"] == "Failed"
    assert (h.job("to-prod")["phase"], h.job("to-prod")["reason"]) == ("Failed", "ApprovalRejected")
    (approval,) = h.kube.approvals.values()
    assert approval["status"]["decision"] == "Rejected"
    assert "ApprovalRejected" in h.reasons()
    with pytest.raises(AssertionError):
        h.kube.job_of("to-prod")


def test_an_expired_approval_fails_the_job(tmp_path):
    h = Harness(tmp_path)
    approval = waiting_for_approval(h)
    expires = datetime.datetime.fromisoformat(approval["spec"]["expiresAt"])
    h.now = expires + datetime.timedelta(seconds=1)
    h.reconcile()
    assert (h.job("to-prod")["phase"], h.job("to-prod")["reason"]) == ("Failed", "ApprovalExpired")
    assert h.kube.approvals[next(iter(h.kube.approvals))]["status"]["decision"] == "Expired"


def test_the_approval_of_a_run_cancelled_while_waiting_is_closed(tmp_path):
    h = Harness(tmp_path)
    waiting_for_approval(h)
    h.kube.runs[KEY]["spec"]["status"] = "Cancelled"
    h.reconcile()  # the run ends Cancelled
    assert h.status["phase"] == "Cancelled"
    h.reconcile()  # a finished run: its pending Approval is closed
    (approval,) = h.kube.approvals.values()
    assert approval["status"]["decision"] == "Cancelled"
    assert "the run ended before a decision" in approval["status"]["reason"]


def test_an_unprotected_environment_needs_no_approval(tmp_path):
    h = Harness(tmp_path)
    del h.kube.environments[(NS, "prod")]
    h.reconcile()
    h.kube.succeed("build")
    h.reconcile()
    assert h.kube.approvals == {}
    assert h.kube.job_of("to-prod")


def test_a_failed_job_is_retried_as_its_retry_says(tmp_path):
    pipeline = {
        "stages": ["test"],
        "jobs": [
            {
                "name": "flaky",
                "stage": "test",
                "image": "debian",
                "script": ["./test"],
                "retry": {"max": 1, "exitCodes": [3]},
            }
        ],
    }
    h = Harness(tmp_path, pipeline)
    h.reconcile()
    h.kube.fail("flaky", exit_code=3)
    h.reconcile()  # attempt 1 failed with a retried exit code: attempt 2 starts
    assert len(h.kube.jobs_of("flaky")) == 2
    h.reconcile()
    assert (h.job("flaky")["attempt"], h.job("flaky")["phase"]) == (2, "Running")
    h.kube.fail("flaky", exit_code=3)
    h.reconcile()  # retry.max reached: the job and the run fail
    assert len(h.kube.jobs_of("flaky")) == 2
    assert (h.job("flaky")["attempt"], h.job("flaky")["phase"]) == (2, "Failed")
    assert h.status["phase"] == "Failed"


def test_an_exit_code_retry_does_not_name_is_not_retried(tmp_path):
    pipeline = {
        "stages": ["test"],
        "jobs": [
            {
                "name": "flaky",
                "stage": "test",
                "image": "debian",
                "script": ["./test"],
                "retry": {"max": 2, "exitCodes": [3]},
            }
        ],
    }
    h = Harness(tmp_path, pipeline)
    h.reconcile()
    h.kube.fail("flaky", exit_code=1)
    h.reconcile()
    assert len(h.kube.jobs_of("flaky")) == 1
    assert h.status["phase"] == "Failed"


DEPLOYING_PIPELINE = {
    "metadata": {"name": "app", "namespace": NS, "resourceVersion": "1"},
    "spec": {
        "stages": ["deploy"],
        "jobs": [
            {
                "name": "deploy",
                "stage": "deploy",
                "image": "debian",
                "script": ["./deploy"],
                "environment": {"name": "test"},
            }
        ],
    },
}


def two_runs(tmp_path) -> Harness:
    h = Harness(tmp_path)
    h.kube.pipelines[(NS, "app")] = copy.deepcopy(DEPLOYING_PIPELINE)
    h.add_run("old", 1, "app")
    h.add_run("new", 2, "app")
    return h


def test_an_environment_takes_one_deploy_at_a_time(tmp_path):
    h = two_runs(tmp_path)
    h.reconcile("old")
    h.reconcile("old")  # the watch brought its Job: status written, the lock claimed
    assert h.job("deploy", "old")["phase"] == "Running"
    h.reconcile("new")
    # The newer run waits for the environment; the older one is not overtaken mid-deploy.
    assert h.kube.jobs_of("deploy", "new") == []
    assert h.job("deploy", "new")["reason"] == "WaitingForEnvironment"
    h.kube.succeed("deploy", "old")
    h.reconcile("old")
    assert h.status_of("old")["phase"] == "Succeeded"
    h.reconcile("new")
    assert len(h.kube.jobs_of("deploy", "new")) == 1


def test_a_newer_run_deploying_supersedes_an_older_one_waiting(tmp_path):
    h = two_runs(tmp_path)
    h.reconcile("new")
    h.reconcile("new")
    assert h.job("deploy", "new")["phase"] == "Running"
    h.reconcile("old")
    assert h.kube.jobs_of("deploy", "old") == []
    assert h.status_of("old")["phase"] == "Cancelled"
    assert "superseded: newer run new deploys to environment" in str(h.status_of("old"))


def auto_cancelling(h: Harness, interruptible: bool) -> None:
    h.kube.pipelines[(NS, "ci")] = {
        "metadata": {"name": "ci", "namespace": NS, "resourceVersion": "1"},
        "spec": {
            "autoCancel": "conservative",
            "stages": ["test"],
            "jobs": [
                {
                    "name": "test",
                    "stage": "test",
                    "image": "debian",
                    "script": ["./test"],
                    "interruptible": interruptible,
                }
            ],
        },
    }
    h.add_run("old", 1, "ci")
    h.reconcile("old")
    h.reconcile("old")  # its Job runs, its status says so
    assert h.job("test", "old")["phase"] == "Running"
    h.add_run("new", 2, "ci")  # a newer run of the same ref
    h.reconcile("old")


def test_a_newer_run_of_the_ref_auto_cancels_an_older_interruptible_one(tmp_path):
    h = Harness(tmp_path)
    auto_cancelling(h, interruptible=True)
    assert h.status_of("old")["phase"] == "Cancelled"
    assert "auto-cancelled: run new of ref main is newer" in str(h.status_of("old"))
    assert h.kube.jobs_of("test", "old") == []  # its Job was stopped


def test_a_started_job_that_is_not_interruptible_keeps_its_run(tmp_path):
    h = Harness(tmp_path)
    auto_cancelling(h, interruptible=False)
    assert h.status_of("old")["phase"] == "Running"
    assert len(h.kube.jobs_of("test", "old")) == 1


def test_a_deploy_started_but_not_yet_watched_holds_its_environment(tmp_path):
    h = two_runs(tmp_path)
    h.reconcile("old")  # its deploy's Job is created; its jobs' status is not written yet
    assert "jobs" not in h.status_of("old")  # only the record of what it runs
    h.reconcile("new")  # the lock is held by what this process started, not by any status
    assert h.kube.jobs_of("deploy", "new") == []
    assert h.job("deploy", "new")["reason"] == "WaitingForEnvironment"


def test_a_status_written_from_a_stale_view_never_lands_on_a_new_run_of_the_same_name(tmp_path):
    """The view still shows run r when r was deleted and made again: the pass's write is
    refused (409) and the new run's status stays its own."""
    h = Harness(tmp_path)
    stale = h.kube.views()
    h.kube.runs[KEY] = copy.deepcopy(h.kube.runs[KEY])
    h.kube.runs[KEY]["metadata"].update(uid="run-uid-2")
    h.kube._stamp(h.kube.runs[KEY])
    h.kube.runs[KEY]["status"] = {"phase": "Pending"}
    h.controller.bind(stale)
    with pytest.raises(ApiException) as refused:
        asyncio.run(h.controller.reconcile(KEY))
    assert refused.value.status == 409
    assert h.status == {"phase": "Pending"}
    h.reconcile()  # on a view that has caught up, the new run is reconciled as itself
    assert h.status["pipelineSpec"]["jobs"] and h.status["evaluation"]["sha"] == SHA


def test_the_watch_may_change_the_jobs_while_a_pass_reads_an_ended_jobs_pods():
    """The run's Jobs come from the watch's live view; an event that lands while a failed Job's
    pods are read (an await) must not break the pass ("dictionary changed size")."""
    from conveyor.reconcile.observed import ObservedJobs

    failed = {
        "metadata": {
            "name": "r-build-1",
            "uid": "job-1",
            "labels": {LABEL_RUN: "r"},
            "annotations": {"conveyor.dev/job": "build", "conveyor.dev/attempt": "1"},
        },
        "status": {
            "failed": 1,
            "startTime": "2026-11-30T10:00:01Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
        },
    }
    live = {"r-build-1": compact_job(failed)}

    class Kube:
        def list_job_pods(self, namespace: str, job: str, uid: str | None) -> list[dict]:
            live["r-lint-1"] = compact_job(
                {**failed, "metadata": {**failed["metadata"], "name": "r-lint-1"}}
            )
            return []

    async def io(call: Any, *args: Any) -> Any:
        return call(*args)

    observed, _ = asyncio.run(
        ObservedJobs(Kube(), io).of(KEY, live.values(), T0, frozenset(), None)
    )
    assert [o.job_name for o in observed] == ["r-build-1"]


# -- cache:key:files: the blob ids are read before the job's plan ------------------------------


def test_key_file_blobs_wait_for_a_repository_that_may_come_back_then_fail_naming_it(
    tmp_path, monkeypatch
):
    """A repository that cannot be reached holds the job back (retried), for a while; then the
    job fails naming the cause. A commit the repository does not have fails it at once."""
    import subprocess

    from conveyor.api import PipelineRun, parse_pipeline_spec
    from conveyor.reconcile import launch

    kube = FakeKube()
    sources = Sources(kube, tmp_path / "sources", local=True)  # type: ignore[arg-type]
    controller = RunController(kube, JobOptions(), sources)  # type: ignore[arg-type]
    gone = (tmp_path / "gone").as_uri()

    def spec(url: str):
        return parse_pipeline_spec(
            {"source": {"url": url},
             "jobs": [{"name": "j", "script": ["x"],
                       "cache": [{"keyFiles": {"files": ["deps.lock"]}, "paths": ["v"]}]}]}
        )  # fmt: skip

    run = PipelineRun.from_dict(
        {"metadata": {"name": "r", "namespace": NS, "uid": "u"},
         "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main", "sha": SHA}}}
    )  # fmt: skip

    launcher = controller.launcher
    pipeline = spec(gone)
    with pytest.raises(launch.KeyFilesWait):
        asyncio.run(launcher._key_file_blobs(KEY, run, pipeline, pipeline.jobs[0], 1))
    monkeypatch.setattr(launch, "KEY_FILES_PATIENCE_SECONDS", 0.0)
    refusal = asyncio.run(launcher._key_file_blobs(KEY, run, pipeline, pipeline.jobs[0], 1))
    assert isinstance(refusal, str)
    assert refusal.startswith("cache keyFiles: the files' git blob ids could not be read: ")
    assert "unreachable" in refusal and not launcher._key_files_failing

    origin = tmp_path / "origin"
    origin.mkdir()
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=origin, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], cwd=origin, check=True)
    pipeline = spec(origin.as_uri())
    refusal = asyncio.run(launcher._key_file_blobs(KEY, run, pipeline, pipeline.jobs[0], 1))
    assert isinstance(refusal, str) and f"sha {SHA} not found" in refusal
    # A job without keyFiles reads nothing.
    plain = parse_pipeline_spec({"jobs": [{"name": "j", "script": ["x"]}]})
    assert asyncio.run(launcher._key_file_blobs(KEY, run, plain, plain.jobs[0], 1)) is None


def test_an_approvals_first_status_write_is_its_whole_status(tmp_path):
    """Nothing is stored before the operator's first decision: that write carries every field,
    empty lists too, as every later one does."""
    h = Harness(tmp_path)
    approval = waiting_for_approval(h)
    assert "status" not in approval
    h.reconcile()  # the pass that sees the new Approval records what its votes decide
    assert approval["status"]["decision"] == "Pending"
    assert approval["status"]["approvedBy"] == [] and approval["status"]["votes"] == []
