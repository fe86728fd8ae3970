"""The production gate, attacked with the access the README recommends: the team's developer has
`edit` in the team namespace; approvers have `view` and `conveyor-approver`; an outsider has
`view`. Each way around the Approval that was once found is tried here; each must be refused by
the API server (or change nothing), and prod must stay as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e.conveyor import (
    GROUP,
    OPERATOR_NS,
    VERSION,
    Conveyor,
    Operator,
    add_environment,
    bind,
    job_status,
    phase,
    run,
    succeeded_condition,
)
from tests.e2e.gitrepo import GitRepo, go_app_repo
from tests.e2e.support import ROOT, Clusters, wait_until
from tests.e2e.test_deploy import conveyor_as, deployment, pipeline_with_deploys
from tests.e2e.test_triggers import post

MERGE = "application/merge-patch+json"
PROD_JOB = "k8s-deploy-prod"


# -- the team, as the README recommends
@pytest.fixture
def team(
    conveyor: Conveyor, clusters: Clusters, targets: None, target_namespace: str, tmp_path: Path
) -> GitRepo:
    ns = conveyor.ns
    bind(
        clusters,
        ns,
        [
            ("developer", "edit"),
            ("approver1", "view"),
            ("approver2", "view"),
            ("approver1", "conveyor-approver"),
            ("approver2", "conveyor-approver"),
            ("outsider", "view"),
        ],
    )
    test = ["--var", "APP_FQDN=go-app.test.local"]
    add_environment(clusters, ns, "test", "test", target_namespace, *test)
    prod = ["--var", "APP_FQDN=go-app.prod.local", "--approvers", "group:approvers"]
    add_environment(clusters, ns, "prod", "prod", target_namespace, *prod)
    return go_app_repo(tmp_path / "go-app")


def as_user(clusters: Clusters, user: str) -> client.ApiClient:
    return clusters.api(f"ci-as-{user}")


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    """The API server's message for a refused call (403: RBAC or admission)."""
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    assert info.value.status == 403, info.value
    return str(json.loads(info.value.body)["message"])


def approvals(conveyor: Conveyor, run_name: str) -> list[dict[str, Any]]:
    """Approvals found as the operator finds them: by the run their spec names."""
    items = conveyor.api.list_namespaced_custom_object(GROUP, VERSION, conveyor.ns, "approvals")
    return [a for a in items["items"] if a["spec"]["pipelineRun"] == run_name]


def the_approval(conveyor: Conveyor, run_name: str) -> dict[str, Any]:
    return wait_until(
        lambda: next(iter(approvals(conveyor, run_name)), None),
        what=f"the approval of {run_name}",
        timeout=60,
    )


def prod_deployments(clusters: Clusters, namespace: str) -> list[str]:
    """Images of what runs in prod's target namespace."""
    apps = client.AppsV1Api(clusters.api("prod"))
    return [
        c.image
        for d in apps.list_namespaced_deployment(namespace).items
        for c in d.spec.template.spec.containers
    ]


def start_waiting(conveyor: Conveyor, clusters: Clusters, name: str, **spec: Any) -> dict:
    """A run by the developer that reaches prod's gate."""
    body = run(name, "go-app", ref="master", **spec)
    client.CustomObjectsApi(as_user(clusters, "developer")).create_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "pipelineruns", body
    )
    return conveyor.wait_run(name, lambda r: phase(r) == "WaitingForApproval", timeout=90)


def approve(clusters: Clusters, ns: str, approval: str, user: str = "approver1") -> None:
    proc = conveyor_as(clusters, f"ci-as-{user}", "approve", approval, "-n", ns)
    assert proc.returncode == 0, proc.stderr


