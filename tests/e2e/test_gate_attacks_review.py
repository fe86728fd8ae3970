"""A security review of the rebuilt production gate (issue 9), as an attacker with the access the
README recommends: the team's developer has `edit` in the team namespace; approvers have `view`
and `conveyor-approver`; an outsider has `view`.

Each test here reproduces a way around the gate that WORKS today: it asserts what the gate
promises (prod unchanged, no gated job released without an Approval, no credentials leaked), so
it FAILS until the product is fixed."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.e2e.conveyor import (
    GROUP,
    VERSION,
    Conveyor,
    job_status,
    phase,
    run,
)
from tests.e2e.gitrepo import GitRepo
from tests.e2e.support import Clusters, wait_until
from tests.e2e.test_deploy import pipeline_with_deploys
from tests.e2e.test_gate_attacks import (
    PROD_JOB,
    approvals,
    as_user,
    prod_deployments,
    refused,
)
from tests.e2e.test_gate_attacks import team as team

LONG = {"kwok.conveyor.dev/duration": "10m"}


def forged_job_template(run_name: str, job: str, attempt: int = 1) -> dict[str, Any]:
    """A Job template that says, in labels and annotations, that it is `job`'s attempt of run
    `run_name` (what the operator reads to count a Job as a job's result)."""
    return {
        "metadata": {
            "labels": {
                "conveyor.dev/pipelinerun": run_name,
                "app.kubernetes.io/managed-by": "conveyor",
            },
            "annotations": {"conveyor.dev/job": job, "conveyor.dev/attempt": str(attempt)},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": LONG},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"]}],
                },
            },
        },
    }


# -- A: the CronJob controller is exempt from the Job policy; a "running" gated native deploy is
#       resumed by the operator without its Approval.
def test_a_cronjob_made_job_cannot_pass_for_a_gated_deploy(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    ns = conveyor.ns
    conveyor.create(pipeline_with_deploys(team))
    # The developer cannot create a Job labelled as Conveyor's (test_gate_attacks), but may
    # create a CronJob: its Jobs are created by kube-system:cronjob-controller, which the
    # conveyor-jobs policy exempts as a cluster controller.
    batch = client.BatchV1Api(as_user(clusters, "developer"))
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": forged_job_template("x1", PROD_JOB),
        },
    }
    message = refused(batch.create_namespaced_cron_job, ns, cron)
    assert "only the Conveyor operator makes those" in message
    # The run waits at its gate: nothing else speaks for its prod deploy.
    client.CustomObjectsApi(as_user(clusters, "developer")).create_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", run("x1", "go-app", ref="master")
    )
    seen = conveyor.wait_run("x1", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(seen, PROD_JOB)["phase"] == "Manual"
    assert prod_deployments(clusters, target_namespace) == []


# -- B: an orphaned Job of an earlier run of the same name. (C, a webhook forged with a token
#       the team could read, is in test_gate_attacks' pusher test: the token is out of reach.)
def test_an_orphaned_job_of_an_earlier_run_of_the_same_name_cannot_pass_for_a_gated_deploy(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    ns = conveyor.ns
    conveyor.create(pipeline_with_deploys(team))
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    # An ungated inline run whose script job happens to be called like the prod deploy.
    decoy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": "o1"},
        "spec": {
            "revision": {"ref": "master"},
            "pipelineSpec": {
                "jobs": [{"name": PROD_JOB, "script": ["sleep 600"], "podAnnotations": LONG}]
            },
        },
    }
    dev.create_namespaced_custom_object(GROUP, VERSION, ns, "pipelineruns", decoy)
    wait_until(lambda: conveyor.jobs("o1"), what="the decoy's Job", timeout=60)
    dev.delete_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", "o1", propagation_policy="Orphan"
    )
    wait_until(lambda: "o1" not in {r["metadata"]["name"] for r in conveyor.runs()}, what="gone")
    assert conveyor.jobs("o1"), "the decoy's Job was orphaned, not deleted"
    # The real pipeline's run, under the same name.
    dev.create_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", run("o1", "go-app", ref="master")
    )
    seen = conveyor.wait_run("o1", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(seen, PROD_JOB)["phase"] == "Manual"
    assert all(
        (a.get("status") or {}).get("decision") != "Approved" for a in approvals(conveyor, "o1")
    )
    assert prod_deployments(clusters, target_namespace) == []
