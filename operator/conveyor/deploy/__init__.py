"""Deploying a repository's templates to a target cluster.

Pure: `render` (templates -> manifests, deploy variables), `rollout` (is a workload done?),
`records` (what to keep between deployments). I/O: `target` (a client from kubeconfig bytes),
`apply` (server-side apply, prune, wait for rollout, rollback), `cluster` (error mapping).
"""

from __future__ import annotations

from conveyor.deploy.apply import (
    FIELD_MANAGER,
    AppliedObject,
    ApplyResult,
    ObjectRollout,
    RolloutResult,
    apply,
    prune,
    rollback,
    wait_rollout,
)
from conveyor.deploy.cluster import dynamic
from conveyor.deploy.errors import DeployError, KubeconfigError, RenderError, TargetUnavailable
from conveyor.deploy.records import DeployRecord, ObjectKey, kinds_of, label_selector
from conveyor.deploy.render import deploy_variables, render_templates
from conveyor.deploy.target import target_client

__all__ = [
    "FIELD_MANAGER",
    "AppliedObject",
    "ApplyResult",
    "DeployError",
    "DeployRecord",
    "KubeconfigError",
    "ObjectKey",
    "ObjectRollout",
    "RenderError",
    "RolloutResult",
    "TargetUnavailable",
    "apply",
    "deploy_variables",
    "dynamic",
    "kinds_of",
    "label_selector",
    "prune",
    "render_templates",
    "rollback",
    "target_client",
    "wait_rollout",
]
