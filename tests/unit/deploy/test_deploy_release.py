"""What an Approval records of a native deploy (its images) and holds the deploy to."""

import pytest

from conveyor.api import parse_pipeline_spec
from conveyor.api.pipelinerun import parse_run_status
from conveyor.deploy import DeployError
from conveyor.engine.record import built_images
from conveyor.reconcile.release import (
    DeployRequest,
    images_of,
    pin_built,
    preview_images,
    run_deploy,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
DEPLOYMENT = b"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: {{ REGISTRY }}/migrate:<VERSION>
      containers:
      - name: app
        image: {{ REGISTRY }}/app:<VERSION>
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  ports:
  - port: 80
"""


def request(registry: str, approved: tuple[str, ...] | None = None) -> DeployRequest:
    return DeployRequest(
        kubeconfig=b"not: used",  # refused before any cluster is contacted
        context=None,
        namespace="app",
        environment="prod",
        environment_object="prod",
        pipeline="p",
        run="r",
        job="deploy",
        ref="main",
        sha=SHA,
        files={"deployment.yml": DEPLOYMENT},
        changed_paths=frozenset({"src/main.go"}),
        version_paths=("src/",),
        hash_paths=("templates/",),
        variables={"REGISTRY": registry},
        rollback=False,
        rollout_seconds=10,
        approved_images=approved,
    )


def test_the_images_a_deploy_would_apply_are_rendered_without_a_cluster():
    assert preview_images(request("registry.a")) == (
        f"registry.a/migrate:main_{SHA}",
        f"registry.a/app:main_{SHA}",
    )


def test_a_deploy_refuses_images_other_than_the_approved_ones():
    approved = preview_images(request("registry.a"))
    with pytest.raises(DeployError) as e:
        run_deploy(request("registry.b", approved))
    message = str(e.value)
    assert f"registry.a/app:main_{SHA}" in message and f"registry.b/app:main_{SHA}" in message
    assert "nothing was applied" in message
    # An approval that named no image holds the deploy to none: it is no blank cheque.
    with pytest.raises(DeployError, match="nothing was applied"):
        run_deploy(request("registry.a", ()))


# --- images the run built are deployed by digest -------------------------------------------

DIGEST = "sha256:" + "c3" * 32


def workload(kind: str, image: str) -> dict:
    pod = {"containers": [{"name": "app", "image": image}], "initContainers": []}
    if kind == "CronJob":
        return {"kind": kind, "spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}}
    if kind == "Pod":
        return {"kind": kind, "spec": pod}
    return {"kind": kind, "spec": {"template": {"spec": pod}}}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "CronJob", "Pod"])
def test_a_built_image_is_pinned_to_its_digest_wherever_it_runs(kind):
    (m,) = pin_built([workload(kind, "reg/app:1")], {"reg/app:1": DIGEST})
    assert images_of([m]) == (f"reg/app:1@{DIGEST}",)


def test_other_images_and_other_kinds_are_left_alone():
    manifests = [workload("Deployment", "reg/other:1"), {"kind": "ConfigMap", "data": {}}]
    assert pin_built(manifests, {"reg/app:1": DIGEST}) == [
        workload("Deployment", "reg/other:1"),
        {"kind": "ConfigMap", "data": {}},
    ]


def test_the_runs_builds_are_known_by_their_expanded_image():
    spec = parse_pipeline_spec(
        {
            "jobs": [
                {"name": "img", "stage": "build", "build": {"image": "reg/app:1"}},
                {"name": "other", "stage": "build", "build": {"image": "reg/other:1"}},
                {"name": "test", "script": ["true"]},
            ]
        }
    )
    status = parse_run_status(
        {
            "jobs": [
                {"name": "img", "stage": "build", "phase": "Succeeded", "imageDigest": DIGEST},
                {"name": "other", "stage": "build", "phase": "Running"},
                # not a build: ignored
                {"name": "test", "stage": "test", "phase": "Succeeded", "imageDigest": DIGEST},
            ]
        }
    )
    assert built_images(spec, status) == {"reg/app:1": DIGEST}
