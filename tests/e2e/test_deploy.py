"""Deploys into the test and prod clusters through Environments, prod gated by Approvals that
the API server enforces from the voter's identity."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from conveyor.engine.variables.predefined import environment_slug
from tests.e2e.conveyor import (
    GROUP,
    OPERATOR_NS,
    VERSION,
    Conveyor,
    Operator,
    add_environment,
    bind,
    conveyor_cli,
    job,
    job_status,
    lasts,
    phase,
    pipeline,
    run,
    succeeded_condition,
)
from tests.e2e.gitrepo import GitRepo, go_app_repo
from tests.e2e.support import ROOT, STATE, Clusters, wait_for_object, wait_until


def conveyor_as(clusters: Clusters, context: str, *args: str) -> subprocess.CompletedProcess:
    return conveyor_cli(clusters, *args, context=context)


@pytest.fixture
def app(
    conveyor: Conveyor, clusters: Clusters, targets: None, target_namespace: str, tmp_path: Path
) -> GitRepo:
    """The seed's app in a repository; Environments test and prod (prod approved by group
    approvers) whose kubeconfig Secrets hold the local clusters' contexts."""
    ns = conveyor.ns
    # Every user may patch Approvals here: the admission policy decides whose patch is a vote.
    users = ("developer", "approver1", "approver2", "outsider")
    bind(clusters, ns, [(u, role) for u in users for role in ("edit", "conveyor-approver")])
    # No conveyor-secret-reader here: the Environments' kubeconfigs live in the credentials
    # namespace, which the operator reads by deploy/'s own Role.
    add_environment(
        clusters, ns, "test", "test", target_namespace, "--var", "APP_FQDN=go-app.test.local"
    )
    add_environment(
        clusters,
        ns,
        "prod",
        "prod",
        target_namespace,
        "--var",
        "APP_FQDN=go-app.prod.local",
        "--approvers",
        "group:approvers",
        "--required-approvals",
        "1",
    )
    return go_app_repo(tmp_path / "go-app")


def pipeline_with_deploys(repo: GitRepo, *, rollback: bool = False) -> dict:
    deploy = {"rollback": True, "timeout": "40s"} if rollback else {}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": "go-app"},
        "spec": {
            "source": {"url": repo.url},
            "stages": ["build", "deploy-test", "deploy-prod"],
            "jobs": [
                job("build", "build"),
                {
                    "name": "k8s-deploy-test",
                    "stage": "deploy-test",
                    "deploy": deploy,
                    "environment": {"name": "test"},
                },
                {
                    "name": "k8s-deploy-prod",
                    "stage": "deploy-prod",
                    "deploy": deploy,
                    "environment": {"name": "prod"},
                },
            ],
        },
    }


def approval_of(conveyor: Conveyor, run_name: str) -> dict:
    items = conveyor.api.list_namespaced_custom_object(
        GROUP,
        VERSION,
        conveyor.ns,
        "approvals",
        label_selector=f"conveyor.dev/pipelinerun={run_name}",
    )["items"]
    assert len(items) == 1, items
    return items[0]


def deployment(clusters: Clusters, context: str, namespace: str) -> client.V1Deployment:
    apps = client.AppsV1Api(clusters.api(context))
    return wait_for_object(
        apps.list_namespaced_deployment,
        "go-app",
        lambda d: any(
            c.type == "Available" and c.status == "True" for c in d.status.conditions or []
        ),
        namespace=namespace,
        timeout=60,
    )


