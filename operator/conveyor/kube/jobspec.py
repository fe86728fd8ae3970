"""Pure builder of the batch/v1 Job for one attempt of one pipeline job.

The result is a plain dict ready for the API. It carries everything needed to find the Job again
(labels for the watch selector, annotations with the exact pipeline job name and attempt) and to
clean it up (an owner reference to the PipelineRun). Secrets appear only as references.
"""

from __future__ import annotations

import dataclasses
import datetime
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.api import ModelError
from conveyor.api.meta import API_VERSION
from conveyor.api.pipeline import (
    RESOURCE_GROUP_MAX,
    Build,
    BuildCache,
    PipelineJob,
    PipelineSpec,
    Scan,
    SecretVariable,
    Service,
    Toleration,
)
from conveyor.api.pipelinerun import PipelineRun
from conveyor.engine.artifacts import uses_untracked
from conveyor.engine.evaluation import effective_job
from conveyor.engine.names import DNS_LABEL, job_name, label_value, short_hash, slug
from conveyor.engine.tags import TagMap, placement
from conveyor.gitlab.predefined import ZERO_SHA as ZERO_SHA  # re-exported
from conveyor.gitlab.predefined import environment_slug, git_variables, project_variables
from conveyor.kube import script as scripts
from conveyor.kube.clair import clair_scan_container
from conveyor.kube.defaults import (  # re-exported: the builder's defaults
    CHECKOUT_CONTAINER,
    DEFAULT_BUILDER_IMAGE,
    DEFAULT_CHECKOUT_IMAGE,
    DEFAULT_CLAIR_SCANNER_IMAGE,
    DEFAULT_CLAIR_URL,
    DEFAULT_CREDENTIALS_NAMESPACE,
    DEFAULT_IMAGE,
    DEFAULT_SCANNER_IMAGE,
    DEFAULT_TRANSFER_IMAGE,
    DEFAULT_WAIT_FOR_SERVICES_SECONDS,
    SCRIPT_CONTAINER,
    SERVICES_WAIT_CONTAINER,
    TRANSFER_CONTAINER,
)
from conveyor.kube.variables import (
    SECRET_VARIABLES_DIR,
    Variables,
    k8s_escape,
    reference_cycle,
)
from conveyor.store.config import StoreConfig
from conveyor.store.plan import TRACKED_FILE

BUILDER_HOME = "/home/user"  # the rootless image's user
SCANNER_USER = 65532  # Trivy needs no root: it reads the image from the registry
BUILDS_DIR = "/builds"

LABEL_RUN = "conveyor.dev/pipelinerun"
LABEL_PIPELINE = "conveyor.dev/pipeline"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "conveyor"
ANNOTATION_JOB = "conveyor.dev/job"
ANNOTATION_ATTEMPT = "conveyor.dev/attempt"

DOCKER_CERTS_DIR = "/certs"  # GitLab's DOCKER_TLS_CERTDIR; clients read <dir>/client
DOCKER_CERTS_VOLUME = "docker-certs"
BUILDKIT_VOLUME = "buildkit"
REGISTRY_AUTH_VOLUME = "registry-auth"
DOCKER_STORAGE_VOLUME = "docker-storage"
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
LABEL_TRANSFER_PLAN = "conveyor.dev/transfer-plan"


ENVIRONMENT_NAME_MAX = 255  # GitLab's limit

# GitLab's variables that shape the checkout; the checkout container gets their values.
GIT_VARIABLES = ("GIT_STRATEGY", "GIT_DEPTH", "GIT_SUBMODULE_STRATEGY", "GIT_SUBMODULE_DEPTH")
AFTER_SCRIPT_GRACE_SECONDS = 300
SCRIPT_START_ALLOWANCE_SECONDS = 30


