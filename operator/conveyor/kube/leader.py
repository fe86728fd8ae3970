"""Leader election on a coordination.k8s.io Lease, so that of several operator replicas exactly
one acts (Kopf's peering does not stop a second instance from acting).

As client-go's leader election does: a replica takes the lease when it is free or when its
record has not changed for `lease_seconds` of this replica's own clock (so clock skew between
replicas does not matter), renews it every `retry_seconds`, and counts itself leader only while
its last successful renewal is younger than `renew_deadline_seconds`, which is shorter than the
lease: it stops being leader (and the fence stops its writes) before anyone else may take over.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("conveyor.leader")

LEASE_SECONDS = 10
RENEW_DEADLINE_SECONDS = 7
RETRY_SECONDS = 2


@dataclass(frozen=True)
class Record:
    """What the Lease says (spec)."""

    holder: str | None
    renew_time: str | None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """A record, and when (this replica's monotonic clock) it was first seen as it is."""

    record: Record
    seen_at: float


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """Remember when the record last changed, on our own clock (pure)."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def may_take(observation: Observation, me: str, now: float, lease_seconds: float) -> bool:
    """Whether `me` may write itself into the lease now (pure): it is free, ours, or its holder
    has not renewed it for a whole lease duration as we saw it."""
    record = observation.record
    return not record.holder or record.holder == me or now - observation.seen_at > lease_seconds


class Elector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        renew_deadline_seconds: float = RENEW_DEADLINE_SECONDS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_seconds < renew_deadline_seconds < lease_seconds:
            raise ValueError("leader election needs retry < renew deadline < lease duration")
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds = lease_seconds
        self.renew_deadline_seconds = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._observed: Observation | None = None
        self._renewed_at: float | None = None  # our clock, last successful write of the lease
        self._stop = threading.Event()

    def holds(self) -> bool:
        """Whether this replica is the leader now (its last renewal within the deadline)."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.renew_deadline_seconds

    def acquire(self) -> None:
        """Blocks until this replica is the leader."""
        log.info("waiting to lead: lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not self._stop.is_set():
            if self._try():
                log.info("leading: lease %s/%s is %s's", self.namespace, self.name, self.identity)
                return
            self._stop.wait(self.retry_seconds)

    def keep(self, lost: Callable[[], None]) -> threading.Thread:
        """Renews the lease in a thread; calls `lost()` once the renew deadline passed."""

        def loop() -> None:
            while not self._stop.wait(self.retry_seconds):
                self._try()
                if not self.holds():
                    log.error("lost the lease %s/%s", self.namespace, self.name)
                    lost()
                    return

        thread = threading.Thread(target=loop, name="leader-lease", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _try(self) -> bool:
        """One attempt to take or renew the lease; True when it is ours now."""
        started = self.clock()
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                log.warning("reading the lease: %s %s", e.status, e.reason)
                return False
            return self._create(started)
        except OSError as e:
            log.warning("reading the lease: %s", e)
            return False
        spec = lease.spec
        record = Record(spec.holder_identity, str(spec.renew_time), spec.lease_transitions or 0)
        self._observed = observe(self._observed, record, started)
        if not may_take(self._observed, self.identity, started, self.lease_seconds):
            return False
        transitions = record.transitions + (0 if record.holder == self.identity else 1)
        spec = self._spec(transitions, acquired=record.holder != self.identity)
        lease.spec.holder_identity = spec["holderIdentity"]
        lease.spec.lease_duration_seconds = spec["leaseDurationSeconds"]
        lease.spec.renew_time = spec["renewTime"]
        lease.spec.lease_transitions = transitions
        if "acquireTime" in spec:
            lease.spec.acquire_time = spec["acquireTime"]
        try:
            # resourceVersion in the body: a concurrent writer makes this a conflict, not a win.
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as e:
            if e.status != 409:
                log.warning("renewing the lease: %s %s", e.status, e.reason)
            return False
        except OSError as e:
            log.warning("renewing the lease: %s", e)
            return False
        self._renewed_at = started  # counted from before the request: never optimistic
        return True

    def _create(self, started: float) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(0, acquired=True),
        }
        try:
            self.coordination.create_namespaced_lease(self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                log.warning("creating the lease: %s %s", e.status, e.reason)
            return False
        self._renewed_at = started
        return True

    def _spec(self, transitions: int, *, acquired: bool) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        micro = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": micro,
            "leaseTransitions": transitions,
        }
        if acquired:
            spec["acquireTime"] = micro
        return spec
