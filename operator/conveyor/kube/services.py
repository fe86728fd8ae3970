"""A job's services: their containers (init containers that keep running), their host names,
Docker-in-Docker as GitLab's Kubernetes executor runs it, and the wait for their health check
ports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.api.pipeline import Service
from conveyor.engine.names import DNS_LABEL, slug
from conveyor.engine.variables.expand import Variables, k8s_escape
from conveyor.kube.defaults import (
    CHECKOUT_CONTAINER,
    SCRIPT_CONTAINER,
    SERVICES_WAIT_CONTAINER,
    TRANSFER_CONTAINER,
)
from conveyor.kube.options import JobOptions

DOCKER_CERTS_DIR = "/certs"  # GitLab's DOCKER_TLS_CERTDIR; clients read <dir>/client
DOCKER_CERTS_VOLUME = "docker-certs"
DOCKER_STORAGE_VOLUME = "docker-storage"


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


def unprivileged_daemon_message(image: str) -> str:
    return (
        f"service {image} is a Docker daemon, which needs a privileged container: this "
        "operator runs without --privileged-services (GitLab's privileged = true), so it "
        "cannot start; use a build job (rootless BuildKit) instead"
    )


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


def as_docker_daemon(
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


def services_wait_container(
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


def service_container(
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