@dataclass(frozen=True)
class JobOptions:
    """Operator-level settings of job pods."""

    checkout_image: str = DEFAULT_CHECKOUT_IMAGE
    default_image: str = DEFAULT_IMAGE
    registry: str | None = None  # CI_REGISTRY
    registry_image: str | None = None  # CI_REGISTRY_IMAGE
    # GitLab's runner `privileged = true`, for service containers only (a Docker daemon needs
    # it): the platform's decision, never the pipeline's; the script container never is.
    privileged_services: bool = False
    builder_image: str = DEFAULT_BUILDER_IMAGE  # the image `build` jobs run
    # A plain-HTTP registry holding the public images under their paths (docker.io, gcr.io,
    # quay.io...): the builder's BuildKit and Docker-in-Docker services pull through it, as the
    # nodes' containerd does. None: they pull from the public registries.
    registry_mirror: str | None = None
    # Registries (HOST:PORT) that builders and Docker daemons speak plain HTTP to.
    insecure_registries: tuple[str, ...] = ()
    scanner_image: str = DEFAULT_SCANNER_IMAGE  # the image `scan` jobs run
    clair_scanner_image: str = DEFAULT_CLAIR_SCANNER_IMAGE  # the image Clair `scan` jobs run
    clair_url: str | None = DEFAULT_CLAIR_URL  # the platform's Clair v4 (indexer and matcher)
    # Where scan jobs' Trivy gets its vulnerability database (TRIVY_DB_REPOSITORY) and, for
    # Java scans only, its Java index (TRIVY_JAVA_DB_REPOSITORY): a platform's own registry
    # instead of Aqua's public ones. A job's own TRIVY_* variables still win.
    scanner_db_repository: str | None = None
    scanner_java_db_repository: str | None = None
    # Where Environments' kubeconfig Secrets live: a namespace only the platform and the
    # operator can read, never a team's. No job pod ever gets them; native deploys use them.
    credentials_namespace: str = DEFAULT_CREDENTIALS_NAMESPACE
    # How long an Approval is kept once its run is gone: the record of who approved what.
    approval_retention: datetime.timedelta = datetime.timedelta(days=30)
    # GitLab runner tags -> node labels and tolerations (--tag-selector, --tag-toleration).
    tags: TagMap = field(default_factory=TagMap)
    # The image whose static binary moves artifacts and caches (init container, then copied).
    transfer_image: str = DEFAULT_TRANSFER_IMAGE
    # How long a job waits for its services' HEALTHCHECK_TCP_PORTs (GitLab runner's
    # wait_for_services_timeout) before its script starts anyway.
    wait_for_services_seconds: int = DEFAULT_WAIT_FOR_SERVICES_SECONDS
    # The S3-compatible store of artifacts and caches; None: jobs that use them fail, saying so.
    artifact_store: StoreConfig | None = None
    # expire_in of artifacts whose job says none (GitLab.com: 30 days); None: never.
    artifacts_expire_in: str | None = "30 days"
    # How often the operator deletes deleted runs' and expired artifacts from the store.
    artifact_sweep_interval: datetime.timedelta = datetime.timedelta(minutes=5)


def project_name(pipeline: PipelineSpec, run: PipelineRun) -> str:
    """CI_PROJECT_NAME: the repository's name, else the pipeline's, else the run's."""
    if pipeline.source is not None:
        base = posixpath.basename(pipeline.source.url.rstrip("/").split(":")[-1])
        base = base.removesuffix(".git")
        cleaned = slug(base)
        if cleaned:
            return cleaned
    return slug(run.pipeline_name or "") or slug(run.name) or "project"


def run_labels(run: PipelineRun) -> dict[str, str]:
    """Labels on every Job and pod of the run (the operator's watch selector uses them)."""
    labels = {LABEL_RUN: label_value(run.name), LABEL_MANAGED_BY: MANAGED_BY}
    if run.pipeline_name:
        labels[LABEL_PIPELINE] = label_value(run.pipeline_name)
    return labels


