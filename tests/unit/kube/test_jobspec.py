"""The batch/v1 Job built for one attempt: identity, pod shape, variables, and the script's
GitLab semantics (run for real with /bin/sh)."""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata

import pytest

from conveyor.api import ModelError, PipelineRun, parse_pipeline_spec
from conveyor.api.pipeline import Service
from conveyor.cli.main import build_parser
from conveyor.cli.operator_cmd import job_options
from conveyor.engine import job_name, label_value, ref_slug
from conveyor.engine.attempts import parse_findings
from conveyor.engine.variables.expand import expand
from conveyor.engine.variables.job import with_names_expanded
from conveyor.kube.builds import BUILD_SCRIPT
from conveyor.kube.jobspec import SCRIPT_START_ALLOWANCE_SECONDS, JobOptions, build_job
from conveyor.kube.observe import needs_pod_details, observe_job, pod_ended
from conveyor.kube.scans import GITLAB_TEMPLATE, SCAN_REPORT, SCAN_SCRIPT, SCAN_TEMPLATE
from conveyor.kube.services import DOCKER_READY, is_docker_daemon

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def make(job_fields=None, spec_fields=None, run_fields=None, run_name="app-main-1", pipeline="app"):
    job = {"name": "unit tests", "script": ["make test"], **(job_fields or {})}
    spec = parse_pipeline_spec({"jobs": [job], **(spec_fields or {})})
    run_spec = {"pipelineRef": {"name": pipeline}, "revision": {"ref": "feature/Login-Page"}}
    run_spec.update(run_fields or {})
    run = PipelineRun.from_dict(
        {"metadata": {"name": run_name, "namespace": "ci", "uid": "uid-123"}, "spec": run_spec}
    )
    return run, spec, spec.jobs[0]


def build(job_fields=None, spec_fields=None, run_fields=None, attempt=1, options=None, **kw):
    run, spec, job = make(job_fields, spec_fields, run_fields, **kw)
    return build_job(run=run, pipeline=spec, job=job, attempt=attempt, options=options)


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def script_container(job):
    return job["spec"]["template"]["spec"]["containers"][0]


# --- identity -------------------------------------------------------------------------------


def test_identity_labels_annotations_owner():
    job = build(attempt=2)
    meta = job["metadata"]
    uid = meta["ownerReferences"][0]["uid"]
    # The run's UID is in the name's hash: a run made again under its name meets no old Job.
    assert meta["name"] == job_name("app-main-1", "unit tests", 2, uid)
    assert meta["name"] != job_name("app-main-1", "unit tests", 2, uid + "x")
    assert meta["namespace"] == "ci"
    assert meta["labels"] == {
        "conveyor.dev/pipelinerun": "app-main-1",
        "conveyor.dev/pipeline": "app",
        "app.kubernetes.io/managed-by": "conveyor",
    }
    assert meta["annotations"] == {"conveyor.dev/job": "unit tests", "conveyor.dev/attempt": "2"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "conveyor.dev/v1alpha1",
            "kind": "PipelineRun",
            "name": "app-main-1",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 3600 + SCRIPT_START_ALLOWANCE_SECONDS
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "workspace", "emptyDir": {}} in pod["volumes"]
    assert spec["template"]["metadata"]["labels"]["conveyor.dev/pipelinerun"] == "app-main-1"


