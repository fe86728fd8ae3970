"""Pure builder of the batch/v1 Job for one attempt of one pipeline job: the pod's checkout,
artifact transfer, services (`services.py`), and its main container: the script, a build
(`builds.py`) or a scan (`scans.py`); the operator's settings are `options.py`'s JobOptions.

The result is a plain dict ready for the API. It carries everything needed to find the Job again
(labels for the watch selector, annotations with the exact pipeline job name and attempt) and to
clean it up (an owner reference to the PipelineRun). Secrets appear only as references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.api.meta import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_JOB,
    API_VERSION,
    LABEL_MANAGED_BY,
    LABEL_PIPELINE,
    LABEL_RUN,
    LABEL_TRANSFER_PLAN,
    MANAGED_BY,
)
from conveyor.api.pipeline import PipelineJob, PipelineSpec, SecretVariable, Toleration
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.artifacts import uses_untracked
from conveyor.engine.names import job_name, label_value, short_hash, slug
from conveyor.engine.tags import placement
from conveyor.engine.variables.expand import SECRET_VARIABLES_DIR, k8s_escape
from conveyor.engine.variables.job import job_variables, merged_secret_variables
from conveyor.engine.variables.predefined import BUILDS_DIR
from conveyor.kube import script as scripts
from conveyor.kube.builds import build_container, registry_env
from conveyor.kube.defaults import CHECKOUT_CONTAINER, SCRIPT_CONTAINER, TRANSFER_CONTAINER
from conveyor.kube.options import JobOptions
from conveyor.kube.scans import clair_container, scan_container, scan_target
from conveyor.kube.services import (
    as_docker_daemon,
    health_checked_services,
    is_docker_daemon,
    service_container,
    service_container_names,
    service_hostnames,
    services_wait_container,
    unprivileged_daemon_message,
)
from conveyor.store.plan import TRACKED_FILE

WORKSPACE_VOLUME = "workspace"
CREDENTIALS_VOLUME = "git-credentials"
TRANSFER_VOLUME = "conveyor-transfer"
TRANSFER_DIR = "/conveyor/transfer"  # the transfer binary's copy, read-only for the script
# The plan (presigned URLs) is a Secret's file, never in the pod's spec: `view` reads pods and
# Jobs, not Secrets (the transfer binary reads $CONVEYOR_TRANSFER_PLAN_FILE).
TRANSFER_PLAN_VARIABLE = "CONVEYOR_TRANSFER_PLAN_FILE"
TRANSFER_PLAN_VOLUME = "conveyor-transfer-plan"
TRANSFER_PLAN_DIR = "/conveyor/plan"
TRANSFER_PLAN_KEY = "plan.json"


# GitLab's variables that shape the checkout; the checkout container gets their values.
GIT_VARIABLES = ("GIT_STRATEGY", "GIT_DEPTH", "GIT_SUBMODULE_STRATEGY", "GIT_SUBMODULE_DEPTH")
AFTER_SCRIPT_GRACE_SECONDS = 300
SCRIPT_START_ALLOWANCE_SECONDS = 30


def run_owner(run: PipelineRun) -> dict[str, Any]:
    """An owner reference to the run: what it owns goes with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "name": run.name,
        "uid": run.metadata.uid or "",
    }


def run_labels(run: PipelineRun) -> dict[str, str]:
    """Labels on every Job and pod of the run (the operator's watch selector uses them)."""
    labels = {LABEL_RUN: label_value(run.name), LABEL_MANAGED_BY: MANAGED_BY}
    if run.pipeline_name:
        labels[LABEL_PIPELINE] = label_value(run.pipeline_name)
    return labels


