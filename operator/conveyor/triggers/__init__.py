"""Triggers: what turns a push into a PipelineRun with nobody applying YAML.

Pure decisions (run manifests, poll diffs, webhook parsing and authentication) plus the webhook's
aiohttp application, whose cluster I/O is injected by the operator.
"""

from __future__ import annotations

from conveyor.triggers.events import Delivery, Ping, PushEvent, RefDeleted
from conveyor.triggers.poll import (
    PollPlan,
    next_poll_delay,
    parse_ls_remote,
    plan_poll,
    poll_decisions,
    poll_error_patch,
    poll_status,
    split_remote_refs,
)
from conveyor.triggers.runs import run_for_event, run_for_push, run_name
from conveyor.triggers.selection import branch_matches, ref_selected
from conveyor.triggers.server import CREATED, EXISTS, webhook_app
from conveyor.triggers.webhook import PayloadError, parse_push, verify

__all__ = [
    "CREATED",
    "EXISTS",
    "Delivery",
    "PayloadError",
    "Ping",
    "PollPlan",
    "PushEvent",
    "RefDeleted",
    "branch_matches",
    "next_poll_delay",
    "parse_ls_remote",
    "parse_push",
    "plan_poll",
    "poll_decisions",
    "poll_error_patch",
    "poll_status",
    "ref_selected",
    "run_for_event",
    "run_for_push",
    "run_name",
    "split_remote_refs",
    "verify",
    "webhook_app",
]
