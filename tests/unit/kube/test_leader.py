"""Leader election's decisions and the fence (conveyor.kube.leader, conveyor.kube.fence)."""

from __future__ import annotations

import pytest
from kubernetes import client

from conveyor.kube import fence
from conveyor.kube.leader import Elector, Record, may_take, observe


def test_a_lease_is_taken_only_when_free_ours_or_unrenewed_for_a_whole_duration():
    free = observe(None, Record(None, None), 100.0)
    assert may_take(free, "b", 100.0, 10)
    held = observe(None, Record("a", "t1"), 100.0)
    assert may_take(held, "a", 100.0, 10)  # ours: renew
    assert not may_take(held, "b", 109.0, 10)
    # The holder renews (the record changes): the clock starts again, on our side.
    renewed = observe(held, Record("a", "t2"), 108.0)
    assert renewed.seen_at == 108.0 and not may_take(renewed, "b", 115.0, 10)
    # Unchanged since we first saw it, for longer than the lease: the holder is gone.
    same = observe(renewed, Record("a", "t2"), 119.0)
    assert same is renewed and may_take(same, "b", 119.0, 10)


def test_a_leader_stops_counting_itself_leader_before_others_may_take_over():
    now = [0.0]
    elector = Elector(client.ApiClient(), "ns", "l", "a", clock=lambda: now[0])
    assert not elector.holds()
    elector._renewed_at = 0.0
    now[0] = 6.9
    assert elector.holds()
    now[0] = 7.0  # the renew deadline (7 s) comes before the lease (10 s) runs out for others
    assert not elector.holds()
    with pytest.raises(ValueError):
        Elector(client.ApiClient(), "ns", "l", "a", lease_seconds=5, renew_deadline_seconds=7)


def test_the_fence_lets_writes_through_only_while_leading(monkeypatch):
    exits: list[int] = []
    monkeypatch.setattr(fence.os, "_exit", exits.append)
    sent: list[str] = []
    api = client.ApiClient()
    monkeypatch.setattr(api.rest_client, "request", lambda method, *a, **k: sent.append(method))
    fence.guard(api)
    leading = [True]
    fence.set_leadership(lambda: leading[0])
    try:
        api.rest_client.request("PATCH", "url")
        api.rest_client.request("GET", "url")
        leading[0] = False
        api.rest_client.request("GET", "url")  # reads are harmless
        assert exits == []
        api.rest_client.request("POST", "url")
        assert exits == [3]  # stopped before the write
    finally:
        fence.set_leadership(None)
