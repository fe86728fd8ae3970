"""Push triggers: polling repositories and answering webhooks, turning pushes into PipelineRuns.

Runs get deterministic names per (pipeline, ref, sha), so the same push seen twice (a webhook
retry, a poll after a restart, a webhook and a poll) creates one run: the second create is
refused with 409 Conflict and counts as "already there". Poll state (the heads last seen) lives
in the Pipeline's status, so a restarted operator polls on from where it was.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes.client.rest import ApiException

from conveyor.api import ModelError, Pipeline, format_time
from conveyor.api.pipeline import PipelineSpec, PollStatus, PollTrigger, WebhookTrigger
from conveyor.kube.client import Kube
from conveyor.kube.defaults import DEFAULT_CREDENTIALS_NAMESPACE
from conveyor.reconcile.sources import Sources, SourceUnavailable
from conveyor.triggers import (
    CREATED,
    EXISTS,
    next_poll_delay,
    plan_poll,
    poll_error_patch,
    poll_status,
    run_for_event,
)

log = logging.getLogger("conveyor.triggers")

Key = tuple[str, str]
PipelineLookup = Callable[[Key], dict[str, Any] | None]
Io = Callable[..., Awaitable[Any]]


def _poll_trigger(body: dict[str, Any]) -> tuple[PipelineSpec, PollTrigger] | None:
    try:
        spec = Pipeline.from_dict(body).spec
    except ModelError:
        return None
    if spec is None or spec.triggers is None or spec.triggers.poll is None:
        return None
    return spec, spec.triggers.poll


def webhook_secret_name(namespace: str, name: str) -> str:
    """The Secret of the credentials namespace holding namespace `namespace`'s webhook token
    `name`: prefixed, so a team can only name tokens the platform made for it."""
    return f"{namespace}.{name}"


class TriggerManager:
    def __init__(
        self,
        kube: Kube,
        sources: Sources,
        pipelines: PipelineLookup,
        io: Io,
        clock: Callable[[], datetime.datetime],
        credentials_namespace: str = DEFAULT_CREDENTIALS_NAMESPACE,
    ) -> None:
        # Webhook tokens live there, as <namespace>.<name>: a token the team could read would
        # let any of its members deliver a push in someone else's name (the pusher rule).
        self.credentials_namespace = credentials_namespace
        self.kube, self.sources, self.pipelines, self.io, self.clock = (
            kube,
            sources,
            pipelines,
            io,
            clock,
        )
        self._polls: dict[Key, asyncio.Task[None]] = {}
        # The poll status this operator last wrote: the watch may not have brought it back yet.
        self._written: dict[Key, PollStatus] = {}

    # -- poll
    def pipeline_changed(self, key: Key, body: dict[str, Any] | None) -> None:
        """Starts or stops the pipeline's poll loop to match its spec."""
        wanted = body is not None and _poll_trigger(body) is not None
        task = self._polls.get(key)
        if wanted and (task is None or task.done()):
            self._polls[key] = asyncio.create_task(self._poll_loop(key), name=f"poll {key}")
        elif not wanted and task is not None:
            task.cancel()
            del self._polls[key]
            self._written.pop(key, None)

    def stop(self) -> None:
        for task in self._polls.values():
            task.cancel()

    def _previous(self, key: Key, body: dict[str, Any]) -> PollStatus | None:
        stored = poll_status(body.get("status"))
        ours = self._written.get(key)
        if ours is None or (
            stored is not None
            and stored.last_poll_time is not None
            and ours.last_poll_time is not None
            and stored.last_poll_time >= ours.last_poll_time
        ):
            return stored
        return ours

    async def _poll_loop(self, key: Key) -> None:
        while True:
            body = self.pipelines(key)
            found = _poll_trigger(body) if body is not None else None
            if body is None or found is None:
                return
            spec, trigger = found
            previous = self._previous(key, body)
            now = self.clock()
            last = previous.last_poll_time if previous else None
            delay = next_poll_delay(trigger, last, now)
            if delay > 0:
                await asyncio.sleep(delay)  # the trigger's interval: this loop's purpose
                continue
            try:
                await self.poll_once(key, spec, trigger, previous, now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling for pipeline %s/%s failed", *key)
                await asyncio.sleep(trigger.interval_seconds)

    async def poll_once(
        self,
        key: Key,
        spec: PipelineSpec,
        trigger: PollTrigger,
        previous: PollStatus | None,
        now: datetime.datetime,
    ) -> None:
        namespace, name = key
        try:
            branches, tags = await self.sources.remote_refs(namespace, spec)
        except SourceUnavailable as e:
            log.warning("polling for pipeline %s/%s: %s", namespace, name, e)
            patch = {**poll_error_patch(str(e)), "lastPollTime": format_time(now)}
            await self._write(key, patch)
            return
        plan = plan_poll(trigger, branches, tags, previous, now)
        for event in plan.events:
            await self.create_run(run_for_event(name, namespace, event, "poll"), namespace)
        await self._write(key, plan.patch)

    async def _write(self, key: Key, poll_patch: dict[str, Any]) -> None:
        namespace, name = key
        updated = await self.io(
            self.kube.patch_pipeline_status, namespace, name, {"triggers": {"poll": poll_patch}}
        )
        status = poll_status(updated.get("status"))
        if status is not None:
            self._written[key] = status

    # -- webhook (the aiohttp app's injected I/O)
    async def webhook_lookup(
        self, namespace: str, name: str
    ) -> tuple[WebhookTrigger, bytes] | None:
        body = self.pipelines((namespace, name))
        if body is None:
            return None
        try:
            spec = Pipeline.from_dict(body).spec
        except ModelError:
            return None
        if spec is None or spec.triggers is None or spec.triggers.webhook is None:
            return None
        trigger = spec.triggers.webhook
        secret_name = webhook_secret_name(namespace, trigger.secret_ref.name)
        try:
            data = await self.sources.credentials(self.credentials_namespace, secret_name)
        except SourceUnavailable as e:
            # Said to the operator's log, not to whoever knocks: 404 either way.
            log.warning("webhook of pipeline %s/%s: %s", namespace, name, e)
            return None
        secret = (data or {}).get(trigger.secret_ref.key)
        if not secret:
            log.warning(
                "webhook of pipeline %s/%s: Secret %s/%s has no key %r",
                namespace,
                name,
                self.credentials_namespace,
                secret_name,
                trigger.secret_ref.key,
            )
            return None
        return trigger, secret

    async def create_run(self, manifest: dict[str, Any], namespace: str) -> str:
        try:
            await self.io(self.kube.create_run, namespace, manifest)
        except ApiException as e:
            if e.status == 409:
                return EXISTS
            raise
        log.info("created run %s/%s for a push", namespace, manifest["metadata"]["name"])
        return CREATED