# -- 1, 2: credentials
def test_the_team_can_neither_read_nor_mount_nor_swap_an_environments_credentials(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    ns = conveyor.ns
    dev = client.CoreV1Api(as_user(clusters, "developer"))
    prod_secret, test_secret = f"{ns}.prod.kubeconfig", f"{ns}.test.kubeconfig"
    # The credentials are not in the team's namespace at all...
    assert [s.metadata.name for s in dev.list_namespaced_secret(ns).items] == []
    # ...and the credentials namespace is out of reach: read, list, overwrite, mount.
    assert "forbidden" in refused(dev.read_namespaced_secret, prod_secret, OPERATOR_NS)
    refused(dev.list_namespaced_secret, OPERATOR_NS)
    swap = {"stringData": {"kubeconfig": "stolen"}}
    refused(dev.patch_namespaced_secret, test_secret, OPERATOR_NS, swap)
    pod = {
        "metadata": {"name": "thief"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "k", "secret": {"secretName": prod_secret}}],
        },
    }
    refused(dev.create_namespaced_pod, OPERATOR_NS, pod)
    # Nor can the team point its Environment at other credentials: Environments are the
    # platform's.
    refused(
        client.CustomObjectsApi(as_user(clusters, "developer")).patch_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        "environments",
        "test",
        {"spec": {"kubeconfigSecret": {"name": prod_secret}}},
        _content_type=MERGE,
    )
    assert prod_deployments(clusters, target_namespace) == []


def test_no_job_pod_gets_an_environments_credentials(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    ns = conveyor.ns
    prod_secret = f"{ns}.prod.kubeconfig"
    # An ungated inline job that names prod's Secret, and a script job deploying to test.
    inline = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": "grab"},
        "spec": {
            "revision": {"ref": "master"},
            "pipelineSpec": {
                "jobs": [
                    {
                        "name": "grab",
                        "script": ["cat $KUBE"],
                        "secretVariables": [
                            {"name": "KUBE", "secretName": prod_secret, "key": "kubeconfig"}
                        ],
                    },
                    {
                        "name": "kubectl-test",
                        "script": ["kubectl get pods"],
                        "environment": {"name": "test"},
                    },
                ]
            },
        },
    }
    client.CustomObjectsApi(as_user(clusters, "developer")).create_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", inline
    )
    wait_until(lambda: len(conveyor.jobs("grab")) == 2, what="the two Jobs", timeout=60)
    core = client.CoreV1Api(clusters.api("ci"))
    named: set[str] = set()
    for made in conveyor.jobs("grab"):
        pod = made.spec.template.spec
        env = [v for c in pod.containers + (pod.init_containers or []) for v in c.env or ()]
        assert "KUBECONFIG" not in {v.name for v in env}  # a script deploy gets none
        named |= {
            v.value_from.secret_key_ref.name
            for v in env
            if v.value_from is not None and v.value_from.secret_key_ref is not None
        }
        named |= {v.secret.secret_name for v in pod.volumes or () if v.secret is not None}
    # A pod can only use its own namespace's Secrets, and prod's is not there.
    assert prod_secret in named
    for secret in named:
        with pytest.raises(ApiException) as info:
            core.read_namespaced_secret(secret, ns)
        assert info.value.status == 404
    # Runs are refused outright in the credentials namespace.
    admin = client.CustomObjectsApi(clusters.api("ci"))
    beside = {**inline, "metadata": {"name": f"beside-{ns}"}}
    admin.create_namespaced_custom_object(GROUP, VERSION, OPERATOR_NS, "pipelineruns", beside)
    try:
        done = Conveyor(clusters, OPERATOR_NS).wait_finished(f"beside-{ns}", timeout=60)
        assert succeeded_condition(done)["reason"] == "InvalidPipeline"
        assert "holds the Environments' credentials" in succeeded_condition(done)["message"]
        assert Conveyor(clusters, OPERATOR_NS).jobs(f"beside-{ns}") == []
    finally:
        admin.delete_namespaced_custom_object(
            GROUP, VERSION, OPERATOR_NS, "pipelineruns", f"beside-{ns}"
        )
    assert prod_deployments(clusters, target_namespace) == []


