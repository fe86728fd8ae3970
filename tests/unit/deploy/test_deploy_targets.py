"""The run's TargetsReachable condition while a deploy retries towards a silent cluster."""

import datetime

from conveyor.api.conditions import Condition
from conveyor.engine.targets import with_target_condition

T0 = datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=30)
SUCCEEDED = Condition("Succeeded", "Unknown", "Running")


def test_no_outage_no_condition():
    assert with_target_condition([SUCCEEDED], [], T0) == ((SUCCEEDED,), [])


def test_an_outage_is_a_false_condition_and_one_warning():
    down = ["job 'deploy' cannot reach the cluster of environment 'test': timed out"]
    conditions, events = with_target_condition([SUCCEEDED], down, T0)
    cond = conditions[1]
    assert cond.type == "TargetsReachable" and cond.status == "False"
    assert cond.reason == "TargetUnavailable" and "environment 'test'" in (cond.message or "")
    assert cond.last_transition_time == T0
    assert [(e.type, e.reason) for e in events] == [("Warning", "TargetUnavailable")]
    # Still down later: the same condition, no second event, the first transition time kept.
    again, events = with_target_condition(conditions, down, T1)
    assert events == [] and again[1].last_transition_time == T0
    assert again[0] == SUCCEEDED


def test_back_again_turns_the_condition_true():
    conditions, _ = with_target_condition([SUCCEEDED], ["down"], T0)
    back, events = with_target_condition(conditions, [], T1)
    cond = back[1]
    assert (cond.status, cond.reason) == ("True", "TargetsReachable")
    assert cond.last_transition_time == T1
    assert [(e.type, e.reason) for e in events] == [("Normal", "TargetsReachable")]
    # And stays as it is after that.
    assert with_target_condition(back, [], T1) == (back, [])


def test_the_observed_generation_is_kept():
    conditions, _ = with_target_condition([SUCCEEDED], ["down"], T0)
    conditions = (conditions[0], Condition(**{**conditions[1].__dict__, "observed_generation": 4}))
    again, _ = with_target_condition(conditions, ["down", "still"], T1)
    assert again[1].observed_generation == 4 and again[1].message == "down; still"


def test_the_status_json_keeps_its_other_conditions_as_they_were():
    from conveyor.api.pipelinerun import dump_run_status, parse_run_status
    from conveyor.engine.pass_decision import with_targets as _with_targets

    succeeded = {
        "type": "Succeeded",
        "status": "Unknown",
        "reason": "Running",
        "message": "1/2 jobs done",
        "lastTransitionTime": "2026-11-26T09:59:00Z",
        "observedGeneration": 2,
    }
    status = parse_run_status({"phase": "Running", "conditions": [succeeded]})
    assert _with_targets(status, [], T0) == (status, [])
    down, events = _with_targets(status, ["down"], T0)
    written = dump_run_status(down)
    assert written["conditions"][0] == succeeded and written["phase"] == "Running"
    assert written["conditions"][1] == {
        "type": "TargetsReachable",
        "status": "False",
        "reason": "TargetUnavailable",
        "message": "down",
        "lastTransitionTime": "2026-11-26T10:00:00Z",
    }
    assert len(events) == 1
