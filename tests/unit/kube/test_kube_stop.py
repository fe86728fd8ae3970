"""Stopping a cancelled job's pods without deleting them (their logs stay)."""

from __future__ import annotations

from conveyor.kube.stop import pods_to_stop, stop_patch


def pod(name, phase="Running", deadline=None, deleting=False):
    body = {"metadata": {"name": name}, "spec": {}, "status": {"phase": phase}}
    if deadline is not None:
        body["spec"]["activeDeadlineSeconds"] = deadline
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return body


def test_a_job_without_a_pod_is_deleted_instead():
    assert pods_to_stop([]) is None


def test_only_pods_that_still_run_are_stopped_and_only_once():
    assert pods_to_stop([pod("b"), pod("a", "Pending")]) == ["a", "b"]
    assert pods_to_stop([pod("a", "Succeeded"), pod("b", "Failed")]) == []
    assert pods_to_stop([pod("a", deadline=1), pod("b", deleting=True)]) == []
    assert pods_to_stop([pod("a", deadline=3600)]) == ["a"]  # a deadline of its own: lowered


def test_the_stop_is_the_pods_active_deadline():
    assert stop_patch() == {"spec": {"activeDeadlineSeconds": 1}}