# -- 3: play
def test_play_never_releases_a_gated_job(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    conveyor.create(pipeline_with_deploys(team))
    waiting = start_waiting(conveyor, clusters, "p1")
    message = succeeded_condition(waiting)["message"]
    assert "conveyor approve p1" in message and "conveyor play" not in message
    proc = conveyor_as(clusters, "ci-as-developer", "play", "p1", PROD_JOB, "-n", conveyor.ns)
    assert proc.returncode != 0
    assert "requires approval: play does not release it" in proc.stderr
    # Around the command: spec.play by patch...
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    patched = dev.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        conveyor.ns,
        "pipelineruns",
        "p1",
        {"spec": {"play": [PROD_JOB]}},
        _content_type=MERGE,
    )
    generation = patched["metadata"]["generation"]
    seen = conveyor.wait_run(
        "p1",
        lambda r: succeeded_condition(r).get("observedGeneration") == generation,
        timeout=60,
    )
    assert phase(seen) == "WaitingForApproval"
    assert job_status(seen, PROD_JOB)["phase"] == "Manual"
    assert (the_approval(conveyor, "p1").get("status") or {}).get("decision") == "Pending"
    # ...and a run created with it (the newer run supersedes p1's waiting deploy).
    current = start_waiting(conveyor, clusters, "p2", play=[PROD_JOB])
    assert job_status(current, PROD_JOB)["phase"] == "Manual"
    gate = the_approval(conveyor, "p2")
    assert (gate.get("status") or {}).get("decision", "Pending") == "Pending"
    events = clusters.kubectl("ci", "get", "events", "-n", conveyor.ns, "-o", "json").stdout
    assert f"conveyor play p1 {PROD_JOB}" not in events
    assert f"conveyor play p2 {PROD_JOB}" not in events
    assert prod_deployments(clusters, target_namespace) == []


# -- 4: approvals found by identity, not labels
def test_a_relabelled_or_reused_approval_releases_nothing(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    conveyor.create(pipeline_with_deploys(team))
    first_sha = team.head()
    start_waiting(conveyor, clusters, "a1")
    approve(clusters, conveyor.ns, the_approval(conveyor, "a1")["metadata"]["name"])
    assert phase(conveyor.wait_finished("a1", timeout=90)) == "Succeeded"
    deployed = prod_deployments(clusters, target_namespace)
    assert deployed == [f"registry.example.com/encompass/go-app:master_{first_sha}"]

    second_sha = team.commit("unreviewed", {"src/server.go": "\n// unreviewed\n"})
    start_waiting(conveyor, clusters, "a2")
    old = the_approval(conveyor, "a1")["metadata"]["name"]
    relabel = {"metadata": {"labels": {"conveyor.dev/pipelinerun": "a2"}}}
    for user in ("outsider", "developer", "approver1"):
        api = client.CustomObjectsApi(as_user(clusters, user))
        refused(
            api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            conveyor.ns,
            "approvals",
            old,
            relabel,
            _content_type=MERGE,
        )
    # Even the cluster's admin is held to it: metadata is the operator's.
    admin = client.CustomObjectsApi(clusters.api("ci"))
    message = refused(
        admin.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        conveyor.ns,
        "approvals",
        old,
        relabel,
        _content_type=MERGE,
    )
    assert "may only vote" in message

    # The run deleted with its dependents orphaned and made again under the same name: the
    # old Approval is the old run's record, and the new run waits for one of its own.
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    dev.delete_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "pipelineruns", "a1", propagation_policy="Orphan"
    )
    wait_until(lambda: "a1" not in {r["metadata"]["name"] for r in conveyor.runs()}, what="a1 gone")
    again = start_waiting(conveyor, clusters, "a1")
    assert again["spec"]["revision"]["ref"] == "master"
    gates = wait_until(
        lambda: [a for a in approvals(conveyor, "a1") if a["metadata"]["name"] != old] or None,
        what="a new approval for the new a1",
        timeout=60,
    )
    assert gates[0]["spec"]["runUID"] == again["metadata"]["uid"]
    assert job_status(conveyor.get_run("a1"), PROD_JOB)["phase"] == "Manual"
    assert phase(conveyor.get_run("a2")) != "Succeeded"
    assert prod_deployments(clusters, target_namespace) == deployed
    assert second_sha not in json.dumps(deployed)


# -- 5: what was approved is what runs
def test_editing_the_pipeline_after_the_request_changes_nothing_that_runs(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": "go-app"},
        "spec": {
            "source": {"url": team.url},
            "jobs": [
                {
                    "name": PROD_JOB,
                    "stage": "deploy",
                    "script": ["echo the reviewed deploy"],
                    "environment": {"name": "prod"},
                }
            ],
        },
    }
    conveyor.create(body)
    started = start_waiting(conveyor, clusters, "e1")
    assert started["status"]["pipelineSpec"]["jobs"][0]["script"] == ["echo the reviewed deploy"]
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    dev.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        conveyor.ns,
        "pipelines",
        "go-app",
        {"spec": {"jobs": [{**body["spec"]["jobs"][0], "script": ["echo evil"]}]}},
        _content_type=MERGE,
    )
    approve(clusters, conveyor.ns, the_approval(conveyor, "e1")["metadata"]["name"])
    done = conveyor.wait_finished("e1", timeout=90)
    assert phase(done) == "Succeeded", succeeded_condition(done)
    (made,) = conveyor.jobs("e1")
    script = json.dumps(made.spec.template.spec.to_dict())
    assert "the reviewed deploy" in script and "evil" not in script


