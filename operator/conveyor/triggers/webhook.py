"""Push webhooks from GitLab and GitHub: authentication and parsing, without any I/O.

GitLab sends its secret token verbatim in `X-Gitlab-Token`; GitHub signs the raw body with
HMAC-SHA256 (`X-Hub-Signature-256: sha256=<hex>`). Both are compared in constant time, and the
secret never appears in an exception, a log record or a response.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from conveyor.triggers.events import (
    REF_MAX,
    ZERO_SHA,
    Delivery,
    Ping,
    PushEvent,
    RefDeleted,
    is_sha,
    known_sha,
    split_ref,
)

GITLAB = "gitlab"
GITHUB = "github"

GITLAB_EVENT = "x-gitlab-event"
GITLAB_TOKEN = "x-gitlab-token"
GITLAB_DELIVERY = "x-gitlab-event-uuid"
GITHUB_EVENT = "x-github-event"
GITHUB_SIGNATURE = "x-hub-signature-256"
GITHUB_DELIVERY = "x-github-delivery"

GITLAB_PUSH_EVENTS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}
_FIELD_MAX = 512  # delivery ids, URLs and names copied into annotations


class PayloadError(ValueError):
    """The delivery is not a push Conveyor can act on (malformed JSON, another event, bad ref)."""


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    # HTTP header names are case-insensitive; callers may hand a plain dict.
    return {k.lower(): v for k, v in headers.items()}


def provider(headers: Mapping[str, str]) -> str | None:
    """`github`, `gitlab`, or None when the request carries neither's headers."""
    h = _lower(headers)
    if GITHUB_EVENT in h:
        return GITHUB
    if GITLAB_EVENT in h or GITLAB_TOKEN in h:
        return GITLAB
    return None


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret if isinstance(secret, bytes) else secret.encode("utf-8")


def github_signature(body: bytes, secret: str | bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body` (also used by tests)."""
    digest = hmac.new(_secret_bytes(secret), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(headers: Mapping[str, str], body: bytes, secret: str | bytes) -> bool:
    """Whether the delivery carries the right GitLab token or GitHub signature.

    An empty secret authenticates nothing (else an empty token header would match it).
    """
    key = _secret_bytes(secret)
    if not key:
        return False
    h = _lower(headers)
    kind = provider(h)
    if kind == GITHUB:
        given = h.get(GITHUB_SIGNATURE, "").strip().lower()
        if not given.startswith("sha256="):
            return False
        return hmac.compare_digest(given.encode("utf-8"), github_signature(body, key).encode())
    if kind == GITLAB:
        token = h.get(GITLAB_TOKEN)
        if token is None:
            return False
        return hmac.compare_digest(token.encode("utf-8"), key)
    return False


def _json_object(body: bytes, content_type: str) -> dict[str, Any]:
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        # GitHub's other content type: the JSON document in a `payload` form field.
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError("body is not a valid form") from exc
        if len(form.get("payload", ())) != 1:
            raise PayloadError("form has no payload field")
        body = form["payload"][0].encode("utf-8")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise PayloadError("body is not a JSON object")
    return data


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value[:_FIELD_MAX]
    return None


def _ref(data: Mapping[str, Any]) -> tuple[str, bool]:
    ref = data.get("ref")
    split = split_ref(ref) if isinstance(ref, str) else None
    if split is None:
        raise PayloadError("ref is not refs/heads/<branch> or refs/tags/<tag>")
    if len(split[0]) > REF_MAX:
        raise PayloadError(f"ref is longer than {REF_MAX} characters")
    return split


def _sha(value: Any, what: str) -> str:
    if not isinstance(value, str) or not is_sha(value.lower()):
        raise PayloadError(f"{what} is not a 40-hex commit SHA")
    return value.lower()


def _before(value: Any) -> str | None:
    # A new ref has before = zeros; anything unusable is just "unknown", not an error.
    if isinstance(value, str) and is_sha(value.lower()):
        return known_sha(value.lower())
    return None


def _object(value: Any) -> Mapping[str, Any]:
    """A payload's JSON object, or an empty one when the field is missing or not an object."""
    return value if isinstance(value, dict) else {}


def _gitlab(h: Mapping[str, str], data: Mapping[str, Any]) -> Delivery:
    event = h.get(GITLAB_EVENT, "")
    kind = GITLAB_PUSH_EVENTS.get(event)
    if kind is None:
        raise PayloadError(f"GitLab event {event[:64]!r} is not a push")
    if data.get("object_kind") not in (None, kind):
        raise PayloadError("object_kind does not match the X-Gitlab-Event header")
    name, tag = _ref(data)
    after = data.get("after")
    checkout = data.get("checkout_sha")
    if after == ZERO_SHA:
        return RefDeleted(name, tag)
    # checkout_sha is the commit; for an annotated tag `after` is the tag object.
    sha = _sha(checkout or after, "checkout_sha" if checkout else "after")
    project = _object(data.get("project"))
    repository = _object(data.get("repository"))
    return PushEvent(
        name,
        sha,
        _before(data.get("before")),
        tag=tag,
        provider=GITLAB,
        delivery=_text(h.get(GITLAB_DELIVERY)),
        repository=_text(project.get("git_http_url")) or _text(repository.get("git_http_url")),
        pusher=_text(data.get("user_username")),
    )


def _github(h: Mapping[str, str], data: Mapping[str, Any]) -> Delivery:
    event = h.get(GITHUB_EVENT, "")
    if event == "ping":
        hook_id = data.get("hook_id")
        return Ping(str(hook_id)[:64] if hook_id is not None else None)
    if event != "push":
        raise PayloadError(f"GitHub event {event[:64]!r} is not a push")
    name, tag = _ref(data)
    after = data.get("after")
    if data.get("deleted") is True or after == ZERO_SHA:
        return RefDeleted(name, tag)
    sha = _sha(after, "after")
    head = data.get("head_commit")
    if tag and isinstance(head, dict) and isinstance(head.get("id"), str):
        # For an annotated tag `after` is the tag object; head_commit is the commit it tags.
        sha = _sha(head["id"], "head_commit.id")
    repo = _object(data.get("repository"))
    pusher = _object(data.get("pusher"))
    return PushEvent(
        name,
        sha,
        _before(data.get("before")),
        tag=tag,
        provider=GITHUB,
        delivery=_text(h.get(GITHUB_DELIVERY)),
        repository=_text(repo.get("clone_url")),
        pusher=_text(pusher.get("name")),
    )


def parse_push(headers: Mapping[str, str], body: bytes) -> Delivery:
    """The push (or ref deletion, or GitHub ping) a verified delivery describes.

    Raises PayloadError for anything else: malformed JSON, other events, refs that are neither
    branches nor tags, SHAs that are not 40-hex. Call `verify` first: parsing is for trusted bodies.
    """
    h = _lower(headers)
    kind = provider(h)
    if kind is None:
        raise PayloadError("neither X-Gitlab-Event nor X-GitHub-Event is set")
    data = _json_object(body, h.get("content-type", "application/json"))
    if kind == GITHUB:
        return _github(h, data)
    return _gitlab(h, data)
