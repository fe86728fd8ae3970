"""When a workload counts as rolled out (pure), and the deployment record kept between deploys."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.deploy import DeployRecord, kinds_of, label_selector
from conveyor.deploy.records import identity
from conveyor.deploy.rollout import needs_rollout, rollout_state


def deployment(want: int = 2, generation: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": want},
        "status": status,
    }


AVAILABLE = {"type": "Available", "status": "True"}
DONE = dict(observedGeneration=3, replicas=2, updatedReplicas=2, availableReplicas=2)


def test_deployment_ready():
    v = rollout_state(deployment(**DONE, conditions=[AVAILABLE]), 3)
    assert (v.state, v.reason) == ("ready", "Available")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({**DONE, "observedGeneration": 2}, "Pending"),
        ({**DONE, "updatedReplicas": 1}, "Updating"),
        ({**DONE, "replicas": 3}, "Terminating"),
        ({**DONE, "availableReplicas": 1}, "Starting"),
        ({**DONE, "conditions": [{"type": "Available", "status": "False"}]}, "Unavailable"),
    ],
)
def test_deployment_progressing(status, reason):
    status.setdefault("conditions", [AVAILABLE])
    v = rollout_state(deployment(**status), 3)
    assert (v.state, v.reason) == ("progressing", reason)


def test_a_status_from_before_our_apply_never_counts():
    # The object as read still says generation 3, but our apply produced generation 4.
    v = rollout_state(deployment(**DONE, conditions=[AVAILABLE]), 4)
    assert v.state == "progressing"
    assert "generation 4" in v.message


def test_progress_deadline_exceeded_fails_early():
    progressing = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "go-app-5d4" has timed out progressing.',
    }
    v = rollout_state(deployment(**{**DONE, "updatedReplicas": 1}, conditions=[progressing]), 3)
    assert (v.state, v.reason) == ("failed", "ProgressDeadlineExceeded")
    assert "timed out progressing" in v.message


def test_zero_replicas_is_ready_without_available_condition():
    v = rollout_state(deployment(want=0, observedGeneration=3), 3)
    assert v.state == "ready"


def statefulset(**status: Any) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"generation": 1},
        "spec": {"replicas": 3},
        "status": {"observedGeneration": 1, **status},
    }


def test_statefulset():
    done = dict(readyReplicas=3, updatedReplicas=3, currentRevision="r2", updateRevision="r2")
    assert rollout_state(statefulset(**done)).state == "ready"
    assert rollout_state(statefulset(**{**done, "readyReplicas": 2})).state == "progressing"
    assert rollout_state(statefulset(**{**done, "currentRevision": "r1"})).state == "progressing"
    partitioned = statefulset(**{**done, "currentRevision": "r1", "updatedReplicas": 1})
    partitioned["spec"]["updateStrategy"] = {"rollingUpdate": {"partition": 2}}
    assert rollout_state(partitioned).state == "ready"
    on_delete = statefulset()
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert rollout_state(on_delete).reason == "OnDelete"


def test_daemonset():
    ds = {
        "kind": "DaemonSet",
        "metadata": {"generation": 2},
        "spec": {},
        "status": {
            "observedGeneration": 2,
            "desiredNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberReady": 3,
            "numberAvailable": 3,
        },
    }
    assert rollout_state(ds).state == "ready"
    ds["status"]["numberReady"] = 2
    assert rollout_state(ds).state == "progressing"
    ds["status"]["updatedNumberScheduled"] = 1
    assert rollout_state(ds).reason == "Updating"


def test_other_kinds_need_nothing():
    assert rollout_state({"kind": "Service", "metadata": {}}).state == "ready"
    assert needs_rollout("apps/v1", "Deployment")
    assert needs_rollout("apps/v1", "StatefulSet")
    assert not needs_rollout("v1", "Service")
    assert not needs_rollout("example.com/v1", "Deployment")


def test_record_round_trip_and_kinds():
    record = DeployRecord(
        manifests=[{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}],
        objects=[
            ("v1", "Service", "app", "a"),
            ("monitoring.coreos.com/v1", "ServiceMonitor", "monitoring", "a"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", None, "r"),
        ],
    )
    again = DeployRecord.from_dict(record.to_dict())
    assert again == record
    assert record.namespaces == {"app", "monitoring"}
    assert kinds_of(record, None, extra=[("apps/v1", "Deployment")]) == {
        ("v1", "Service"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("apps/v1", "Deployment"),
    }


def test_identity_ignores_the_version_and_selector_is_sorted():
    assert identity(("autoscaling/v1", "HorizontalPodAutoscaler", "n", "a")) == identity(
        ("autoscaling/v2", "HorizontalPodAutoscaler", "n", "a")
    )
    assert identity(("v1", "Service", "n", "a")) == ("", "Service", "n", "a")
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