def test_a_started_runs_variables_and_its_environment_cannot_change(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    # staging: the developer may approve their own run there (allowInitiator); prod: not.
    add_environment(
        clusters,
        conveyor.ns,
        "staging",
        "test",
        target_namespace,
        "--var",
        "APP_FQDN=go-app.staging.local",
        "--approvers",
        "developer",
        "--allow-initiator",
    )
    pipe = pipeline_with_deploys(team)
    pipe["spec"]["jobs"] = [
        {**pipe["spec"]["jobs"][2], "environment": {"name": "$TARGET"}},
    ]
    pipe["spec"]["stages"] = ["deploy-prod"]
    conveyor.create(pipe)
    clusters.kubectl(  # the platform made the developer an approver of staging
        "ci",
        "create",
        "rolebinding",
        "developer-approver",
        "--clusterrole=conveyor-approver",
        "--user=developer",
        "-n",
        conveyor.ns,
    )
    start_waiting(conveyor, clusters, "v1", variables={"TARGET": "staging"})
    gate = the_approval(conveyor, "v1")
    assert gate["spec"]["environment"] == "staging"
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    message = refused(
        dev.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        conveyor.ns,
        "pipelineruns",
        "v1",
        {"spec": {"variables": {"TARGET": "prod"}}},
        _content_type=MERGE,
    )
    assert "spec.variables of run v1 cannot change" in message
    approve(clusters, conveyor.ns, gate["metadata"]["name"], user="developer")
    done = conveyor.wait_finished("v1", timeout=90)
    assert phase(done) == "Succeeded", succeeded_condition(done)
    assert job_status(done, PROD_JOB)["environment"] == "staging"
    assert prod_deployments(clusters, target_namespace) == []  # prod's cluster is untouched
    assert deployment(clusters, "test", target_namespace) is not None


def test_a_deploy_whose_images_cannot_be_shown_cannot_be_approved(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo, target_namespace: str
) -> None:
    deployment_yml = team.path / "templates" / "deployment.yml"
    deployment_yml.write_text(deployment_yml.read_text() + "\n# {{ NOT_DEFINED_ANYWHERE }}\n")
    team.git("add", "templates/deployment.yml")
    team.commit("a template that does not render", {"src/server.go": "\n// x\n"})
    pipe = pipeline_with_deploys(team)
    pipe["spec"]["jobs"] = [pipe["spec"]["jobs"][0], pipe["spec"]["jobs"][2]]
    pipe["spec"]["stages"] = ["build", "deploy-prod"]
    conveyor.create(pipe)
    client.CustomObjectsApi(as_user(clusters, "developer")).create_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "pipelineruns", run("t1", "go-app", ref="master")
    )
    done = conveyor.wait_finished("t1", timeout=90)
    prod = job_status(done, PROD_JOB)
    assert (phase(done), prod["reason"]) == ("Failed", "DeployFailed")
    assert "no approval can be asked" in prod["message"]
    assert "NOT_DEFINED_ANYWHERE" in prod["message"]
    assert approvals(conveyor, "t1") == []
    assert prod_deployments(clusters, target_namespace) == []