def predefined_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob, options: JobOptions
) -> dict[str, str]:
    """GitLab's predefined variables. The git facts (CI_COMMIT_MESSAGE/TITLE/DESCRIPTION,
    CI_COMMIT_BRANCH or CI_COMMIT_TAG, CI_DEFAULT_BRANCH) come from the run's
    `status.evaluation`, written when the run started; without it they are not set."""
    assert run.spec is not None
    revision = run.spec.revision
    project = project_name(pipeline, run)
    evaluation = run.status.evaluation
    git = git_variables(
        ref=revision.ref,
        ref_is_tag=evaluation.ref_is_tag if evaluation is not None else None,
        sha=revision.sha,
        before_sha=revision.before_sha,
        commit_message=evaluation.commit_message if evaluation is not None else None,
        default_branch=evaluation.default_branch if evaluation is not None else None,
        pipeline_source=run.spec.pipeline_source,
        commit_author=evaluation.commit_author if evaluation is not None else None,
        commit_timestamp=evaluation.commit_timestamp if evaluation is not None else None,
    )
    fallback_path = f"{run.metadata.namespace or 'default'}/{project}"
    out = {
        "CI": "true",
        "GITLAB_CI": "true",  # scripts test it to know they run under GitLab CI
        "CI_SERVER": "yes",
        "CONVEYOR": "true",
        **git,
        # Conveyor has no protected branches (Environments carry the protection).
        "CI_COMMIT_REF_PROTECTED": "false",
        "CI_PIPELINE_ID": run.metadata.uid or "",
        "CI_JOB_NAME": job.name,
        "CI_JOB_STAGE": job.stage,
        "CI_NODE_TOTAL": "1",  # parallel jobs carry their own
        "CI_PROJECT_NAME": project,
        "CI_BUILDS_DIR": BUILDS_DIR,
        "CI_PROJECT_DIR": f"{BUILDS_DIR}/{project}",
        **project_variables(
            pipeline.source.url if pipeline.source else None, project, fallback_path
        ),
    }
    if run.metadata.creation_timestamp is not None:
        created = run.metadata.creation_timestamp.astimezone(datetime.UTC)
        out["CI_PIPELINE_CREATED_AT"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    if job.when == "manual":
        out["CI_JOB_MANUAL"] = "true"  # it runs because someone played it
    if options.registry:
        out["CI_REGISTRY"] = options.registry
    if options.registry_image:
        out["CI_REGISTRY_IMAGE"] = options.registry_image
    return out


def job_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob, options: JobOptions
) -> Variables:
    """All variables of the job with GitLab's precedence (highest last): predefined, pipeline,
    the matching workflow rule's, job, the matching job rule's, Secret-backed (like GitLab
    project variables), run. Rule variables come from the run's `status.evaluation`. Values
    are expanded against the whole set (see `Variables`), predefined ones never."""
    assert run.spec is not None
    evaluation = run.status.evaluation
    job = effective_job(job, evaluation)  # idempotent: rule variables merged over the job's
    variables = Variables()
    for name, value in predefined_variables(pipeline, run, job, options).items():
        variables.define_literal(name, value)
    for secret in merged_secret_variables(pipeline, job):
        variables.define_secret(secret)
    *yaml_layers, run_layer = user_variables(pipeline, run, job)
    for layer in yaml_layers:
        variables.define_all(layer, under_secrets=True)
    variables.define_all(run_layer)  # run variables rank above Secret-backed ones too
    if job.environment is not None:
        # GitLab expands the environment's name with the job's variables (not CI_ENVIRONMENT_*),
        # then its URL with those and CI_ENVIRONMENT_NAME/SLUG; job variables may use all three
        # (docs.gitlab.com/ci/variables/where_variables_can_be_used). A name the job defines
        # itself wins, as before.
        env_name = variables.expand_raw(job.environment.name)
        variables.define_default("CI_ENVIRONMENT_NAME", env_name)
        variables.define_default("CI_ENVIRONMENT_SLUG", environment_slug(env_name))
        if job.environment.url:
            url = variables.expand_raw(job.environment.url)
            variables.define_default("CI_ENVIRONMENT_URL", url)
    return variables


def user_variables(
    pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob
) -> list[Mapping[str, str]]:
    """The variable layers the pipeline and the run define for `job` (its rule's variables
    merged in), lowest precedence first."""
    assert run.spec is not None
    evaluation = run.status.evaluation
    job = effective_job(job, evaluation)
    layers: list[Mapping[str, str]] = [pipeline.variables]
    if evaluation is not None:
        layers.append(evaluation.variables)
    return [*layers, job.variables, run.spec.variables]


def variable_cycle(pipeline: PipelineSpec, run: PipelineRun, job: PipelineJob) -> str | None:
    """GitLab refuses a job whose variables refer to each other in a cycle; the message, or
    None."""
    merged: dict[str, str] = {}
    for layer in user_variables(pipeline, run, job):
        merged.update(layer)
    cycle = reference_cycle(merged)
    return f"circular variable reference: {' -> '.join(cycle)}" if cycle else None


