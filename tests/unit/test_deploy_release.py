"""What an Approval records of a native deploy (its images) and holds the deploy to."""

import pytest

from conveyor.deploy import DeployError
from conveyor.reconcile.release import DeployRequest, preview_images, run_deploy

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


def request(registry: str, approved: tuple[str, ...] = ()) -> DeployRequest:
    return DeployRequest(
        kubeconfig=b"not: used",  # refused before any cluster is contacted
        context=None,
        namespace="app",
        environment="prod",
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