def test_pod_labels_annotations_timeout_service_account_resources():
    job = build(
        {
            "podLabels": {"team": "web", "conveyor.dev/pipelinerun": "spoofed"},
            "podAnnotations": {"sidecar.istio.io/inject": "false"},
            "timeout": "1h30m",
            "serviceAccountName": "deployer",
            "resources": {"limits": {"memory": "1Gi", "cpu": 2}},
        }
    )
    template = job["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "web"
    assert template["metadata"]["labels"]["conveyor.dev/pipelinerun"] == "app-main-1"
    assert template["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert job["spec"]["activeDeadlineSeconds"] == 5400 + SCRIPT_START_ALLOWANCE_SECONDS
    assert template["spec"]["serviceAccountName"] == "deployer"
    assert "automountServiceAccountToken" not in template["spec"]
    assert script_container(job)["resources"] == {"limits": {"memory": "1Gi", "cpu": 2}}


REAL_NODE = {"conveyor.dev/node": "real"}
REAL_NODE_TOLERATION = {"key": "conveyor.dev/real-node", "value": "true", "effect": "NoSchedule"}


def test_no_node_choice_leaves_the_pod_to_the_scheduler():
    pod = build()["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


def test_job_node_selector_and_tolerations_reach_the_pod():
    pod = build({"nodeSelector": REAL_NODE, "tolerations": [REAL_NODE_TOLERATION]})["spec"][
        "template"
    ]["spec"]
    assert pod["nodeSelector"] == REAL_NODE
    assert pod["tolerations"] == [{"operator": "Equal", **REAL_NODE_TOLERATION}]


def test_pipeline_node_choice_is_the_default_that_a_job_replaces():
    spec = {
        "nodeSelector": REAL_NODE,
        "tolerations": [{"key": "conveyor.dev/real-node", "operator": "Exists"}],
    }
    pod = build(spec_fields=spec)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == REAL_NODE
    assert pod["tolerations"] == [{"key": "conveyor.dev/real-node", "operator": "Exists"}]
    # A job's own values replace the defaults whole; empty ones clear them.
    own = build(
        {"nodeSelector": {"disk": "ssd"}, "tolerations": [{"operator": "Exists"}]},
        spec_fields=spec,
    )["spec"]["template"]["spec"]
    assert own["nodeSelector"] == {"disk": "ssd"}
    assert own["tolerations"] == [{"operator": "Exists"}]
    cleared = build({"nodeSelector": {}, "tolerations": []}, spec_fields=spec)["spec"]["template"]
    assert "nodeSelector" not in cleared["spec"] and "tolerations" not in cleared["spec"]


@pytest.mark.parametrize(
    ("toleration", "field"),
    [({"key": "k", "operator": "Exists", "value": "v"}, "value"), ({"value": "v"}, "key")],
)
def test_a_toleration_that_cannot_be_is_refused(toleration, field):
    with pytest.raises(ModelError) as refused:
        build({"tolerations": [toleration]})
    assert field in str(refused.value)


def test_toleration_seconds_and_effect_pass_through():
    toleration = {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
    pod = build({"tolerations": [toleration]})["spec"]["template"]["spec"]
    assert pod["tolerations"] == [toleration]


def test_long_names_stay_valid_label_values():
    job = build(run_name="r" * 63, pipeline="p" * 200)
    for key, value in job["metadata"]["labels"].items():
        assert len(value) <= 63 and LABEL_VALUE.match(value), key
    assert DNS_LABEL.match(job["metadata"]["name"])
    assert label_value("p" * 200) != label_value("p" * 199)


ODD_NAMES = [
    "build",
    "Build",
    "build ",
    "unit tests",
    "unit:tests",
    "unit-tests",
    "UNIT TESTS",
    "déploiement",
    "deploiement",
    "测试",
    "🚀",
    ":",
    "",
    "a" * 255,
    "a" * 254 + "b",
    "x" * 100 + ":" + "y" * 100,
]


def test_job_names_are_valid_and_distinct():
    runs = ["r", "R" * 63, "my-app-main-12345", "z" * 63]
    seen = {}
    for run in runs:
        for name in ODD_NAMES:
            for attempt in (1, 2, 3):
                result = job_name(run, name, attempt)
                assert len(result) <= 63, result
                assert DNS_LABEL.match(result), result
                key = (run, name, attempt)
                assert seen.setdefault(result, key) == key, f"collision: {result}"
                assert job_name(run, name, attempt) == result  # deterministic
    assert job_name("run", "unit tests", 1).startswith("run-unit-tests-1-")


def test_ref_slug_matches_gitlab():
    assert ref_slug("feature/Login-Page") == "feature-login-page"
    assert ref_slug("-x-") == "x"
    assert len(ref_slug("a" * 100)) == 63
    assert ref_slug("v1.2.3") == "v1-2-3"


# --- variables ----------------------------------------------------------------------------


def test_predefined_variables():
    run_fields = {
        "revision": {"ref": "feature/Login-Page", "sha": "0123456789" * 4},
        "pipelineSource": "push",
    }
    env = env_of(script_container(build(run_fields=run_fields)))
    assert env["CI"] == "true" and env["CONVEYOR"] == "true"
    assert env["GITLAB_CI"] == "true"  # issue 12: scripts test it, in the job's env too
    assert env["CI_COMMIT_SHA"] == "0123456789" * 4
    assert env["CI_COMMIT_SHORT_SHA"] == "01234567"
    assert env["CI_COMMIT_REF_NAME"] == "feature/Login-Page"
    assert env["CI_COMMIT_REF_SLUG"] == "feature-login-page"
    assert env["CI_COMMIT_BEFORE_SHA"] == "0" * 40
    assert env["CI_PIPELINE_ID"] == "uid-123"
    assert env["CI_PIPELINE_SOURCE"] == "push"
    assert env["CI_JOB_NAME"] == "unit tests"
    assert env["CI_JOB_STAGE"] == "test"
    assert env["CI_PROJECT_NAME"] == "app"
    assert env["CI_PROJECT_DIR"] == "/builds/app"
    assert "CI_REGISTRY" not in env


def test_registry_variables_from_options():
    run, spec, job = make()
    options = JobOptions(registry="reg.example:5000", registry_image="reg.example:5000/g/app")
    env = env_of(
        script_container(build_job(run=run, pipeline=spec, job=job, attempt=1, options=options))
    )
    assert env["CI_REGISTRY"] == "reg.example:5000"
    assert env["CI_REGISTRY_IMAGE"] == "reg.example:5000/g/app"


def test_variable_precedence_run_over_job_over_pipeline_over_predefined():
    env = env_of(
        script_container(
            build(
                {"variables": {"B": "job", "C": "job", "CI_JOB_STAGE": "mine"}},
                {"variables": {"A": "pipeline", "B": "pipeline", "C": "pipeline"}},
                {"variables": {"C": "run"}},
            )
        )
    )
    assert (env["A"], env["B"], env["C"]) == ("pipeline", "job", "run")
    assert env["CI_JOB_STAGE"] == "mine"
    names = [e["name"] for e in script_container(build())["env"]]
    assert len(names) == len(set(names))


def test_expansion_in_values_and_images():
    job = build(
        {
            "variables": {
                "TAG": "$CI_COMMIT_REF_SLUG-${SUFFIX}",
                "PRICE": "$$5",
                "GHOST": "[$UNDEFINED]",
                "SUB": "$(date)",
            },
            "image": "$REGISTRY/builder:${TAG}",
        },
        {"variables": {"REGISTRY": "reg.example", "SUFFIX": "x"}},
    )
    container = script_container(job)
    env = env_of(container)
    # Kubernetes turns $$ back into $; what the process sees is the right-hand side.
    assert env["TAG"] == "feature-login-page-x"
    assert env["PRICE"] == "$$5"  # -> "$5"
    assert env["GHOST"] == "[]"
    assert env["SUB"] == "$$(date)"  # -> "$(date)", not expanded by Kubernetes
    assert container["image"] == "reg.example/builder:feature-login-page-x"


def test_expand_function():
    values = {"A": "1", "B_2": "two"}
    assert expand("$A ${B_2} $$A $C ${C} $ end$", values.get) == "1 two $A   $ end$"


def test_secret_variables_are_references_only():
    job = build(
        {
            "secretVariables": [
                {"name": "KUBECONFIG", "secretName": "kube", "key": "config", "file": True},
                {"name": "TOKEN", "secretName": "tok", "key": "token"},
            ],
            "variables": {"AUTH": "Bearer $TOKEN", "TOKEN": "ignored-yaml-value"},
        },
        {"secretVariables": [{"name": "TOKEN", "secretName": "pipeline-tok", "key": "t"}]},
    )
    container = script_container(job)
    env = container["env"]
    names = [e["name"] for e in env]
    token = env[names.index("TOKEN")]
    assert token == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}},
    }
    assert names.index("TOKEN") < names.index("AUTH")  # $(TOKEN) must be defined first
    assert env[names.index("AUTH")]["value"] == "Bearer $(TOKEN)"
    path = env[names.index("KUBECONFIG")]["value"]
    assert path == "/conveyor/secret-variables/KUBECONFIG/KUBECONFIG"
    pod = job["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"] == {
        "secretName": "kube",
        "items": [{"key": "config", "path": "KUBECONFIG"}],
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {
        "name": volume["name"],
        "mountPath": "/conveyor/secret-variables/KUBECONFIG",
        "readOnly": True,
    }
    assert "ignored-yaml-value" not in json.dumps(job)
    assert names.count("TOKEN") == 1


def test_run_variables_override_secret_variables():
    env = env_of(
        script_container(
            build(
                {"secretVariables": [{"name": "TOKEN", "secretName": "t", "key": "k"}]},
                run_fields={"variables": {"TOKEN": "from-run"}},
            )
        )
    )
    assert env["TOKEN"] == "from-run"


# --- checkout and services ----------------------------------------------------------------


def test_no_source_no_checkout():
    pod = build()["spec"]["template"]["spec"]
    assert "initContainers" not in pod


def test_checkout_then_services_as_native_sidecars():
    job = build(
        {
            "services": [
                {"name": "docker:27-dind", "alias": "docker", "command": ["--tls=false"]},
                {"name": "registry.example.com/team/postgres:16", "variables": {"PGDATA": "/d"}},
                {"name": "redis:7", "entrypoint": ["redis-server"]},
            ]
        },
        {"source": {"url": "https://git.example.com/team/web-app.git"}},
        {"revision": {"ref": "main", "sha": "f" * 40}},
        options=JobOptions(privileged_services=True),
    )
    pod = job["spec"]["template"]["spec"]
    inits = pod["initContainers"]
    assert [c["name"] for c in inits] == [
        "checkout",
        "docker",
        "registry-example-com-team-postgres-16",
        "redis-7",
    ]
    checkout = inits[0]
    assert checkout["image"] == "alpine/git:2.47.2"
    assert "restartPolicy" not in checkout
    checkout_env = env_of(checkout)
    assert checkout_env["CONVEYOR_SOURCE_URL"] == "https://git.example.com/team/web-app.git"
    assert checkout_env["CONVEYOR_CHECKOUT_SHA"] == "f" * 40
    assert checkout_env["CI_PROJECT_DIR"] == "/builds/web-app"
    for sidecar in inits[1:]:
        assert sidecar["restartPolicy"] == "Always"
        assert len(sidecar["name"]) <= 63
    assert inits[1]["args"] == ["--tls=false"] and "command" not in inits[1]
    assert inits[3]["command"] == ["redis-server"]
    assert env_of(inits[2])["PGDATA"] == "/d"
    assert env_of(inits[2])["CI_JOB_NAME"] == "unit tests"
    hostnames = pod["hostAliases"][0]["hostnames"]
    assert pod["hostAliases"][0]["ip"] == "127.0.0.1"
    assert "docker" in hostnames and "redis" in hostnames
    assert "registry.example.com-team-postgres" in hostnames
    assert script_container(job)["workingDir"] == "/builds/web-app"


def test_services_with_a_healthcheck_port_are_waited_for_after_they_start():
    """GitLab's Kubernetes executor waits for a service's HEALTHCHECK_TCP_PORT (its own variable
    or the job's) before the script: an init container after the services, the transfer binary
    dialling each port for at most the operator's wait (default GitLab's 30 s)."""
    job = build(
        {
            "services": [
                {
                    "name": "postgres:16",
                    "alias": "db",
                    "variables": {"HEALTHCHECK_TCP_PORT": "5432"},
                },
                {"name": "redis:7"},  # the job's HEALTHCHECK_TCP_PORT: services get job variables
                {"name": "docker:27-dind", "alias": "docker"},  # its startup probe waits already
                {"name": "web:1", "variables": {"HEALTHCHECK_TCP_PORT": "${WEB_PORT}"}},
            ],
            "variables": {"HEALTHCHECK_TCP_PORT": "6379", "WEB_PORT": "8080"},
        },
        options=JobOptions(privileged_services=True, wait_for_services_seconds=45),
    )
    inits = job["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["db", "redis-7", "docker", "web-1", "wait-for-services"]
    wait = inits[-1]
    assert "restartPolicy" not in wait  # runs to its end before the script starts
    assert wait["image"] == "conveyor-transfer:0.3.0"
    assert wait["command"] == [
        "/bin/conveyor-transfer", "wait-services", "45", "db=5432", "redis-7=6379", "web-1=8080",
    ]  # fmt: skip


def test_no_healthcheck_port_no_wait_and_a_service_may_not_take_conveyors_names():
    pod = build({"services": [{"name": "postgres:16", "alias": "artifacts"}]})
    inits = pod["spec"]["template"]["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["artifacts-2"]
    named = build({"services": [{"name": "x:1", "alias": "wait-for-services"}]})
    assert [c["name"] for c in named["spec"]["template"]["spec"]["initContainers"]] == [
        "wait-for-services-2"
    ]


def test_the_operator_option_sets_the_wait():
    args = build_parser().parse_args(["operator", "--wait-for-services-timeout", "2m"])
    assert job_options(args).wait_for_services_seconds == 120
    default = build_parser().parse_args(["operator"])
    assert job_options(default).wait_for_services_seconds == 30


def test_services_get_no_secrets_and_no_privilege_unless_the_operator_allows_it():
    fields = {
        "services": [{"name": "postgres:16"}, {"name": "redis:7"}],
        "secretVariables": [{"name": "TOKEN", "secretName": "tok", "key": "t"}],
        "variables": {"PLAIN": "yes"},
    }
    run, spec, job = make(fields)
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1)["spec"]["template"]["spec"]
    for sidecar in pod["initContainers"]:
        assert "TOKEN" not in env_of(sidecar) and env_of(sidecar)["PLAIN"] == "yes"
        assert "securityContext" not in sidecar
    assert "TOKEN" in env_of(pod["containers"][0])

    allowed = JobOptions(privileged_services=True)
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1, options=allowed)
    pod = pod["spec"]["template"]["spec"]
    assert [c["securityContext"] for c in pod["initContainers"]] == [{"privileged": True}] * 2
    assert "securityContext" not in pod["containers"][0]


@pytest.mark.parametrize(
    ("image", "daemon"),
    [
        ("docker:27-dind", True),
        ("docker:dind-rootless", True),
        ("docker.io/library/docker:stable-dind", True),
        ("docker:27-dind@sha256:" + "a" * 64, True),
        ("docker:27-cli", False),
        ("docker", False),
        ("registry.example.com/docker:dind", False),
        ("redis:7", False),
    ],
)
def test_docker_daemons_are_known_by_image(image, daemon):
    assert is_docker_daemon(Service(name=image)) is daemon


def test_a_docker_daemon_shares_its_certificates_and_holds_the_script_until_it_answers():
    run, spec, job = make({"services": [{"name": "docker:27-dind", "alias": "docker"}]})
    options = JobOptions(privileged_services=True, registry_mirror="10.0.0.1:5000")
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1, options=options)
    pod = pod["spec"]["template"]["spec"]
    dind, script = pod["initContainers"][0], pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["docker-certs"]["emptyDir"] == {"medium": "Memory"}
    assert {"name": "docker-storage", "mountPath": "/var/lib/docker"} in dind["volumeMounts"]
    assert {"name": "docker-certs", "mountPath": "/certs/client"} in dind["volumeMounts"]
    assert {
        "name": "docker-certs", "mountPath": "/certs/client", "readOnly": True
    } in script["volumeMounts"]  # fmt: skip
    probe = dind["startupProbe"]
    assert probe["exec"]["command"][:2] == ["/bin/sh", "-c"]
    assert "--tlsverify" in probe["exec"]["command"][2] and "2375" in probe["exec"]["command"][2]
    # The daemon pulls the public images through the platform's mirror, over plain HTTP.
    assert env_of(dind)["CONVEYOR_REGISTRY_MIRROR"] == "10.0.0.1:5000"


def test_a_docker_daemon_without_privileged_services_fails_the_job_saying_why():
    run, spec, job = make({"services": [{"name": "docker:27-dind", "alias": "docker"}]})
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1)["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "hostAliases" not in pod
    script = pod["containers"][0]
    assert script["image"] == JobOptions().default_image
    proc = subprocess.run(
        [*script["command"], *script["args"]], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert "--privileged-services" in proc.stderr and "docker:27-dind" in proc.stderr


def test_the_docker_readiness_probe_is_valid_shell(tmp_path):
    # No daemon here: the probe must fail cleanly (exit non-zero), in both TLS modes.
    for certdir in ("/certs", ""):
        proc = subprocess.run(
            ["/bin/sh", "-c", DOCKER_READY],
            env={"DOCKER_TLS_CERTDIR": certdir, "PATH": str(tmp_path)},
            capture_output=True,
            text=True,
        )
        assert proc.returncode != 0 and "syntax error" not in proc.stderr


def test_checkout_credentials_are_mounted_not_copied():
    job = build(
        spec_fields={
            "source": {"url": "git@git.example.com:team/app.git", "credentialsSecret": "git"}
        }
    )
    pod = job["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "git-credentials")
    assert volume["secret"]["secretName"] == "git"
    env = env_of(pod["initContainers"][0])
    assert env["GIT_CONFIG_KEY_0"] == "credential.helper"


def test_checkout_script_clones_and_checks_out(tmp_path):
    git = subprocess.run(["git", "--version"], capture_output=True)
    if git.returncode != 0:  # pragma: no cover - git is part of the dev environment
        pytest.fail("git is required")
    origin = tmp_path / "origin"
    origin.mkdir()
    cmds = [
        ["git", "init", "-q", "-b", "main"],
        [
            "git",
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "one",
        ],
        ["git", "tag", "v1"],
        [
            "git",
            "-c",
            "user.email=a@b",
            "-c",
            "user.name=a",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "two",
        ],
    ]
    for cmd in cmds:
        subprocess.run(cmd, cwd=origin, check=True)
    tag_sha = subprocess.run(
        ["git", "rev-parse", "v1"], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()
    job = build(
        spec_fields={"source": {"url": f"file://{origin}"}}, run_fields={"revision": {"ref": "v1"}}
    )
    checkout = job["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e["value"].replace("$$", "$") for e in checkout["env"]}
    env["CI_PROJECT_DIR"] = str(tmp_path / "builds" / "app")
    env["PATH"] = "/usr/bin:/bin:/usr/local/bin"
    (tmp_path / "builds").mkdir()
    subprocess.run(
        checkout["command"], env=env, cwd=tmp_path / "builds", check=True, capture_output=True
    )
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=env["CI_PROJECT_DIR"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == tag_sha


# --- observing Jobs -------------------------------------------------------------------------


def test_observe_failed_job_with_exit_code_and_deadline():
    job = build()
    job["status"] = {
        "startTime": "2025-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "lastTransitionTime": "2025-01-01T00:01:00Z",
            }
        ],
    }
    pod = {
        "status": {
            "containerStatuses": [
                {"name": "script", "state": {"terminated": {"exitCode": 2, "message": "boom\n"}}}
            ]
        }
    }
    # Only a failure's pod is read (pods are not watched): without it the exit code is unknown.
    blind = observe_job(job)
    assert blind is not None and needs_pod_details(blind)
    assert not pod_ended({"status": {}}) and pod_ended(pod)
    seen = observe_job(job, [pod])
    assert seen is not None and not needs_pod_details(seen)
    assert (seen.pipeline_job, seen.attempt, seen.state) == ("unit tests", 1, "failed")
    assert (seen.exit_code, seen.message) == (2, "boom")
    job["status"]["conditions"][0]["reason"] = "DeadlineExceeded"
    timed_out = observe_job(job, [])
    assert timed_out.reason == "DeadlineExceeded" and not needs_pod_details(timed_out)
    job["status"] = {"active": 1}
    assert observe_job(job).state == "active"
    assert observe_job({"metadata": {"name": "foreign"}}) is None


def test_unicode_folding_keeps_names_readable():
    assert unicodedata.normalize("NFKD", "é") != "é"
    assert job_name("run", "déploiement", 1).startswith("run-deploiement-1-")


# --- variables in environment names and resource groups ----------------------------------


def expanded(job_fields, run_fields=None):
    run, spec, _ = make(job_fields, run_fields=run_fields)
    return with_names_expanded(spec, run, JobOptions()).jobs[0]


def test_environment_names_and_resource_groups_take_the_jobs_variables():
    job = expanded(
        {
            "environment": {"name": "$TARGET", "url": "https://$TARGET.example.com"},
            "resourceGroup": "review/$CI_COMMIT_REF_SLUG",
            "variables": {"TARGET": "staging"},
        },
        {"variables": {"TARGET": "prod"}},  # run variables rank highest
    )
    assert job.environment.name == "prod"
    assert job.environment.url == "https://$TARGET.example.com"  # CI_ENVIRONMENT_URL expands it
    assert job.resource_group == "review/feature-login-page"


def test_names_without_variables_are_left_as_they_are():
    run, spec, _ = make({"environment": {"name": "prod"}, "resourceGroup": "db"})
    assert with_names_expanded(spec, run, JobOptions()) == spec


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"environment": {"name": "$NOPE"}},
            "jobs[unit tests].environment.name: '$NOPE' expands to ''",
        ),
        (
            {"environment": {"name": "$T"}, "variables": {"T": "x" * 256}},
            "an environment name needs 1-255 characters",
        ),
        ({"resourceGroup": "$NOPE"}, "jobs[unit tests].resourceGroup: '$NOPE' expands to ''"),
    ],
)
def test_a_name_that_expands_to_no_name_is_an_error_naming_the_job(fields, words):
    with pytest.raises(ModelError) as e:
        expanded(fields)
    assert words in str(e.value)