def with_names_expanded(
    pipeline: PipelineSpec,
    run: PipelineRun,
    options: JobOptions,
    excluded: frozenset[str] = frozenset(),
) -> PipelineSpec:
    """GitLab expands the job's variables in environment names and resource groups: the run's
    jobs are gated, locked and deployed under the expanded names (and a build's image under
    the name its deploys will render). Jobs in `excluded` (the rules leave them out) are left
    as they are. Raises ModelError, naming
    the job, when a name expands to one that cannot be, or when the job's variables refer to
    each other in a cycle (GitLab refuses such a pipeline)."""
    jobs = []
    for job in pipeline.jobs:
        if job.name in excluded:  # a job the rules leave out never fails the run
            jobs.append(job)
            continue
        cycle = variable_cycle(pipeline, run, job)
        if cycle:
            raise ModelError(f"jobs[{job.name}].variables", cycle)
        env, group, build = job.environment, job.resource_group, job.build
        if (
            not (env is not None and "$" in env.name)
            and not (group and "$" in group)
            and not (build is not None and "$" in build.image)
        ):
            jobs.append(job)
            continue
        variables = job_variables(pipeline, run, job, options)
        if build is not None and "$" in build.image:
            image = variables.expand_raw(build.image)
            if not image or image.startswith((":", "@")):
                raise ModelError(
                    f"jobs[{job.name}].build.image",
                    f"{build.image!r} expands to {image!r}, which names no image",
                )
            job = dataclasses.replace(job, build=dataclasses.replace(build, image=image))
        if env is not None and "$" in env.name:
            # GitLab's names are free-form (review/$CI_COMMIT_REF_NAME); the Environment that
            # serves one is found by name, slug or pattern (engine.environments).
            name = variables.expand_raw(env.name).strip()
            if not name or len(name) > ENVIRONMENT_NAME_MAX:
                raise ModelError(
                    f"jobs[{job.name}].environment.name",
                    f"{env.name!r} expands to {name!r}: an environment name needs 1-"
                    f"{ENVIRONMENT_NAME_MAX} characters",
                )
            job = dataclasses.replace(job, environment=dataclasses.replace(env, name=name))
        if group and "$" in group:
            name = variables.expand_raw(group).strip()
            if not name or len(name) > RESOURCE_GROUP_MAX:
                raise ModelError(
                    f"jobs[{job.name}].resourceGroup",
                    f"{group!r} expands to {name!r}: a resource group needs 1-"
                    f"{RESOURCE_GROUP_MAX} characters",
                )
            job = dataclasses.replace(job, resource_group=name)
        jobs.append(job)
    return dataclasses.replace(pipeline, jobs=tuple(jobs))


def merged_secret_variables(pipeline: PipelineSpec, job: PipelineJob) -> list[SecretVariable]:
    """Pipeline Secret variables overridden by the job's of the same name."""
    merged = {s.name: s for s in pipeline.secret_variables}
    merged.update({s.name: s for s in job.secret_variables})
    return list(merged.values())


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


def service_container_names(services: Sequence[Service]) -> list[str]:
    """Container names of services: the alias or a slug of the image, made unique."""
    taken = {CHECKOUT_CONTAINER, SCRIPT_CONTAINER, TRANSFER_CONTAINER, SERVICES_WAIT_CONTAINER}
    names: list[str] = []
    for service in services:
        base = service.alias or slug(service.name, 50) or "service"
        name, n = base, 2
        while name in taken:
            name = f"{base[:58]}-{n}"
            n += 1
        taken.add(name)
        names.append(name)
    return names


def service_hostnames(service: Service, container_name: str) -> list[str]:
    """Host names a service answers to: GitLab's alias, else the image name without its tag."""
    if service.alias:
        return [service.alias]
    image = service.name.split("@")[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: len(image) - len(last)] + last.split(":")[0]
    candidates = [image.replace("/", "-").lower(), container_name]
    return list(dict.fromkeys(c for c in candidates if _valid_hostname(c)))