def _secret_volumes(
    secrets: Sequence[SecretVariable],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for secret in secrets:
        if not secret.file:
            continue
        name = f"secret-var-{slug(secret.name, 30) or 'x'}-{short_hash(secret.name)}"
        volumes.append(
            {
                "name": name,
                "secret": {
                    "secretName": secret.secret_name,
                    "items": [{"key": secret.key, "path": secret.name}],
                },
            }
        )
        mounts.append(
            {"name": name, "mountPath": f"{SECRET_VARIABLES_DIR}/{secret.name}", "readOnly": True}
        )
    return volumes, mounts


def build_job(
    *,
    run: PipelineRun,
    pipeline: PipelineSpec,
    job: PipelineJob,
    attempt: int,
    options: JobOptions | None = None,
    built: Mapping[str, str] | None = None,
    transfer: str | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job running `attempt` of pipeline job `job` for `run`. `built`: what the
    run's build jobs pushed (image -> digest), for a scan of one of them. `transfer`: the name
    of the Secret holding the attempt's transfer plan (`transfer_plan_secret`) when it uses
    artifacts or caches; `refusal`:
    why the job cannot run at all (its pod only says so, and fails)."""
    options = options or JobOptions()
    if run.spec is None:
        raise ValueError("the PipelineRun has no spec")
    variables = job_variables(pipeline, run, job, options)
    # GitLab's id of this job (attempt): here the attempt's Job, unique like GitLab's.
    variables.define_default(
        "CI_JOB_ID", job_name(run.name, job.name, attempt, run.metadata.uid or "")
    )
    env = variables.env_list()
    project_dir = variables.raw["CI_PROJECT_DIR"]
    labels = run_labels(run)
    secrets = merged_secret_variables(pipeline, job)
    # A build or scan runs the operator's image, not the pipeline's script: it gets none of
    # the job's secrets (only a registry's credentials, as a file).
    scripted = job.build is None and job.scan is None
    secret_volumes, secret_mounts = _secret_volumes(secrets if scripted else [])
    workspace_mount = {"name": WORKSPACE_VOLUME, "mountPath": BUILDS_DIR}

    init_containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [{"name": WORKSPACE_VOLUME, "emptyDir": {}}, *secret_volumes]
    # A scan reads an image from a registry: no checkout (nor the repository's credentials).
    if pipeline.source is not None and job.scan is None:
        git = {name: variables.raw[name] for name in GIT_VARIABLES if name in variables.raw}
        init_containers.append(
            _checkout_container(
                run,
                pipeline,
                project_dir,
                options,
                volumes,
                git,
                tracked_file=TRACKED_FILE if transfer and uses_untracked(job) else None,
            )
        )

    names = service_container_names(job.services)
    hostnames: list[str] = []
    # Services are not trusted with the job's secrets (GitLab does not give them UI-defined
    # variables either): only plain variables.
    secret_names = set(variables.secrets)  # still secret-backed after run overrides
    service_env = [e for e in env if e["name"] not in secret_names]
    script_mounts = [workspace_mount, *secret_mounts]
    for service, name in zip(job.services, names, strict=True):
        container = service_container(service, name, variables, service_env, workspace_mount)
        if options.privileged_services:
            container["securityContext"] = {"privileged": True}
        if is_docker_daemon(service):
            as_docker_daemon(container, volumes, script_mounts)
            container["env"] = [
                *container.get("env", []),
                *({"name": k, "value": v} for k, v in registry_env(options).items()),
            ]
        init_containers.append(container)
        hostnames += [h for h in service_hostnames(service, name) if h not in hostnames]
    waited = health_checked_services(job.services, names, variables)
    if waited:
        init_containers.append(services_wait_container(waited, options))

    image = variables.expand_raw(job.image or pipeline.image or "") or options.default_image
    script_container: dict[str, Any] = {
        "name": SCRIPT_CONTAINER,
        "image": image,
        # Escaped: Kubernetes would otherwise read `$(NAME)` and `$$` in the script itself.
        "command": [
            k8s_escape(part)
            for part in scripts.job_command(
                job.before_script, job.script, job.after_script, job.timeout_seconds()
            )
        ],
        "workingDir": project_dir,
        "env": env,
        "volumeMounts": script_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    daemon = next((s.name for s in job.services if is_docker_daemon(s)), None)
    if daemon is not None and not options.privileged_services:
        # The daemon could never start (it waits for its startup probe, the script for it,
        # until the job's timeout): the job fails at once, saying why.
        init_containers = [c for c in init_containers if c["name"] == CHECKOUT_CONTAINER]
        hostnames = []
        script_container = _refusal_container(unprivileged_daemon_message(daemon), options)
    elif job.build is not None:
        script_container = build_container(
            job.build, variables, service_env, project_dir, script_mounts, volumes, options
        )
    if transfer is not None and (scripted or job.build is not None) and refusal is None:
        # A build only downloads (the artifacts of the jobs it depends on, into its context):
        # the builder itself gets neither the binary nor the plan's URLs.
        builder = script_container if scripted else None
        _add_transfer(transfer, init_containers, builder, volumes, workspace_mount, options)
        transfer = None
    if refusal is not None:
        init_containers = [c for c in init_containers if c["name"] == CHECKOUT_CONTAINER]
        hostnames = []
        script_container = _refusal_container(refusal, options)
    if job.scan is not None:
        target = scan_target(pipeline, job, variables, built or {})
        if job.scan.scanner == "clair":
            script_container = clair_container(job.scan, target, service_env, volumes, options)
        else:
            script_container = scan_container(
                job.scan, target, service_env, project_dir, volumes, workspace_mount, options
            )
            if transfer is not None and refusal is None:
                # The scan keeps its GitLab report as an artifact (SCAN_SCRIPT uploads it).
                _add_transfer(
                    transfer, init_containers, script_container, volumes, workspace_mount, options
                )
    if job.resources is not None:
        resources = {
            k: dict(v)
            for k, v in (("requests", job.resources.requests), ("limits", job.resources.limits))
            if v
        }
        if resources:
            script_container["resources"] = resources

    if scripted and job.after_script:
        # A cancel stops the pod: its SIGTERM starts after_script, which has this long (GitLab's
        # RUNNER_AFTER_SCRIPT_TIMEOUT default) before the kubelet kills it.
        pod_extra: dict[str, Any] = {"terminationGracePeriodSeconds": AFTER_SCRIPT_GRACE_SECONDS}
    else:
        pod_extra = {}
    # A script enforces its own timeout (kube/script.py: after_script is skipped and the run
    # says why); the Job's deadline is the backstop, later by what comes before the script
    # (image pulls, the checkout). Builds and scans have only the Job's deadline.
    deadline = job.timeout_seconds() + (SCRIPT_START_ALLOWANCE_SECONDS if scripted else 0)

    pod_spec: dict[str, Any] = {
        **pod_extra,
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [script_container],
        "volumes": volumes,
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if hostnames:
        # Services share the pod's network: their GitLab host names point at localhost.
        pod_spec["hostAliases"] = [{"ip": "127.0.0.1", "hostnames": hostnames}]
    # The job's node choice replaces the pipeline's default, as GitLab's `image` does; its
    # runner tags add what the operator maps them to (TagError for a tag it does not map).
    node_selector, tolerations = placement(
        job.tags,
        job.node_selector if job.node_selector is not None else pipeline.node_selector,
        job.tolerations if job.tolerations is not None else pipeline.tolerations,
        options.tags,
    )
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = [toleration_dict(t) for t in tolerations]
    if job.service_account_name:
        pod_spec["serviceAccountName"] = job.service_account_name
    else:
        pod_spec["automountServiceAccountToken"] = False

    metadata: dict[str, Any] = {
        "name": job_name(run.name, job.name, attempt, run.metadata.uid or ""),
        "labels": dict(labels),
        "annotations": {ANNOTATION_JOB: job.name, ANNOTATION_ATTEMPT: str(attempt)},
        "ownerReferences": [{**run_owner(run), "controller": True, "blockOwnerDeletion": True}],
    }
    if run.metadata.namespace:
        metadata["namespace"] = run.metadata.namespace
    template_metadata: dict[str, Any] = {"labels": {**job.pod_labels, **labels}}
    if job.pod_annotations:
        template_metadata["annotations"] = dict(job.pod_annotations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,  # retries are Conveyor's, per the job's `retry`
            "activeDeadlineSeconds": deadline,
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


def _add_transfer(
    plan_secret: str,
    init_containers: list[dict[str, Any]],
    script: dict[str, Any] | None,
    volumes: list[dict[str, Any]],
    workspace_mount: dict[str, Any],
    options: JobOptions,
) -> None:
    """The transfer binary, delivered as Tekton delivers its entrypoint: an init container of
    its own small image copies it into an emptyDir (and downloads, after the checkout); the
    script container (`script`; None: downloads only) runs that copy after the script,
    whatever its image holds. Both read the plan from its Secret, mounted read-only."""
    plan_env = {"name": TRANSFER_PLAN_VARIABLE, "value": f"{TRANSFER_PLAN_DIR}/{TRANSFER_PLAN_KEY}"}
    plan_mount = {"name": TRANSFER_PLAN_VOLUME, "mountPath": TRANSFER_PLAN_DIR, "readOnly": True}
    volumes.append({"name": TRANSFER_VOLUME, "emptyDir": {}})
    volumes.append(
        {"name": TRANSFER_PLAN_VOLUME, "secret": {"secretName": plan_secret, "defaultMode": 0o444}}
    )
    container = {
        "name": TRANSFER_CONTAINER,
        "image": options.transfer_image,
        "command": ["/bin/conveyor-transfer", "init", TRANSFER_DIR],
        "env": [plan_env],
        "volumeMounts": [
            workspace_mount,
            {"name": TRANSFER_VOLUME, "mountPath": TRANSFER_DIR},
            plan_mount,
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    # After the checkout (it extracts into the checked-out tree), before the services.
    at = 1 if init_containers and init_containers[0]["name"] == CHECKOUT_CONTAINER else 0
    init_containers.insert(at, container)
    if script is None:
        return
    script["env"] = [
        *script.get("env", []),
        plan_env,
        {"name": scripts.TRANSFER_VARIABLE, "value": f"{TRANSFER_DIR}/conveyor-transfer"},
    ]
    script["volumeMounts"] = [
        *script.get("volumeMounts", []),
        {"name": TRANSFER_VOLUME, "mountPath": TRANSFER_DIR, "readOnly": True},
        plan_mount,
    ]


def transfer_plan_secret(
    run: PipelineRun, job: PipelineJob, attempt: int, plan: str
) -> dict[str, Any]:
    """The Secret holding an attempt's transfer plan. Its name is generated: nobody can create
    it first. Owned by the run, it goes with it; its URLs expire with the job anyway."""
    base = job_name(run.name, job.name, attempt, run.metadata.uid or "")
    metadata: dict[str, Any] = {
        "generateName": base[: 63 - 6 - len("-plan-")] + "-plan-",
        "labels": {**run_labels(run), LABEL_TRANSFER_PLAN: "true"},
        "annotations": {ANNOTATION_JOB: job.name, ANNOTATION_ATTEMPT: str(attempt)},
        "ownerReferences": [run_owner(run)],
    }
    if run.metadata.namespace:
        metadata["namespace"] = run.metadata.namespace
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": {TRANSFER_PLAN_KEY: plan},
    }


def toleration_dict(toleration: Toleration) -> dict[str, Any]:
    """A pod's toleration: the fields that are set, in the API's names."""
    out: dict[str, Any] = {"operator": toleration.operator}
    if toleration.key is not None:
        out["key"] = toleration.key
    if toleration.value is not None:
        out["value"] = toleration.value
    if toleration.effect is not None:
        out["effect"] = toleration.effect
    if toleration.toleration_seconds is not None:
        out["tolerationSeconds"] = toleration.toleration_seconds
    return out


def _checkout_container(
    run: PipelineRun,
    pipeline: PipelineSpec,
    project_dir: str,
    options: JobOptions,
    volumes: list[dict[str, Any]],
    git: Mapping[str, str] | None = None,
    tracked_file: str | None = None,
) -> dict[str, Any]:
    """The checkout init container; `tracked_file`: where it lists the files git tracks, for a
    job that archives untracked files."""
    assert pipeline.source is not None and run.spec is not None
    revision = run.spec.revision
    env: list[dict[str, Any]] = [
        {"name": "CONVEYOR_SOURCE_URL", "value": pipeline.source.url.replace("$", "$$")},
        {"name": "CONVEYOR_CHECKOUT_REF", "value": revision.ref.replace("$", "$$")},
        {"name": "CONVEYOR_CHECKOUT_SHA", "value": revision.sha or ""},
        {"name": "CI_PROJECT_DIR", "value": project_dir.replace("$", "$$")},
        {"name": "HOME", "value": "/tmp"},
        *({"name": k, "value": k8s_escape(v)} for k, v in (git or {}).items()),
        *([{"name": "CONVEYOR_TRACKED_FILE", "value": tracked_file}] if tracked_file else []),
    ]
    mounts: list[dict[str, Any]] = [{"name": WORKSPACE_VOLUME, "mountPath": BUILDS_DIR}]
    if pipeline.source.credentials_secret:
        volumes.append(
            {
                "name": CREDENTIALS_VOLUME,
                # 0400: ssh refuses private keys readable by others.
                "secret": {"secretName": pipeline.source.credentials_secret, "defaultMode": 0o400},
            }
        )
        mounts.append(
            {"name": CREDENTIALS_VOLUME, "mountPath": scripts.CREDENTIALS_DIR, "readOnly": True}
        )
        env += [
            {"name": "GIT_CONFIG_COUNT", "value": "1"},
            {"name": "GIT_CONFIG_KEY_0", "value": "credential.helper"},
            {"name": "GIT_CONFIG_VALUE_0", "value": scripts.CREDENTIAL_HELPER.replace("$", "$$")},
            {"name": "GIT_SSH_COMMAND", "value": scripts.SSH_COMMAND},
        ]
    return {
        "name": CHECKOUT_CONTAINER,
        "image": options.checkout_image,
        "command": ["/bin/sh", "-c", scripts.CHECKOUT_SCRIPT],
        "workingDir": BUILDS_DIR,
        "env": env,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _refusal_container(message: str, options: JobOptions) -> dict[str, Any]:
    """A script container that only says why the job cannot run, and fails."""
    return {
        "name": SCRIPT_CONTAINER,
        "image": options.default_image,
        # The log is the termination message (FallbackToLogsOnError), so the job's.
        "command": ["/bin/sh", "-c", 'echo "$0" >&2; exit 1'],
        "args": [message],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
