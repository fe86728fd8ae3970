"""Retrying failed passes: backoff per run, one log line per cause and interval."""

import logging

from conveyor.reconcile.retry import Backoff, Quiet, QuietRequestRetries


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


def _kopf_record(message: str, name: str = "kopf._cogs.clients.watching") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)


def test_kopf_request_attempts_are_said_once_per_cause_and_interval():
    now = [0.0]
    quiet = QuietRequestRetries(interval=30, clock=lambda: now[0])
    url = "GET https://127.0.0.1:16443/apis/batch/v1/jobs?watch=true"
    refused = (
        f"Request attempt #3/9 failed; will retry: {url} -> ClientConnectorError(ConnectionKey("
        "host='127.0.0.1', port=16443), ConnectionRefusedError(111, 'Connect call failed'))"
    )
    first = _kopf_record(refused)
    assert quiet.filter(first)
    said = first.getMessage()
    assert first.levelname == "WARNING" and said.startswith(
        "Kubernetes API requests failing: ClientConnectorError (ConnectionRefusedError(111, "
    )
    assert "retrying with backoff" in said and "held" not in said
    # Four more watches failing the same way within the interval: not said.
    assert [quiet.filter(_kopf_record(refused)) for _ in range(4)] == [False] * 4
    forbidden = f"Request attempt #6/9 failed; will retry: {url} -> APIForbiddenError('no')"
    assert quiet.filter(_kopf_record(forbidden))  # another cause: said at once
    now[0] = 31.0
    again = _kopf_record(refused.replace("will retry", "escalating"))
    assert quiet.filter(again) and "(4 more failed attempts since" in again.getMessage()


def test_other_records_pass_unchanged():
    quiet = QuietRequestRetries()
    ours = _kopf_record("Request attempt #1/9 failed; will retry: X Y -> E()", name="conveyor")
    kopf = _kopf_record("Handler 'x' succeeded.")
    assert quiet.filter(ours) and quiet.filter(kopf)
    assert kopf.levelno == ours.levelno == logging.ERROR