def test_test_deploys_at_once_and_prod_waits_for_an_approver(
    conveyor: Conveyor,
    operator: Operator,
    clusters: Clusters,
    app: GitRepo,
    target_namespace: str,
) -> None:
    conveyor.create(pipeline_with_deploys(app))
    before = app.head()
    after = app.commit("faster server", {"src/server.go": "\n// v2\n"})
    conveyor.create(
        run(
            "r1",
            "go-app",
            ref="master",
            revision={"ref": "master", "sha": after, "beforeSha": before},
        )
    )
    waiting = conveyor.wait_run("r1", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(waiting, "k8s-deploy-test")["phase"] == "Succeeded"
    assert job_status(waiting, "k8s-deploy-prod")["phase"] == "Manual"
    assert "conveyor approve r1" in succeeded_condition(waiting)["message"]
    test_dep = deployment(clusters, "test", target_namespace)
    assert test_dep.spec.template.spec.containers[0].image.endswith(f":master_{after}")
    managers = {m.manager for m in test_dep.metadata.managed_fields}
    assert "conveyor" in managers
    # Nothing in prod before the approval.
    prod_apps = client.AppsV1Api(clusters.api("prod"))
    assert prod_apps.list_namespaced_deployment(target_namespace).items == []
    # The operator's metrics show the wait.
    ns = conveyor.ns
    wait_until(
        lambda: (
            operator.metric("conveyor_approvals_pending", namespace=ns, environment="prod") == 1
        ),
        timeout=30,
        what="a pending prod approval in the metrics",
    )
    assert operator.metric("conveyor_pipelineruns", namespace=ns, phase="WaitingForApproval") == 1

    approval = approval_of(conveyor, "r1")
    name = approval["metadata"]["name"]
    refused = conveyor_as(clusters, "ci-as-outsider", "approve", name, "-n", conveyor.ns)
    assert refused.returncode != 0 and "not an approver" in refused.stderr
    ok = conveyor_as(
        clusters, "ci-as-approver1", "approve", name, "-m", "ship it", "-n", conveyor.ns
    )
    assert ok.returncode == 0, ok.stderr

    done = conveyor.wait_finished("r1", timeout=90)
    assert phase(done) == "Succeeded"
    prod_dep = deployment(clusters, "prod", target_namespace)
    assert prod_dep.spec.template.spec.containers[0].image.endswith(f":master_{after}")
    records = {d["environment"]: d for d in done["status"]["deployments"]}
    assert records["prod"]["result"] == "Succeeded" and records["prod"]["sha"] == after
    prod_env = conveyor.api.get_namespaced_custom_object(
        GROUP, VERSION, conveyor.ns, "environments", "prod"
    )
    last = prod_env["status"]["lastDeployment"]
    assert (last["pipelineRun"], last["job"], last["sha"]) == ("r1", "k8s-deploy-prod", after)
    assert last["image"].endswith(f":master_{after}")
    decided = approval_of(conveyor, "r1")["status"]
    assert decided["decision"] == "Approved" and decided["approvedBy"] == ["approver1"]
    assert any(
        v["user"] == "approver1" and "approvers" in v.get("groups", []) for v in decided["votes"]
    )
    wait_until(
        lambda: (
            operator.metric(
                "conveyor_pipelineruns_finished_total",
                namespace=ns,
                pipeline="go-app",
                phase="Succeeded",
            )
            == 1
        ),
        timeout=30,
        what="the run's end in the metrics",
    )
    for environment in ("test", "prod"):
        assert (
            operator.metric(
                "conveyor_deployments_total",
                namespace=ns,
                environment=environment,
                phase="Succeeded",
            )
            == 1
        )
    assert (
        operator.metric(
            "conveyor_approval_decisions_total",
            namespace=ns,
            environment="prod",
            decision="Approved",
        )
        == 1
    )
    assert operator.metric("conveyor_approvals_pending", namespace=ns, environment="prod") is None
    # A native deploy has no pod: its log is its record.
    log = conveyor_cli(clusters, "logs", "r1", "k8s-deploy-prod", "-n", ns)
    assert log.returncode == 0, log.stderr
    assert "native deploy to environment prod" in log.stdout and f"master_{after}" in log.stdout


def test_a_rejection_stops_prod(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    conveyor.create(pipeline_with_deploys(app))
    conveyor.create(run("r2", "go-app", ref="master"))
    conveyor.wait_run("r2", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    name = approval_of(conveyor, "r2")["metadata"]["name"]
    no = conveyor_as(
        clusters, "ci-as-approver2", "reject", name, "-m", "not today", "-n", conveyor.ns
    )
    assert no.returncode == 0, no.stderr
    done = conveyor.wait_finished("r2", timeout=60)
    assert phase(done) == "Failed"
    prod = job_status(done, "k8s-deploy-prod")
    assert (prod["phase"], prod["reason"]) == ("Failed", "ApprovalRejected")
    assert (
        client.AppsV1Api(clusters.api("prod")).list_namespaced_deployment(target_namespace).items
        == []
    )


def test_pruning_removes_what_the_templates_dropped(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["jobs"] = pipe["spec"]["jobs"][:2]  # build and test only
    conveyor.create(pipe)
    conveyor.create(run("p1", "go-app", ref="master"))
    assert phase(conveyor.wait_finished("p1", timeout=90)) == "Succeeded"
    autoscaling = client.AutoscalingV2Api(clusters.api("test"))
    assert [
        h.metadata.name
        for h in autoscaling.list_namespaced_horizontal_pod_autoscaler(target_namespace).items
    ] == ["go-app"]

    app.git("rm", "-q", "templates/autoscaler.yml")
    app.git("commit", "-q", "-m", "no autoscaler")
    conveyor.create(run("p2", "go-app", ref="master"))
    done = conveyor.wait_finished("p2", timeout=90)
    assert phase(done) == "Succeeded"
    assert done["status"]["deployments"][0]["pruned"] == 1
    assert autoscaling.list_namespaced_horizontal_pod_autoscaler(target_namespace).items == []


def test_a_rollout_that_never_gets_ready_fails_and_rolls_back(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    pipe = pipeline_with_deploys(app, rollback=True)
    pipe["spec"]["jobs"] = pipe["spec"]["jobs"][:2]
    conveyor.create(pipe)
    conveyor.create(run("g1", "go-app", ref="master"))
    assert phase(conveyor.wait_finished("g1", timeout=90)) == "Succeeded"
    good = deployment(clusters, "test", target_namespace).spec.template.spec.containers[0].image

    # The next revision's pods never become ready (the fake kubelet's never-ready annotation).
    deployment_yml = app.path / "templates" / "deployment.yml"
    text = (
        deployment_yml.read_text()
        .replace(
            'templates-hash: "<HASH>"',
            'templates-hash: "<HASH>"\n        kwok.conveyor.dev/never-ready: "true"',
        )
        .replace("replicas: 2", "replicas: 2\n  progressDeadlineSeconds: 5")
    )
    deployment_yml.write_text(text)
    app.git("add", "templates/deployment.yml")
    bad_sha = app.commit("break readiness", {"src/server.go": "\n// broken\n"})
    conveyor.create(run("g2", "go-app", ref="master"))
    done = conveyor.wait_finished("g2", timeout=120)
    assert phase(done) == "Failed"
    entry = job_status(done, "k8s-deploy-test")
    assert entry["reason"] == "RolloutFailed"
    record = done["status"]["deployments"][0]
    assert record["result"] == "RolledBack" and record["sha"] == bad_sha
    restored = deployment(clusters, "test", target_namespace)
    assert restored.spec.template.spec.containers[0].image == good


def test_environment_secret_is_never_shown(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo
) -> None:
    kubeconfig = json.loads((STATE / "kubeconfig").read_text())
    key_data = kubeconfig["users"][0]["user"]["client-key-data"]
    conveyor.create(pipeline_with_deploys(app))
    conveyor.create(run("s1", "go-app", ref="master"))
    conveyor.wait_run("s1", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    events = clusters.kubectl("ci", "get", "events", "-n", conveyor.ns, "-o", "json").stdout
    status = json.dumps(conveyor.get_run("s1")["status"])
    log = (STATE / "logs" / "conveyor-operator.log").read_text()
    for text in (events, status, log):
        assert key_data not in text and key_data[:40] not in text
    assert ROOT  # the repository root fixture exists


def protect_prod(clusters: Clusters, ns: str, target_namespace: str, *options: str) -> None:
    """Re-declares Environment prod (env add replaces its spec) with other protection."""
    proc = conveyor_as(
        clusters,
        "ci",
        "env",
        "add",
        "prod",
        "--target-kubeconfig",
        str(STATE / "kubeconfig"),
        "--target-context",
        "prod",
        "--target-namespace",
        target_namespace,
        "-n",
        ns,
        "--var",
        "APP_FQDN=go-app.prod.local",  # the ingress template needs it
        *options,
    )
    assert proc.returncode == 0, proc.stderr


def test_two_required_approvals_need_two_distinct_people_and_not_the_initiator(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    protect_prod(
        clusters,
        conveyor.ns,
        target_namespace,
        "--approvers",
        "group:approvers,developer",
        "--required-approvals",
        "2",
    )
    conveyor.create(pipeline_with_deploys(app))
    started = conveyor_as(
        clusters, "ci-as-developer", "run", "go-app", "--ref", "master", "-n", conveyor.ns
    )
    assert started.returncode == 0, started.stderr
    name = started.stdout.strip()
    conveyor.wait_run(name, lambda r: phase(r) == "WaitingForApproval", timeout=90)
    approval = approval_of(conveyor, name)["metadata"]["name"]

    # The run's initiator is listed as an approver, but may not approve their own run.
    own = conveyor_as(clusters, "ci-as-developer", "approve", approval, "-n", conveyor.ns)
    assert own.returncode != 0 and "initiator" in own.stderr
    first = conveyor_as(clusters, "ci-as-approver1", "approve", approval, "-n", conveyor.ns)
    assert first.returncode == 0, first.stderr
    again = conveyor_as(
        clusters, "ci-as-approver1", "approve", approval, "-m", "twice", "-n", conveyor.ns
    )
    assert again.returncode == 0, again.stderr
    wait_until(
        lambda: (approval_of(conveyor, name).get("status") or {}).get("approvals") == "1/2",
        what="one approval of two counted",
    )
    assert phase(conveyor.get_run(name)) == "WaitingForApproval"
    second = conveyor_as(clusters, "ci-as-approver2", "approve", approval, "-n", conveyor.ns)
    assert second.returncode == 0, second.stderr
    done = conveyor.wait_finished(name, timeout=90)
    assert phase(done) == "Succeeded"
    assert sorted(approval_of(conveyor, name)["status"]["approvedBy"]) == ["approver1", "approver2"]


def test_an_expired_approval_stops_prod(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    protect_prod(
        clusters,
        conveyor.ns,
        target_namespace,
        "--approvers",
        "group:approvers",
        "--approval-timeout",
        "3s",
    )
    conveyor.create(pipeline_with_deploys(app))
    conveyor.create(run("x1", "go-app", ref="master"))
    done = conveyor.wait_finished("x1", timeout=90)
    assert phase(done) == "Failed"
    prod = job_status(done, "k8s-deploy-prod")
    assert (prod["phase"], prod["reason"]) == ("Failed", "ApprovalExpired")
    assert approval_of(conveyor, "x1")["status"]["decision"] == "Expired"


def test_the_seeds_own_pipeline_waits_for_approval_before_prod(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo
) -> None:
    from tests.e2e.test_gitlab import import_gitlab

    code, manifest, stderr = import_gitlab(app.path / ".gitlab-ci.yml", "go-app", app.url)
    assert code in (0, 3), stderr
    conveyor.create(manifest)
    before = app.head()
    after = app.commit("new handler", {"src/server.go": "\n// seed\n"})
    conveyor.create(
        run("seed", "go-app", revision={"ref": "master", "sha": after, "beforeSha": before})
    )
    waiting = conveyor.wait_run("seed", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(waiting, "k8s-deploy-test")["phase"] == "Succeeded"
    assert job_status(waiting, "k8s-deploy-prod")["phase"] == "Manual"
    # The seed's kubectl deploy job is a script job in the team's namespace: it gets the
    # CI_ENVIRONMENT_* variables and its own KUBECONFIG (the article writes it from its
    # KUBE_CONFIG variable), never the Environment's credentials.
    deploy_test = next(
        j
        for j in conveyor.jobs("seed")
        if j.metadata.annotations["conveyor.dev/job"] == "k8s-deploy-test"
    )
    pod = deploy_test.spec.template.spec
    kubeconfig = next(e for e in pod.containers[0].env if e.name == "KUBECONFIG")
    assert kubeconfig.value == "/etc/deploy/config" and kubeconfig.value_from is None
    assert not any(v.secret and "kubeconfig" in v.secret.secret_name for v in pod.volumes or ())
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["CI_ENVIRONMENT_NAME"] == "test" and env["CI_ENVIRONMENT_SLUG"] == "test"
    assert env["CI_ENVIRONMENT_URL"] == "https://go-app.test.domain.com"


def test_target_cluster_down_mid_deploy_is_retried_until_it_is_back(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    import os
    import signal

    pid = int((STATE / "pids" / "kube-apiserver-test.pid").read_text().split()[0])
    log = STATE / "logs" / "conveyor-operator.log"
    seen = log.stat().st_size
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["jobs"] = pipe["spec"]["jobs"][:2]  # build and the test deploy
    conveyor.create(pipe)
    os.kill(pid, signal.SIGSTOP)  # the test cluster's API server stops answering
    try:
        conveyor.create(run("down", "go-app", ref="master"))
        # The run says so, in a condition of its own, while the deploy retries.
        down = conveyor.wait_run(
            "down", lambda r: reachable(r).get("status") == "False", timeout=90
        )
        assert phase(down) == "Running"
        condition = reachable(down)
        assert condition["reason"] == "TargetUnavailable"
        assert "k8s-deploy-test" in condition["message"] and "'test'" in condition["message"]
        assert "retrying" in log.read_text()[seen:]
    finally:
        os.kill(pid, signal.SIGCONT)
    done = conveyor.wait_finished("down", timeout=180)
    assert phase(done) == "Succeeded"
    assert done["status"]["deployments"][0]["result"] == "Succeeded"
    assert reachable(done)["status"] == "True"


def running(run_obj: dict, job_name: str) -> bool:
    jobs = (run_obj.get("status") or {}).get("jobs") or []
    return any(j["name"] == job_name and j["phase"] == "Running" for j in jobs)


def reachable(run_obj: dict) -> dict:
    conditions = (run_obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "TargetsReachable"), {})


def test_one_deploy_per_environment_at_a_time_and_the_newest_waiting_run_wins(
    conveyor: Conveyor,
) -> None:
    # Script deploys (kubectl in a pod, as in the seed) to an environment nobody declared: the
    # lock is the environment's name.
    deploy = job("deploy", environment={"name": "staging"}, **lasts("15s"))
    conveyor.create(pipeline("serial", [deploy]))
    conveyor.create(run("d1", "serial"))
    conveyor.wait_run("d1", lambda r: phase(r) == "Running" and running(r, "deploy"), timeout=60)

    conveyor.create(run("d2", "serial"))
    held = conveyor.wait_run(
        "d2",
        lambda r: succeeded_condition(r).get("reason") == "WaitingForEnvironment",
        timeout=30,
    )
    assert job_status(held, "deploy")["reason"] == "WaitingForEnvironment"
    assert "run d1 deploys there" in succeeded_condition(held)["message"]

    # A newer run arrives while d2 still waits: d2 would deploy an older revision after it.
    conveyor.create(run("d3", "serial"))
    overtaken = conveyor.wait_finished("d2", timeout=30)
    assert phase(overtaken) == "Cancelled"
    condition = succeeded_condition(overtaken)
    assert condition["reason"] == "Superseded" and "newer run d3" in condition["message"]

    first = conveyor.wait_finished("d1", timeout=60)
    last = conveyor.wait_finished("d3", timeout=60)
    assert phase(first) == phase(last) == "Succeeded"
    # d3 started only once d1 had finished, and d2 never deployed at all.
    assert job_status(last, "deploy")["startTime"] >= job_status(first, "deploy")["completionTime"]
    assert conveyor.jobs("d2") == []


def test_a_newer_run_waiting_for_prod_supersedes_the_older_and_closes_its_approval(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    conveyor.create(pipeline_with_deploys(app))
    first_sha = app.head()
    conveyor.create(run("old", "go-app", ref="master"))
    conveyor.wait_run("old", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    old_approval = approval_of(conveyor, "old")
    # The Approval names exactly what prod would get: the commit and the rendered image.
    assert old_approval["spec"]["revision"]["sha"] == first_sha
    assert old_approval["spec"]["images"] == [
        f"registry.example.com/encompass/go-app:master_{first_sha}"
    ]

    second_sha = app.commit("v3", {"src/server.go": "\n// v3\n"})
    conveyor.create(run("new", "go-app", ref="master"))
    gone = conveyor.wait_finished("old", timeout=90)
    assert phase(gone) == "Cancelled"
    condition = succeeded_condition(gone)
    assert condition["reason"] == "Superseded"
    assert "newer run new waits to deploy to environment 'prod'" in condition["message"]
    closed = wait_until(
        lambda: (approval_of(conveyor, "old").get("status") or {}).get("decision") == "Cancelled",
        what="the superseded run's Approval to be cancelled",
    )
    assert closed
    name = old_approval["metadata"]["name"]
    late = conveyor_as(clusters, "ci-as-approver1", "approve", name, "-n", conveyor.ns)
    assert late.returncode != 0 and "already Cancelled" in late.stderr

    conveyor.wait_run("new", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    new_approval = approval_of(conveyor, "new")
    assert new_approval["spec"]["images"] == [
        f"registry.example.com/encompass/go-app:master_{second_sha}"
    ]
    ok = conveyor_as(
        clusters, "ci-as-approver1", "approve", new_approval["metadata"]["name"], "-n", conveyor.ns
    )
    assert ok.returncode == 0, ok.stderr
    assert phase(conveyor.wait_finished("new", timeout=90)) == "Succeeded"
    prod = deployment(clusters, "prod", target_namespace)
    assert prod.spec.template.spec.containers[0].image.endswith(f":master_{second_sha}")


def test_an_environment_changed_after_the_request_needs_a_new_approval(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    deployment_yml = app.path / "templates" / "deployment.yml"
    deployment_yml.write_text(
        deployment_yml.read_text().replace("registry.example.com/encompass", "{{ REGISTRY }}")
    )
    app.git("add", "templates/deployment.yml")
    sha = app.commit("the registry from a variable", {"src/server.go": "\n// registry\n"})
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["variables"] = {"REGISTRY": "registry.a"}
    conveyor.create(pipe)
    conveyor.create(run("i1", "go-app", ref="master"))
    conveyor.wait_run("i1", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    first = approval_of(conveyor, "i1")
    assert first["spec"]["images"] == [f"registry.a/go-app:master_{sha}"]

    # After the request, prod's own variables change what the templates render: the Approval
    # asked for is closed, and a new one shows what would deploy now.
    protect_prod(
        clusters,
        conveyor.ns,
        target_namespace,
        "--approvers",
        "group:approvers",
        "--var",
        "REGISTRY=registry.b",
    )
    closed = wait_for_object(
        conveyor.api.list_namespaced_custom_object,
        first["metadata"]["name"],
        lambda a: (a.get("status") or {}).get("decision") == "Cancelled",
        group=GROUP,
        version=VERSION,
        namespace=conveyor.ns,
        plural="approvals",
        timeout=60,
    )
    assert "what the job would do changed" in closed["status"]["reason"]
    late = conveyor_as(
        clusters, "ci-as-approver1", "approve", first["metadata"]["name"], "-n", conveyor.ns
    )
    assert late.returncode != 0 and "already Cancelled" in late.stderr
    second = wait_until(
        lambda: next(
            (
                a
                for a in conveyor.api.list_namespaced_custom_object(
                    GROUP, VERSION, conveyor.ns, "approvals"
                )["items"]
                if a["metadata"]["name"] != first["metadata"]["name"]
            ),
            None,
        ),
        what="a new approval",
        timeout=60,
    )
    assert second["spec"]["images"] == [f"registry.b/go-app:master_{sha}"]
    assert second["spec"]["digest"] != first["spec"]["digest"]
    ok = conveyor_as(
        clusters, "ci-as-approver1", "approve", second["metadata"]["name"], "-n", conveyor.ns
    )
    assert ok.returncode == 0, ok.stderr
    done = conveyor.wait_finished("i1", timeout=90)
    assert phase(done) == "Succeeded", succeeded_condition(done)
    image = deployment(clusters, "prod", target_namespace).spec.template.spec.containers[0].image
    assert image == f"registry.b/go-app:master_{sha}"


def test_a_run_with_an_inline_pipeline_follows_its_environment_changing(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    inline = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": "inline"},
        "spec": {
            "pipelineSpec": {"jobs": [job("release", environment={"name": "prod"})]},
            "revision": {"ref": "master"},
        },
    }
    conveyor.create(inline)
    conveyor.wait_run("inline", lambda r: phase(r) == "WaitingForApproval", timeout=60)
    # The platform team lifts prod's protection: the waiting run goes on at once.
    protect_prod(clusters, conveyor.ns, target_namespace, "--required-approvals", "0")
    done = conveyor.wait_finished("inline", timeout=60)
    assert phase(done) == "Succeeded"
    assert job_status(done, "release")["phase"] == "Succeeded"


def test_a_resource_group_runs_one_job_at_a_time_across_runs(conveyor: Conveyor) -> None:
    migrate = job("migrate", resourceGroup="migrations", **lasts("8s"))
    conveyor.create(pipeline("grouped", [migrate]))
    conveyor.create(run("g1", "grouped"))
    conveyor.wait_run("g1", lambda r: phase(r) == "Running" and running(r, "migrate"), timeout=60)
    conveyor.create(run("g2", "grouped"))
    held = conveyor.wait_run(
        "g2",
        lambda r: succeeded_condition(r).get("reason") == "WaitingForResource",
        timeout=30,
    )
    assert "resource group 'migrations' is busy: run g1" in succeeded_condition(held)["message"]
    assert conveyor.jobs("g2") == []
    first = conveyor.wait_finished("g1", timeout=60)
    second = conveyor.wait_finished("g2", timeout=60)
    # Unlike an environment, a resource group supersedes nobody: both ran, one after the other.
    assert phase(first) == phase(second) == "Succeeded"
    entry = job_status(second, "migrate")
    assert entry["resourceGroup"] == "migrations"
    assert entry["startTime"] >= job_status(first, "migrate")["completionTime"]


def test_a_missing_or_malformed_kubeconfig_fails_the_deploy_and_says_why(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo
) -> None:
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["jobs"] = pipe["spec"]["jobs"][:2]  # build and the test deploy
    conveyor.create(pipe)
    core = client.CoreV1Api(clusters.api("ci"))
    broken = "clusters: [unclosed\n  token: s3cr3t-t0ken\n"
    secret = f"{conveyor.ns}.test.kubeconfig"  # in the credentials namespace
    core.patch_namespaced_secret(secret, OPERATOR_NS, {"stringData": {"kubeconfig": broken}})
    conveyor.create(run("k1", "go-app", ref="master"))
    done = conveyor.wait_finished("k1", timeout=90)
    entry = job_status(done, "k8s-deploy-test")
    assert (phase(done), entry["reason"]) == ("Failed", "InvalidKubeconfig")
    assert "not valid YAML" in entry["message"]
    assert "s3cr3t" not in json.dumps(done)  # the contents are never quoted

    core.delete_namespaced_secret(secret, OPERATOR_NS)
    conveyor.create(run("k2", "go-app", ref="master"))
    done = conveyor.wait_finished("k2", timeout=90)
    entry = job_status(done, "k8s-deploy-test")
    assert entry["reason"] == "InvalidKubeconfig"
    assert f"{secret} not found" in entry["message"]


def test_an_environment_named_by_a_variable_is_gated_and_deployed_as_the_one_it_names(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    deploy = {"name": "deploy", "stage": "deploy", "deploy": {}, "environment": {"name": "$TARGET"}}
    conveyor.create(pipeline("to", [deploy], stages=["deploy"], source={"url": app.url}))
    conveyor.create(run("to-test", "to", ref="master", variables={"TARGET": "test"}))
    conveyor.create(run("to-prod", "to", ref="master", variables={"TARGET": "prod"}))
    conveyor.create(run("to-bad", "to", ref="master", variables={"TARGET": "Not A Name"}))

    done = conveyor.wait_finished("to-test", timeout=90)
    assert phase(done) == "Succeeded"
    assert job_status(done, "deploy")["environment"] == "test"
    assert deployment(clusters, "test", target_namespace).metadata.name == "go-app"
    # prod's protection follows the expanded name: an Approval for prod, nothing deployed.
    waiting = conveyor.wait_run("to-prod", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(waiting, "deploy")["environment"] == "prod"
    assert approval_of(conveyor, "to-prod")["spec"]["environment"] == "prod"
    prod_apps = client.AppsV1Api(clusters.api("prod"))
    assert prod_apps.list_namespaced_deployment(target_namespace).items == []
    # A GitLab name no Environment serves: a plain environment, and a native deploy to it
    # cannot go anywhere, so it fails saying so.
    bad = conveyor.wait_finished("to-bad", timeout=60)
    assert phase(bad) == "Failed"
    entry = job_status(bad, "deploy")
    assert (entry["environment"], entry["reason"]) == ("Not A Name", "DeployFailed")
    assert "serves environment 'Not A Name'" in entry["message"]


def test_a_resource_group_named_by_a_variable_is_one_lock_per_branch(conveyor: Conveyor) -> None:
    migrate = job("migrate", resourceGroup="db-$CI_COMMIT_REF_SLUG", **lasts("8s"))
    conveyor.create(pipeline("per-branch", [migrate]))
    conveyor.create(run("b-main", "per-branch", ref="main"))
    conveyor.wait_run("b-main", lambda r: running(r, "migrate"), timeout=60)
    # Another branch: another lock, it runs at once; the same branch waits.
    conveyor.create(run("b-dev", "per-branch", ref="dev"))
    conveyor.create(run("b-main-2", "per-branch", ref="main"))
    dev = conveyor.wait_run("b-dev", lambda r: running(r, "migrate"), timeout=30)
    assert job_status(dev, "migrate")["resourceGroup"] == "db-dev"
    held = conveyor.wait_run(
        "b-main-2",
        lambda r: succeeded_condition(r).get("reason") == "WaitingForResource",
        timeout=30,
    )
    assert "resource group 'db-main' is busy: run b-main" in succeeded_condition(held)["message"]
    assert phase(conveyor.wait_finished("b-main-2", timeout=90)) == "Succeeded"


def test_the_image_a_run_built_is_deployed_and_approved_by_its_digest(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    digest = "sha256:" + "d1" * 32
    spec = pipeline_with_deploys(app)
    spec["spec"]["jobs"][0] = {
        "name": "build",
        "stage": "build",
        "build": {
            "image": "registry.example.com/encompass/go-app:${CI_COMMIT_REF_NAME}_${CI_COMMIT_SHA}",
            "context": "src/",
        },
        "podAnnotations": {"kwok.conveyor.dev/message": digest},  # what buildctl would report
    }
    conveyor.create(spec)
    before = app.head()
    after = app.commit("v3", {"src/server.go": "\n// v3\n"})
    revision = {"ref": "master", "sha": after, "beforeSha": before}
    conveyor.create(run("dg", "go-app", ref="master", revision=revision))
    waiting = conveyor.wait_run("dg", lambda r: phase(r) == "WaitingForApproval", timeout=90)
    assert job_status(waiting, "build")["imageDigest"] == digest
    pinned = f"registry.example.com/encompass/go-app:master_{after}@{digest}"
    # The tag can move; the digest cannot: test runs exactly what was built, and prod's
    # Approval names it.
    test_dep = deployment(clusters, "test", target_namespace)
    assert test_dep.spec.template.spec.containers[0].image == pinned
    assert approval_of(conveyor, "dg")["spec"]["images"] == [pinned]


def test_review_apps_one_environment_per_branch_then_stopped(
    conveyor: Conveyor, clusters: Clusters, app: GitRepo, target_namespace: str
) -> None:
    # docs.gitlab.com/ci/environments/#create-a-dynamic-environment: review/$CI_COMMIT_REF_NAME,
    # served here by one Environment for the family review/*, a namespace per review app.
    add_environment(
        clusters,
        conveyor.ns,
        "review",
        "test",
        "rv-$CI_ENVIRONMENT_SLUG",
        "--serves",
        "review/*",
        "--var",
        "APP_FQDN=review.test.local",
    )
    not_master = [{"if": '$CI_COMMIT_BRANCH != "master"'}]
    review_env = {"name": "review/$CI_COMMIT_REF_NAME"}
    pipe = pipeline_with_deploys(app)
    pipe["spec"]["stages"] = ["build", "deploy-test"]
    pipe["spec"]["jobs"] = [
        pipe["spec"]["jobs"][0],
        {
            "name": "review",
            "stage": "deploy-test",
            "deploy": {},
            "environment": review_env,
            "rules": not_master,
        },
        {
            "name": "stop-review",
            "stage": "deploy-test",
            "deploy": {},
            "when": "manual",
            "environment": {**review_env, "action": "stop"},
            "rules": not_master,
        },
        # An environment no Environment serves: a plain job, as GitLab runs it.
        job("docs", "deploy-test", environment={"name": "Docs/Preview"}),
    ]
    conveyor.create(pipe)
    on_master = conveyor.wait_finished(
        conveyor.create(run("m1", "go-app", ref="master"))["metadata"]["name"], timeout=90
    )
    assert phase(on_master) == "Succeeded", succeeded_condition(on_master)
    assert job_status(on_master, "review")["phase"] == "Skipped"

    app.git("checkout", "-q", "-b", "feature/login")
    app.commit("login page", {"src/server.go": "\n// login\n"})
    slug = environment_slug("review/feature/login")
    target = f"rv-{slug}"
    clusters.kubectl("test", "create", "namespace", target)
    try:
        conveyor.create(run("f1", "go-app", ref="feature/login"))
        done = conveyor.wait_finished("f1", timeout=120)
        assert phase(done) == "Succeeded", succeeded_condition(done)
        assert job_status(done, "review")["environment"] == "review/feature/login"
        assert job_status(done, "stop-review")["phase"] == "Manual"
        assert job_status(done, "docs")["phase"] == "Succeeded"
        assert deployment(clusters, "test", target) is not None
        env = conveyor.api.get_namespaced_custom_object(
            GROUP, VERSION, conveyor.ns, "environments", "review"
        )
        assert env["status"]["lastDeployment"]["environment"] == "review/feature/login"

        stop = conveyor_as(clusters, "ci", "play", "f1", "stop-review", "-n", conveyor.ns)
        assert stop.returncode == 0, stop.stderr
        stopped = conveyor.wait_run(
            "f1",
            lambda r: (
                phase(r) == "Succeeded" and job_status(r, "stop-review")["phase"] == "Succeeded"
            ),
            timeout=90,
        )
        (record,) = [d for d in stopped["status"]["deployments"] if d["job"] == "stop-review"]
        assert record["pruned"] > 0 and record["message"].startswith("stopped review/feature/login")
        apps = client.AppsV1Api(clusters.api("test"))
        assert apps.list_namespaced_deployment(target).items == []
    finally:
        clusters.kubectl("test", "delete", "namespace", target, "--wait=false")