def test_environment_names_are_gitlabs_free_form_names():
    # docs.gitlab.com/ci/environments/#create-a-dynamic-environment: review/$CI_COMMIT_REF_SLUG
    run, spec, _ = make({"environment": {"name": "Review/$T"}, "variables": {"T": "Feature_X"}})
    job = with_names_expanded(spec, run, JobOptions()).jobs[0]
    assert job.environment is not None and job.environment.name == "Review/Feature_X"
    # A job the rules leave out never fails the run, whatever its name expands to.
    run, spec, _ = make({"environment": {"name": "$NOPE"}})
    assert with_names_expanded(spec, run, JobOptions(), frozenset({"unit tests"})) == spec


def test_the_operators_flags_make_the_job_options():
    parse = build_parser().parse_args
    assert job_options(parse(["operator"])) == JobOptions()
    options = job_options(parse(["operator", "--privileged-services", "--registry", "r.example"]))
    assert options.privileged_services and options.registry == "r.example"
    argv = ["operator", "--registry-mirror", "m:5000", "--insecure-registry", "a:1"]
    options = job_options(parse([*argv, "--insecure-registry", "b:2"]))
    assert options.registry_mirror == "m:5000" and options.insecure_registries == ("a:1", "b:2")


# --- build jobs ----------------------------------------------------------------------------