# -- 6: forged evidence
def test_jobs_and_pods_passing_for_conveyors_are_refused(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo
) -> None:
    ns = conveyor.ns
    batch = client.BatchV1Api(as_user(clusters, "developer"))
    core = client.CoreV1Api(as_user(clusters, "developer"))
    labels = {"conveyor.dev/pipelinerun": "f1", "app.kubernetes.io/managed-by": "conveyor"}
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
    }
    forged = {
        "metadata": {"name": "f1-test-1-00000000", "labels": labels},
        "spec": {"template": {"spec": pod_spec}},
    }
    assert "made by the Conveyor operator only" in refused(batch.create_namespaced_job, ns, forged)
    # Unlabelled, but making Conveyor-labelled pods.
    sneaky = {
        "metadata": {"name": "sneaky"},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }
    refused(batch.create_namespaced_job, ns, sneaky)
    # Nor scheduled: the CronJob controller would make it (and is no operator).
    cron = {
        "metadata": {"name": "cron"},
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {"template": {"spec": pod_spec}},
            },
        },
    }
    assert "only the Conveyor" in refused(batch.create_namespaced_cron_job, ns, cron)
    # Nor made into pods by another controller (a ReplicaSet of pods labelled as the run's).
    apps = client.AppsV1Api(as_user(clusters, "developer"))
    replicas = {
        "metadata": {"name": "rs"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {**pod_spec, "restartPolicy": "Always"},
            },
        },
    }
    apps.create_namespaced_replica_set(ns, replicas)
    wait_until(
        lambda: [
            e
            for e in client.CoreV1Api(clusters.api("ci")).list_namespaced_event(ns).items
            if e.involved_object.name == "rs" and e.reason == "FailedCreate"
        ],
        what="the ReplicaSet's pods refused",
        timeout=60,
    )
    assert (
        client.CoreV1Api(clusters.api("ci"))
        .list_namespaced_pod(ns, label_selector="conveyor.dev/pipelinerun=f1")
        .items
        == []
    )
    assert "made by the Job controller" in refused(
        core.create_namespaced_pod,
        ns,
        {"metadata": {"name": "p", "labels": labels}, "spec": pod_spec},
    )
    # A real run's Job and pod: not deleted, not relabelled.
    conveyor.create(pipeline_with_deploys(team))
    client.CustomObjectsApi(as_user(clusters, "developer")).create_namespaced_custom_object(
        GROUP, VERSION, ns, "pipelineruns", run("f2", "go-app", ref="master")
    )
    conveyor.wait_run("f2", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    (real,) = conveyor.jobs("f2")
    refused(batch.delete_namespaced_job, real.metadata.name, ns)
    pods = (
        client.CoreV1Api(clusters.api("ci"))
        .list_namespaced_pod(
            ns, label_selector=f"batch.kubernetes.io/job-name={real.metadata.name}"
        )
        .items
    )
    assert pods
    refused(
        core.patch_namespaced_pod,
        pods[0].metadata.name,
        ns,
        {"metadata": {"labels": {"batch.kubernetes.io/job-name": "other"}}},
    )


def test_an_approval_is_a_durable_record_only_the_operator_changes(
    conveyor: Conveyor, clusters: Clusters, team: GitRepo
) -> None:
    conveyor.create(pipeline_with_deploys(team))
    start_waiting(conveyor, clusters, "d1")
    name = the_approval(conveyor, "d1")["metadata"]["name"]
    changes = [
        {"metadata": {"labels": {"x": "y"}}},
        {"metadata": {"annotations": {"conveyor.dev/job": "other"}}},
        {"metadata": {"finalizers": ["example.com/hold"]}},
        {
            "metadata": {
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "0"}
                ]
            }
        },
    ]
    approver = client.CustomObjectsApi(as_user(clusters, "approver1"))
    for change in changes:
        assert "may only vote" in refused(
            approver.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            conveyor.ns,
            "approvals",
            name,
            change,
            _content_type=MERGE,
        )
    # Voting is its own permission: view alone (the outsider) and edit (the developer) lack it.
    for user in ("outsider", "developer"):
        api = client.CustomObjectsApi(as_user(clusters, user))
        vote = {"spec": {"votes": {user: {"decision": "approve"}}}}
        refused(
            api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            conveyor.ns,
            "approvals",
            name,
            vote,
            _content_type=MERGE,
        )
        refused(api.delete_namespaced_custom_object, GROUP, VERSION, conveyor.ns, "approvals", name)
    approve(clusters, conveyor.ns, name)
    assert phase(conveyor.wait_finished("d1", timeout=90)) == "Succeeded"
    # Deleting the run (edit may) deletes its Jobs but not who approved what.
    client.CustomObjectsApi(as_user(clusters, "developer")).delete_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "pipelineruns", "d1"
    )
    wait_until(lambda: conveyor.jobs("d1") == [], what="d1's Jobs collected", timeout=60)
    kept = conveyor.api.get_namespaced_custom_object(GROUP, VERSION, conveyor.ns, "approvals", name)
    assert kept["status"]["decision"] == "Approved"
    assert kept["status"]["approvedBy"] == ["approver1"]
    assert "Approvals are the record" in message_of_delete(clusters, conveyor.ns, name)


