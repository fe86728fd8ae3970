"""The container of a `build` job: BuildKit, rootless, building the checkout's Dockerfile and
pushing to the registry, with the registry's credentials as a file."""

from __future__ import annotations

import posixpath
from typing import Any

from conveyor.api.pipeline import Build, BuildCache
from conveyor.engine.variables.expand import Variables, k8s_escape
from conveyor.kube.defaults import SCRIPT_CONTAINER
from conveyor.kube.options import JobOptions

BUILDER_HOME = "/home/user"  # the rootless image's user
BUILDKIT_VOLUME = "buildkit"
REGISTRY_AUTH_VOLUME = "registry-auth"


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


def build_container(
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
        own["DOCKER_CONFIG"] = registry_auth(
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


def registry_auth(
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