def build_pod(build, **job_fields):
    run, spec, job = make(
        {"script": [], "build": build, **job_fields},
        {"source": {"url": "https://git.example.com/team/web-app.git"}},
        {"revision": {"ref": "main", "sha": "f" * 40}},
    )
    return build_job(run=run, pipeline=spec, job=job, attempt=1)["spec"]["template"]["spec"]


def test_a_build_runs_buildkit_rootless_in_the_job_container():
    pod = build_pod(
        {
            "image": "$CI_REGISTRY_IMAGE:${CI_COMMIT_SHORT_SHA}",
            "context": "src/",
            "buildArgs": {"GO": "1.22", "PRICE": "$$5"},
            "registrySecret": "regcred",
        },
        variables={"CI_REGISTRY_IMAGE": "reg.example/team/app"},
        secretVariables=[{"name": "TOKEN", "secretName": "tok", "key": "t"}],
    )
    (build,) = pod["containers"]
    assert build["name"] == "script" and build["image"] == "moby/buildkit:v0.19.0-rootless"
    assert build["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
    }
    assert "privileged" not in build["securityContext"]
    env = env_of(build)
    assert env["CONVEYOR_BUILD_IMAGE"] == "reg.example/team/app:ffffffff"
    assert env["CONVEYOR_BUILD_CONTEXT"] == "/builds/web-app/src"
    assert env["CONVEYOR_BUILD_DOCKERFILE_DIR"] == "/builds/web-app/src"
    assert env["CONVEYOR_BUILD_DOCKERFILE"] == "Dockerfile"
    assert env["CONVEYOR_BUILD_PUSH"] == "true"
    assert env["DOCKER_CONFIG"] == "/home/user/.docker"
    assert "TOKEN" not in env  # a builder gets no secrets but the registry's, as a file
    # Build arguments are arguments, never shell text; `$` is kept from Kubernetes' $(VAR).
    assert build["args"] == ["--opt", "build-arg:GO=1.22", "--opt", "build-arg:PRICE=$$5"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["registry-auth"]["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    assert "buildkit" in volumes
    assert pod["initContainers"][0]["name"] == "checkout"


def test_a_build_cache_is_imported_and_exported_through_the_registry():
    pod = build_pod(
        {
            "image": "$CI_REGISTRY_IMAGE:1",
            "cache": {"image": "$CI_REGISTRY_IMAGE/cache:${CI_COMMIT_REF_SLUG}"},
        },
        variables={"CI_REGISTRY_IMAGE": "reg.example/team/app"},
    )
    ref = "reg.example/team/app/cache:main"
    assert pod["containers"][0]["args"] == [
        "--import-cache",
        f"type=registry,ref={ref}",
        "--export-cache",
        f"type=registry,ref={ref},mode=max",
    ]
    read_only = build_pod(
        {"image": "x:1", "cache": {"image": "c:1", "mode": "min", "export": False}}
    )
    assert read_only["containers"][0]["args"] == ["--import-cache", "type=registry,ref=c:1"]
    with pytest.raises(ModelError, match="mode"):
        build_pod({"image": "x:1", "cache": {"image": "c:1", "mode": "all"}})


def test_the_builder_learns_the_platform_s_mirror_and_plain_http_registries():
    run, spec, job = make({"script": [], "build": {"image": "reg:5000/app:1"}})
    options = JobOptions(registry_mirror="10.0.0.1:5000", insecure_registries=("a:1", "b:2"))
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1, options=options)
    env = env_of(pod["spec"]["template"]["spec"]["containers"][0])
    assert env["CONVEYOR_REGISTRY_MIRROR"] == "10.0.0.1:5000"
    assert env["CONVEYOR_INSECURE_REGISTRIES"] == "a:1 b:2"
    plain = build_pod({"image": "x:1"})
    assert "CONVEYOR_REGISTRY_MIRROR" not in env_of(plain["containers"][0])


def test_the_build_script_builds_pushes_and_reports_the_digest(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "buildctl-daemonless.sh"
    # A stand-in for BuildKit: records its arguments, writes metadata as buildctl does.
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {calls}\n'
        'while [ "$1" != "--metadata-file" ]; do shift; done\n'
        'printf \'{\\n  "containerimage.digest": "sha256:%s",\\n  "image.name": "x"\\n}\\n\' '
        '"$(printf "ab%.0s" $(seq 32))" > "$2"\n'
    )
    fake.chmod(0o755)
    script = BUILD_SCRIPT.replace("/dev/termination-log", str(tmp_path / "termination")).replace(
        "/tmp/build-metadata.json", str(tmp_path / "metadata.json")
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CONVEYOR_BUILD_IMAGE": "reg.example/app:1; rm -rf /",
        "CONVEYOR_BUILD_CONTEXT": "/builds/app/src",
        "CONVEYOR_BUILD_DOCKERFILE_DIR": "/builds/app/src",
        "CONVEYOR_BUILD_DOCKERFILE": "Dockerfile",
        "CONVEYOR_BUILD_PUSH": "true",
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", script, "build", "--opt", "build-arg:A=$(id)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    digest = "sha256:" + "ab" * 32
    assert (tmp_path / "termination").read_text() == digest
    assert f"built reg.example/app:1; rm -rf /@{digest}" in proc.stdout
    args = calls.read_text().splitlines()
    assert args[:3] == ["build", "--frontend", "dockerfile.v0"]
    assert "type=image,name=reg.example/app:1; rm -rf /,push=true" in args
    assert args[-2:] == ["--opt", "build-arg:A=$(id)"]  # passed on, never run


def test_a_failed_build_fails_the_job(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "buildctl-daemonless.sh"
    fake.write_text("#!/bin/sh\necho 'failed to solve: Dockerfile not found' >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = subprocess.run(
        ["/bin/sh", "-c", BUILD_SCRIPT, "build"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CONVEYOR_BUILD_IMAGE": "x",
             "CONVEYOR_BUILD_CONTEXT": ".", "CONVEYOR_BUILD_DOCKERFILE_DIR": ".",
             "CONVEYOR_BUILD_DOCKERFILE": "Dockerfile", "CONVEYOR_BUILD_PUSH": "false"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 1 and "Dockerfile not found" in proc.stderr


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"build": {"image": "x"}, "script": ["make"]}, "a build job has no script"),
        ({"build": {"image": "x"}, "deploy": {}, "environment": {"name": "e"}}, "one of them"),
        ({"build": {"image": "x"}, "scan": {"image": "y"}}, "one of them"),
        ({"scan": {"image": "y"}, "script": ["x"]}, "a scan job has no script"),
        ({"scan": {"image": "y", "build": "b"}}, "exactly one of image and build"),
        ({"scan": {}}, "exactly one of image and build"),
    ],
)
def test_a_build_job_is_only_a_build(fields, words):
    with pytest.raises(ModelError, match=words):
        parse_pipeline_spec({"jobs": [{"name": "b", **fields}]})


def test_a_builds_image_is_expanded_like_the_names_its_deploys_render():
    job = expanded({"script": [], "build": {"image": "reg/app:${CI_COMMIT_REF_SLUG}"}})
    assert job.build.image == "reg/app:feature-login-page"
    with pytest.raises(ModelError, match=r"jobs\[unit tests\].build.image: '\$NONE' expands to ''"):
        expanded({"script": [], "build": {"image": "$NONE"}})


# --- scan jobs -----------------------------------------------------------------------------


def scan_pod(scan, built=None, extra_jobs=()):
    run, spec, _ = make(
        {"script": [], "scan": scan, "stage": "test"},
        {
            "jobs": [
                {"name": "unit tests", "stage": "test", "scan": scan},
                {"name": "img", "stage": "build", "build": {"image": "reg/app:1"}},
                *extra_jobs,
            ]
        },
    )
    job = spec.job("unit tests")
    return build_job(run=run, pipeline=spec, job=job, attempt=1, built=built)["spec"]["template"][
        "spec"
    ]


def test_a_scan_of_a_build_scans_exactly_what_it_pushed():
    digest = "sha256:" + "e5" * 32
    pod = scan_pod({"build": "img"}, built={"reg/app:1": digest})
    (scan,) = pod["containers"]
    assert scan["image"] == "aquasec/trivy:0.74.0"
    env = env_of(scan)
    assert env["CONVEYOR_SCAN_IMAGE"] == f"reg/app:1@{digest}"
    assert env["CONVEYOR_SCAN_SEVERITIES"] == "HIGH,CRITICAL"
    assert scan["securityContext"]["runAsNonRoot"] is True
    assert scan["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert scan["args"] == []
    # Before the build reported a digest (or without one): its tag.
    assert env_of(scan_pod({"build": "img"})["containers"][0])["CONVEYOR_SCAN_IMAGE"] == "reg/app:1"


def test_a_scan_of_an_image_with_its_options():
    pod = scan_pod(
        {"image": "reg/base:3", "severities": ["CRITICAL"], "ignoreUnfixed": True,
         "registrySecret": "pull"}
    )  # fmt: skip
    (scan,) = pod["containers"]
    env = env_of(scan)
    assert env["CONVEYOR_SCAN_IMAGE"] == "reg/base:3"
    assert env["CONVEYOR_SCAN_SEVERITIES"] == "CRITICAL"
    assert scan["args"] == ["--ignore-unfixed"]
    assert env["DOCKER_CONFIG"] == "/conveyor/registry-auth"
    volume = next(v for v in pod["volumes"] if v["name"] == "registry-auth")
    assert volume["secret"]["secretName"] == "pull"


def test_a_scan_gets_the_platforms_databases_and_writes_its_report_in_the_workspace():
    def pod(variables=None, **options):
        run, spec, _ = make(
            {"script": []},
            {
                "source": {"url": "https://git.example.com/team/app.git"},
                "jobs": [
                    {"name": "cs", "stage": "test", "scan": {"image": "reg/base:3"},
                     "variables": variables or {}},
                ],
            },
        )  # fmt: skip
        job = build_job(
            run=run, pipeline=spec, job=spec.job("cs"), attempt=1, options=JobOptions(**options)
        )
        return job["spec"]["template"]["spec"]

    mirror = "10.0.0.1:5000/aquasecurity/trivy-db:2"
    spec = pod(scanner_db_repository=mirror, scanner_java_db_repository="r/java:1")
    (scan,) = spec["containers"]
    env = env_of(scan)
    assert env["TRIVY_DB_REPOSITORY"] == mirror
    assert env["TRIVY_JAVA_DB_REPOSITORY"] == "r/java:1"
    assert env["TRIVY_SKIP_VERSION_CHECK"] == env["TRIVY_DISABLE_TELEMETRY"] == "true"
    assert env["CONVEYOR_SCAN_REPORT"] == f"{env['CI_PROJECT_DIR']}/{SCAN_REPORT}"
    assert {"name": "workspace", "mountPath": "/builds"} in scan["volumeMounts"]
    # An image scan needs no checkout, nor the repository's credentials.
    assert "initContainers" not in spec
    # A job's own TRIVY_DB_REPOSITORY wins; without the options Trivy's defaults apply.
    assert env_of(pod({"TRIVY_DB_REPOSITORY": "elsewhere/db:2"}, scanner_db_repository=mirror)[
        "containers"][0])["TRIVY_DB_REPOSITORY"] == "elsewhere/db:2"  # fmt: skip
    assert "TRIVY_DB_REPOSITORY" not in env_of(pod()["containers"][0])


def run_scan(
    tmp_path, findings: str = "", *args: str, fails: bool = False
) -> tuple[subprocess.CompletedProcess, str]:
    """The scan script with a stand-in `trivy` on PATH that logs its arguments and writes what
    the real one would (its JSON, then the findings and the report rendered from it). The real
    Trivy runs the script in tests/e2e/test_scans.py."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "findings.in").write_text(findings)
    trivy = bin_dir / "trivy"
    trivy.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {tmp_path}/calls\n'
        "cmd=$1; out=; tpl=\n"
        'while [ $# -gt 0 ]; do case "$1" in --output) out=$2; shift;; '
        "--template) tpl=$2; shift;; esac; shift; done\n"
        + (
            "printf '2026-11-30T07:00:00Z\\tFATAL\\tFatal error\\tinit error: DB error\\n' >&2\n"
            "exit 1\n"
            if fails
            else ""
        )
        + 'case "$cmd" in\n'
        "image) echo '{}' > \"$out\";;\n"
        'convert) if [ "$tpl" = "$CONVEYOR_SCAN_REPORT_TEMPLATE" ]; then '
        'echo \'{"vulnerabilities": []}\' > "$out"; '
        f'else cp {tmp_path}/findings.in "$out"; fi;;\n'
        "esac\n"
    )
    trivy.chmod(0o755)
    termination = tmp_path / "termination"
    script = (
        SCAN_SCRIPT.replace("/dev/termination-log", str(termination))
        .replace("/tmp/findings", str(tmp_path / "findings"))
        .replace("/tmp/scan.json", str(tmp_path / "scan.json"))
        .replace("/tmp/trivy.err", str(tmp_path / "trivy.err"))
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CONVEYOR_SCAN_IMAGE": "reg/app:1",
        "CONVEYOR_SCAN_SEVERITIES": "HIGH,CRITICAL",
        "CONVEYOR_SCAN_TEMPLATE": SCAN_TEMPLATE,
        "CONVEYOR_SCAN_REPORT": str(tmp_path / "builds" / "app" / SCAN_REPORT),
        "CONVEYOR_SCAN_REPORT_TEMPLATE": GITLAB_TEMPLATE,
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", script, "scan", *args], env=env, capture_output=True, text=True
    )
    return proc, termination.read_text() if termination.exists() else ""


# What the findings template renders for three vulnerabilities.
FINDINGS = (
    "HIGH CVE-1 openssl 3.0.1 (fixed in 3.0.2) in app\n"
    "CRITICAL CVE-2 zlib 1.2 in app\nHIGH CVE-3 curl 8.0 in app\n"
)


def test_findings_fail_the_scan_and_are_counted(tmp_path):
    proc, summary = run_scan(tmp_path, FINDINGS)
    assert proc.returncode == 1
    assert summary == "CRITICAL=1 HIGH=2"
    assert "HIGH CVE-1 openssl 3.0.1 (fixed in 3.0.2) in app" in proc.stdout
    assert parse_findings(summary) == {"CRITICAL": 1, "HIGH": 2}
    # The GitLab report is written into the project directory and printed.
    report = tmp_path / "builds" / "app" / SCAN_REPORT
    assert report.read_text() == '{"vulnerabilities": []}\n'
    assert f"GitLab container scanning report, {report}:" in proc.stdout


def test_a_clean_image_passes(tmp_path):
    proc, summary = run_scan(tmp_path, "")
    assert proc.returncode == 0 and summary == "none"
    assert "no HIGH,CRITICAL vulnerabilities" in proc.stdout
    assert parse_findings(summary) == {}


def test_a_scan_that_cannot_run_is_not_a_finding(tmp_path):
    proc, summary = run_scan(tmp_path, fails=True)
    assert proc.returncode == 2
    assert summary == "the scanner could not run: Fatal error\tinit error: DB error"
    assert parse_findings(summary) is None
    assert "could not run" in proc.stderr and "FATAL" in proc.stderr


def test_the_options_reach_trivy(tmp_path):
    run_scan(tmp_path, FINDINGS, "--ignore-unfixed")
    scan, findings, report = (tmp_path / "calls").read_text().splitlines()
    assert scan.startswith("image --no-progress") and "--scanners vuln --format json" in scan
    assert scan.endswith("--ignore-unfixed reg/app:1")
    assert findings.startswith("convert --severity HIGH,CRITICAL --format template")
    # The report has every severity: no --severity.
    assert report.startswith("convert --format template --template @/contrib/gitlab.tpl")


def test_builds_and_scans_get_no_secret_files_either():
    secrets = {"secretVariables": [{"name": "KEY", "secretName": "k", "key": "k", "file": True}]}
    for kind in ({"build": {"image": "reg/app:1"}}, {"scan": {"image": "reg/app:1"}}):
        run, spec, job = make({"script": [], **kind, **secrets})
        pod = build_job(run=run, pipeline=spec, job=job, attempt=1)["spec"]["template"]["spec"]
        assert not any(v.get("secret", {}).get("secretName") == "k" for v in pod["volumes"])
        assert not any("secret-var" in m["name"] for m in pod["containers"][0]["volumeMounts"])
        assert "KEY" not in env_of(pod["containers"][0])
    # A script job does get its file secret.
    run, spec, job = make(secrets)
    pod = build_job(run=run, pipeline=spec, job=job, attempt=1)["spec"]["template"]["spec"]
    assert any(v.get("secret", {}).get("secretName") == "k" for v in pod["volumes"])
