"""Retrying failed passes: backoff per run, one log line per cause and interval."""

from conveyor.reconcile.retry import Backoff, Quiet


def test_backoff_doubles_to_a_minute_and_resets_on_success():
    backoff = Backoff()
    assert [backoff.failed("r") for _ in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.failed("other") == 2  # per run
    backoff.succeeded("r")
    assert backoff.failed("r") == 2


def test_a_cause_is_said_once_per_interval_with_how_many_were_held_back():
    quiet = Quiet(interval=30)
    assert quiet.say("API server down", 0.0) == 0
    assert [quiet.say("API server down", t) for t in (1.0, 2.0, 29.0)] == [None, None, None]
    assert quiet.say("another cause", 5.0) == 0
    assert quiet.say("API server down", 31.0) == 3
    assert quiet.say("API server down", 32.0) is None