def _valid_hostname(name: str) -> bool:
    return 0 < len(name) <= 253 and all(DNS_LABEL.match(part) for part in name.split("."))


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
        container = _service_container(service, name, variables, service_env, workspace_mount)
        if options.privileged_services:
            container["securityContext"] = {"privileged": True}
        if is_docker_daemon(service):
            _as_docker_daemon(container, volumes, script_mounts)
            container["env"] = [
                *container.get("env", []),
                *({"name": k, "value": v} for k, v in registry_env(options).items()),
            ]
        init_containers.append(container)
        hostnames += [h for h in service_hostnames(service, name) if h not in hostnames]
    waited = health_checked_services(job.services, names, variables)
    if waited:
        init_containers.append(_services_wait_container(waited, options))

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
        script_container = _build_container(
            job.build, variables, service_env, project_dir, script_mounts, volumes, options
        )
    if transfer is not None and scripted and refusal is None:
        _add_transfer(
            transfer, init_containers, script_container, volumes, workspace_mount, options
        )
        transfer = None
    if refusal is not None:
        init_containers = [c for c in init_containers if c["name"] == CHECKOUT_CONTAINER]
        hostnames = []
        script_container = _refusal_container(refusal, options)
    if job.scan is not None:
        target = scan_target(pipeline, job, variables, built or {})
        if job.scan.scanner == "clair":
            script_container = _clair_container(job.scan, target, service_env, volumes, options)
        else:
            script_container = _scan_container(
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
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "PipelineRun",
                "name": run.name,
                "uid": run.metadata.uid or "",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
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
    script: dict[str, Any],
    volumes: list[dict[str, Any]],
    workspace_mount: dict[str, Any],
    options: JobOptions,
) -> None:
    """The transfer binary, delivered as Tekton delivers its entrypoint: an init container of
    its own small image copies it into an emptyDir (and downloads, after the checkout); the
    script container runs that copy after the script, whatever its image holds. Both read the
    plan from its Secret, mounted read-only."""
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
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "PipelineRun",
                "name": run.name,
                "uid": run.metadata.uid or "",
            }
        ],
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


# Parameters come in the environment and build arguments as "$@": nothing the pipeline wrote is
# ever parsed by the shell. The digest buildctl reports is the container's termination message,
# which the operator records in the job's status.
BUILD_SCRIPT = r"""set -eu
buildctl-daemonless.sh build --frontend dockerfile.v0 \
  --local "context=$CONVEYOR_BUILD_CONTEXT" --local "dockerfile=$CONVEYOR_BUILD_DOCKERFILE_DIR" \
  --opt "filename=$CONVEYOR_BUILD_DOCKERFILE" \
  --output "type=image,name=$CONVEYOR_BUILD_IMAGE,push=$CONVEYOR_BUILD_PUSH" \
  --metadata-file /tmp/build-metadata.json "$@"
digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]*\)".*/\1/p' \
  /tmp/build-metadata.json | head -n 1)
printf '%s' "$digest" > /dev/termination-log
echo "built $CONVEYOR_BUILD_IMAGE@$digest"
"""


def _build_container(
    build: Build,
    variables: Variables,
    env: list[dict[str, Any]],
    project_dir: str,
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    options: JobOptions,
) -> dict[str, Any]:
    """The job's container for a `build` job: BuildKit without a daemon, without privilege.
    Rootless BuildKit needs seccomp and AppArmor unconfined (its user namespaces and mounts):
    the namespace must allow that (Pod Security level `privileged`), though the container
    runs as a plain user."""
    context = posixpath.normpath(posixpath.join(project_dir, build.context))
    dockerfile_dir, dockerfile = posixpath.split(posixpath.join(context, build.dockerfile))
    image = variables.expand_raw(build.image)
    own = {
        "CONVEYOR_BUILD_IMAGE": image,
        "CONVEYOR_BUILD_CONTEXT": context,
        "CONVEYOR_BUILD_DOCKERFILE_DIR": posixpath.normpath(dockerfile_dir),
        "CONVEYOR_BUILD_DOCKERFILE": dockerfile,
        "CONVEYOR_BUILD_PUSH": "true" if build.push else "false",
        # Kubernetes has no equivalent of Docker's systempaths=unconfined (BuildKit's docs).
        "BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox",
        **registry_env(options),
    }
    volumes.append({"name": BUILDKIT_VOLUME, "emptyDir": {}})
    mounts = [
        *mounts,
        {"name": BUILDKIT_VOLUME, "mountPath": f"{BUILDER_HOME}/.local/share/buildkit"},
    ]
    if build.registry_secret:
        own["DOCKER_CONFIG"] = _registry_auth(
            build.registry_secret, volumes, mounts, f"{BUILDER_HOME}/.docker"
        )
    args: list[str] = []
    for name, value in build.build_args.items():
        args += ["--opt", k8s_escape(f"build-arg:{name}={variables.expand_raw(value)}")]
    args += [k8s_escape(a) for a in cache_args(build.cache, variables)]
    return {
        "name": SCRIPT_CONTAINER,
        "image": options.builder_image,
        "command": ["/bin/sh", "-c", BUILD_SCRIPT, "build"],
        "args": args,
        "workingDir": project_dir,
        "env": [e for e in env if e["name"] not in own]
        + [{"name": k, "value": k8s_escape(v)} for k, v in own.items()],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
    }


