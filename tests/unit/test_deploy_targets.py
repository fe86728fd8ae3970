"""The run's TargetsReachable condition while a deploy retries towards a silent cluster."""

import datetime

from conveyor.engine.targets import with_target_condition

T0 = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=30)
SUCCEEDED = {"type": "Succeeded", "status": "Unknown", "reason": "Running"}


def test_no_outage_no_condition():
    status = {"phase": "Running", "conditions": [SUCCEEDED]}
    assert with_target_condition(status, [], T0) == (status, [])


def test_an_outage_is_a_false_condition_and_one_warning():
    status = {"phase": "Running", "conditions": [SUCCEEDED]}
    down = ["job 'deploy' cannot reach the cluster of environment 'test': timed out"]
    status, events = with_target_condition(status, down, T0)
    cond = status["conditions"][1]
    assert cond["type"] == "TargetsReachable" and cond["status"] == "False"
    assert cond["reason"] == "TargetUnavailable" and "environment 'test'" in cond["message"]
    assert cond["lastTransitionTime"] == "2026-11-26T10:00:00Z"
    assert [(e.type, e.reason) for e in events] == [("Warning", "TargetUnavailable")]
    # Still down later: the same condition, no second event, the first transition time kept.
    again, events = with_target_condition(status, down, T1)
    assert (
        events == [] and again["conditions"][1]["lastTransitionTime"] == cond["lastTransitionTime"]
    )
    assert status["conditions"][0] == SUCCEEDED


def test_back_again_turns_the_condition_true():
    status = {"phase": "Running", "conditions": [SUCCEEDED]}
    status, _ = with_target_condition(status, ["down"], T0)
    back, events = with_target_condition(status, [], T1)
    cond = back["conditions"][1]
    assert (cond["status"], cond["reason"]) == ("True", "TargetsReachable")
    assert cond["lastTransitionTime"] == "2026-11-26T10:00:30Z"
    assert [(e.type, e.reason) for e in events] == [("Normal", "TargetsReachable")]
    # And stays as it is after that.
    assert with_target_condition(back, [], T1) == (back, [])