def message_of_delete(clusters: Clusters, ns: str, name: str) -> str:
    """Even the admin does not delete an Approval: past its retention, the operator does."""
    return refused(
        client.CustomObjectsApi(clusters.api("ci")).delete_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        "approvals",
        name,
    )


# -- 7: the pusher
def test_the_pusher_may_not_approve_their_own_push(
    conveyor: Conveyor, operator: Operator, clusters: Clusters, team: GitRepo, hook_secret: str
) -> None:
    ns = conveyor.ns
    token = hook_secret
    pipe = pipeline_with_deploys(team)
    pipe["spec"]["triggers"] = {"webhook": {"secretRef": {"name": "hook"}}}
    conveyor.create(pipe)
    before = team.head()
    after = team.commit("pushed by approver1", {"src/server.go": "\n// pushed\n"})
    body = json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/master",
            "before": before,
            "after": after,
            "checkout_sha": after,
            "user_username": "approver1",
            "project": {"git_http_url": team.url},
            "commits": [{"id": after, "message": "pushed by approver1"}],
        }
    ).encode()
    url = f"http://127.0.0.1:{operator.webhook_port}/hooks/{ns}/go-app"
    headers = {
        "X-Gitlab-Event": "Push Hook",
        "Content-Type": "application/json",
        "X-Gitlab-Token": token,
    }
    _, answer = wait_until(
        lambda: (lambda r: r if r[0] == 202 else None)(post(url, body, headers)),
        what="the webhook to take the push",
    )
    name = answer["run"]
    waiting = conveyor.wait_run(name, lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert waiting["metadata"]["annotations"]["conveyor.dev/trigger-pusher"] == "approver1"
    gate = the_approval(conveyor, name)
    assert gate["spec"]["pusher"] == "approver1"
    own = conveyor_as(clusters, "ci-as-approver1", "approve", gate["metadata"]["name"], "-n", ns)
    assert own.returncode != 0 and "pushed the commit of" in own.stderr
    approve(clusters, ns, gate["metadata"]["name"], user="approver2")
    assert phase(conveyor.wait_finished(name, timeout=90)) == "Succeeded"
    # Nor can the team deliver a push of its own making: the token is out of its reach, and a
    # Secret of the team's own named like it is not the one the operator checks.
    dev_core = client.CoreV1Api(as_user(clusters, "developer"))
    refused(dev_core.read_namespaced_secret, f"{ns}.hook", OPERATOR_NS)
    dev_core.create_namespaced_secret(
        ns, client.V1Secret(metadata=client.V1ObjectMeta(name="hook"), string_data={"token": "t"})
    )
    forged_push = body.replace(b'"approver1"', b'"someone-else"')
    assert post(url, forged_push, {**headers, "X-Gitlab-Token": "t"})[0] == 401
    # Nobody else names a pusher: not on a run of their own, not on the operator's run.
    dev = client.CustomObjectsApi(as_user(clusters, "developer"))
    forged = run("forged", "go-app", ref="master")
    forged["metadata"]["annotations"] = {"conveyor.dev/trigger-pusher": "approver2"}
    assert "push triggers only" in refused(
        dev.create_namespaced_custom_object, GROUP, VERSION, ns, "pipelineruns", forged
    )
    admin = client.CustomObjectsApi(clusters.api("ci"))
    refused(
        admin.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        ns,
        "pipelineruns",
        name,
        {"metadata": {"annotations": {"conveyor.dev/trigger-pusher": "someone"}}},
        _content_type=MERGE,
    )


# -- the operator's own identity
def test_the_operator_refuses_to_start_as_an_identity_the_policies_do_not_exempt(
    operator: Operator, clusters: Clusters
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli.main",
            "operator",
            "--kubeconfig",
            str(clusters.kubeconfig),
            "--context",
            "ci",  # the cluster admin, not the operator's service account
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "runs as admin" in proc.stderr
    assert "system:serviceaccount:conveyor-system:conveyor-operator" in proc.stderr