def registry_env(options: JobOptions) -> dict[str, str]:
    """What the builder image and the Docker daemon images read to reach the platform's
    registries: the mirror of the public ones, and those spoken to over plain HTTP."""
    out: dict[str, str] = {}
    if options.registry_mirror:
        out["CONVEYOR_REGISTRY_MIRROR"] = options.registry_mirror
    if options.insecure_registries:
        out["CONVEYOR_INSECURE_REGISTRIES"] = " ".join(options.insecure_registries)
    return out


def cache_args(cache: BuildCache | None, variables: Variables) -> list[str]:
    """buildctl's flags for a build cache kept in a registry."""
    if cache is None:
        return []
    ref = variables.expand_raw(cache.image)
    out = ["--import-cache", f"type=registry,ref={ref}"]
    if cache.export:
        out += ["--export-cache", f"type=registry,ref={ref},mode={cache.mode}"]
    return out


def _registry_auth(
    secret: str, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], directory: str
) -> str:
    """A dockerconfigjson Secret as the config.json of the one container that needs it: the
    directory for DOCKER_CONFIG."""
    volumes.append(
        {
            "name": REGISTRY_AUTH_VOLUME,
            "secret": {
                "secretName": secret,
                "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            },
        }
    )
    mounts.append({"name": REGISTRY_AUTH_VOLUME, "mountPath": directory, "readOnly": True})
    return directory


def scan_target(
    pipeline: PipelineSpec, job: PipelineJob, variables: Variables, built: Mapping[str, str]
) -> str:
    """The image a scan job scans: its own, or what its build job pushed in this run, by
    digest when the build reported one."""
    assert job.scan is not None
    if job.scan.image is not None:
        return variables.expand_raw(job.scan.image)
    build = pipeline.job(job.scan.build or "")
    if build is None or build.build is None:
        raise ValueError(f"job {job.name} scans {job.scan.build!r}, which is not a build job")
    image = build.build.image
    digest = built.get(image)
    return f"{image}@{digest}" if digest else image


# Trivy scans once, every severity, into its JSON; the findings (one per line, the job's
# severities) and GitLab's container scanning report (every severity) are rendered from it
# with `trivy convert`. The count per severity is the termination message, which the operator
# records in the job's status. Exit 1: findings; 2: the scan could not run (the termination
# message then says why, from Trivy's error).
SCAN_TEMPLATE = (
    "{{ range . }}{{ $target := .Target }}{{ range .Vulnerabilities }}{{ .Severity }} "
    "{{ .VulnerabilityID }} {{ .PkgName }} {{ .InstalledVersion }}"
    "{{ if .FixedVersion }} (fixed in {{ .FixedVersion }}){{ end }} in {{ $target }}"
    '{{ "\\n" }}{{ end }}{{ end }}'
)
SCAN_REPORT = "gl-container-scanning-report.json"  # GitLab's name, in CI_PROJECT_DIR
GITLAB_TEMPLATE = "@/contrib/gitlab.tpl"  # shipped in Trivy's image (and hack/images/trivy.sh)
SCAN_SCRIPT = r"""set -u
cannot_run() {
  reason=$(grep -m1 -E 'FATAL|ERROR' /tmp/trivy.err | sed -E 's/^.*(FATAL|ERROR)[[:space:]]+//' \
    | cut -c1-220)  # the operator keeps 256 characters of a termination message
  printf 'the scanner could not run: %s' "${reason:-trivy $1 failed}" > /dev/termination-log
  echo "the scan of $CONVEYOR_SCAN_IMAGE could not run" >&2
  exit 2
}
# trivy: Trivy's log (not --quiet, which silences its errors too) goes to the job's log.
trivy() {
  rc=0
  command trivy "$@" 2>/tmp/trivy.err || rc=$?
  cat /tmp/trivy.err >&2
  [ "$rc" -eq 0 ] || cannot_run "$1"
}
trivy image --no-progress --scanners vuln --format json --output /tmp/scan.json \
  "$@" "$CONVEYOR_SCAN_IMAGE"
trivy convert --severity "$CONVEYOR_SCAN_SEVERITIES" --format template \
  --template "$CONVEYOR_SCAN_TEMPLATE" --output /tmp/findings /tmp/scan.json
mkdir -p "$(dirname "$CONVEYOR_SCAN_REPORT")"
trivy convert --format template --template "$CONVEYOR_SCAN_REPORT_TEMPLATE" \
  --output "$CONVEYOR_SCAN_REPORT" /tmp/scan.json
cat /tmp/findings
echo "GitLab container scanning report, $CONVEYOR_SCAN_REPORT:"
cat "$CONVEYOR_SCAN_REPORT"
echo
summary=$(cut -d' ' -f1 /tmp/findings | sort | uniq -c \
  | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " }')
# The report is kept as the job's artifact when the operator has a store (the transfer binary,
# added by build_job); it is printed whole in the log either way.
if [ -n "${CONVEYOR_TRANSFER:-}" ]; then
  "$CONVEYOR_TRANSFER" upload "$([ -n "$summary" ] && echo failed || echo success)" || exit 1
fi
printf '%s' "${summary:-none}" > /dev/termination-log
if [ -n "$summary" ]; then
  echo "$CONVEYOR_SCAN_IMAGE: $summary" >&2
  exit 1
fi
echo "$CONVEYOR_SCAN_IMAGE: no $CONVEYOR_SCAN_SEVERITIES vulnerabilities"
"""


def _scan_container(
    scan: Scan,
    image: str,
    env: list[dict[str, Any]],
    project_dir: str,
    volumes: list[dict[str, Any]],
    workspace_mount: dict[str, Any],
    options: JobOptions,
) -> dict[str, Any]:
    """The job's container for a `scan` job: Trivy, as a plain user, nothing privileged,
    downloading nothing but the image and its databases."""
    own = {
        "CONVEYOR_SCAN_IMAGE": image,
        "CONVEYOR_SCAN_SEVERITIES": ",".join(scan.severities),
        "CONVEYOR_SCAN_TEMPLATE": SCAN_TEMPLATE,
        "CONVEYOR_SCAN_REPORT": f"{project_dir}/{SCAN_REPORT}",
        "CONVEYOR_SCAN_REPORT_TEMPLATE": GITLAB_TEMPLATE,
        "TRIVY_CACHE_DIR": "/tmp/trivy-cache",
        # No notices, no usage data sent to Aqua: nothing but registry reads.
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
        "HOME": "/tmp",
    }
    names = {e["name"] for e in env}
    # The platform's databases, unless the job names its own (as GitLab's scanning variables).
    defaults = {
        k: v
        for k, v in (
            ("TRIVY_DB_REPOSITORY", options.scanner_db_repository),
            ("TRIVY_JAVA_DB_REPOSITORY", options.scanner_java_db_repository),
        )
        if v and k not in names
    }
    mounts: list[dict[str, Any]] = [workspace_mount]
    if scan.registry_secret:
        own["DOCKER_CONFIG"] = _registry_auth(
            scan.registry_secret, volumes, mounts, "/conveyor/registry-auth"
        )
    return {
        "name": SCRIPT_CONTAINER,
        "image": options.scanner_image,
        "command": ["/bin/sh", "-c", SCAN_SCRIPT, "scan"],
        "args": ["--ignore-unfixed"] if scan.ignore_unfixed else [],
        "workingDir": "/tmp",
        "env": [e for e in env if e["name"] not in own]
        + [{"name": k, "value": k8s_escape(v)} for k, v in {**defaults, **own}.items()],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SCANNER_USER,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def _clair_container(
    scan: Scan,
    image: str,
    env: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    options: JobOptions,
) -> dict[str, Any]:
    """A Clair scan (kube/clair.py), with the registry's credentials as a Trivy scan gets them."""
    mounts: list[dict[str, Any]] = []
    docker_config = (
        _registry_auth(scan.registry_secret, volumes, mounts, "/conveyor/registry-auth")
        if scan.registry_secret
        else None
    )
    return clair_scan_container(
        scan,
        image,
        env,
        scanner_image=options.clair_scanner_image,
        clair_url=options.clair_url,
        docker_config=docker_config,
        mounts=mounts,
    )


def unprivileged_daemon_message(image: str) -> str:
    return (
        f"service {image} is a Docker daemon, which needs a privileged container: this "
        "operator runs without --privileged-services (GitLab's privileged = true), so it "
        "cannot start; use a build job (rootless BuildKit) instead"
    )


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


def is_docker_daemon(service: Service) -> bool:
    """Docker-in-Docker: the `docker` images whose tag says dind (docker:27-dind,
    docker:dind-rootless, docker:stable-dind)."""
    image = service.name.split("@")[0]
    repository, _, tag = (
        image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    )
    return repository.removeprefix("docker.io/").removeprefix("library/") == "docker" and (
        "dind" in tag
    )


# dockerd is ready when it answers on its TLS port with the certificates it made (the default
# since Docker 19.03, DOCKER_TLS_CERTDIR=/certs), or on the plain port when TLS is off.
DOCKER_READY = (
    'if [ -n "${DOCKER_TLS_CERTDIR:-}" ]; then '
    f"test -s {DOCKER_CERTS_DIR}/client/ca.pem && docker --host=tcp://127.0.0.1:2376 --tlsverify "
    f"--tlscacert={DOCKER_CERTS_DIR}/client/ca.pem --tlscert={DOCKER_CERTS_DIR}/client/cert.pem "
    f"--tlskey={DOCKER_CERTS_DIR}/client/key.pem info; "
    "else docker --host=tcp://127.0.0.1:2375 info; fi >/dev/null 2>&1"
)


def _as_docker_daemon(
    container: dict[str, Any], volumes: list[dict[str, Any]], script_mounts: list[dict[str, Any]]
) -> None:
    """A Docker daemon sidecar as GitLab's Kubernetes executor runs one: its client
    certificates shared with the script (in memory), its storage on a volume of its own, and
    the script started only once the daemon answers: the script's first `docker` command
    would otherwise race the daemon's start and its certificates."""
    if not any(v["name"] == DOCKER_CERTS_VOLUME for v in volumes):
        volumes += [
            {"name": DOCKER_CERTS_VOLUME, "emptyDir": {"medium": "Memory"}},
            {"name": DOCKER_STORAGE_VOLUME, "emptyDir": {}},
        ]
        script_mounts.append(
            {
                "name": DOCKER_CERTS_VOLUME,
                "mountPath": f"{DOCKER_CERTS_DIR}/client",
                "readOnly": True,
            }
        )
    container["volumeMounts"] = [
        *container["volumeMounts"],
        {"name": DOCKER_CERTS_VOLUME, "mountPath": f"{DOCKER_CERTS_DIR}/client"},
        {"name": DOCKER_STORAGE_VOLUME, "mountPath": "/var/lib/docker"},
    ]
    container["startupProbe"] = {
        "exec": {"command": ["/bin/sh", "-c", DOCKER_READY]},
        "periodSeconds": 2,
        "failureThreshold": 90,  # three minutes to start
    }


HEALTHCHECK_VARIABLE = "HEALTHCHECK_TCP_PORT"


def health_checked_services(
    services: Sequence[Service], names: Sequence[str], variables: Variables
) -> list[tuple[str, str]]:
    """(container name, port) of the services to wait for before the script: those whose
    HEALTHCHECK_TCP_PORT is set, as a service variable or a job's (services get the job's
    variables), as GitLab's Kubernetes executor does. Docker daemons are waited for by their
    startup probe already."""
    job_port = variables.raw.get(HEALTHCHECK_VARIABLE)
    out = []
    for service, name in zip(services, names, strict=True):
        own = service.variables.get(HEALTHCHECK_VARIABLE)
        port = variables.expand_raw(own) if own is not None else job_port
        if port and not is_docker_daemon(service):
            out.append((name, port))
    return out


def _services_wait_container(
    waited: Sequence[tuple[str, str]], options: JobOptions
) -> dict[str, Any]:
    """An init container after the services (so it starts once they have started): the
    transfer binary dials each port until it answers or the time is up, then the script starts,
    with a warning in the job's log for a service that never listened (GitLab's behaviour)."""
    return {
        "name": SERVICES_WAIT_CONTAINER,
        "image": options.transfer_image,
        "command": [
            "/bin/conveyor-transfer",
            "wait-services",
            str(options.wait_for_services_seconds),
            *(k8s_escape(f"{name}={port}") for name, port in waited),
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _service_container(
    service: Service,
    name: str,
    variables: Variables,
    env: list[dict[str, Any]],
    workspace_mount: dict[str, Any],
) -> dict[str, Any]:
    own = [{"name": k, "value": variables.expand_env(v)} for k, v in service.variables.items()]
    overridden = {e["name"] for e in own}
    container: dict[str, Any] = {
        "name": name,
        "image": variables.expand_raw(service.name),
        # A native sidecar: an init container that keeps running, stopped when the script ends.
        "restartPolicy": "Always",
        "env": [e for e in env if e["name"] not in overridden] + own,
        "volumeMounts": [workspace_mount],
    }
    if service.entrypoint is not None:
        container["command"] = list(service.entrypoint)
    if service.command is not None:
        container["args"] = list(service.command)
    return container
