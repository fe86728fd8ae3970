"""Webhooks: GitLab and GitHub parsing and authentication, and the aiohttp endpoint.

Payloads are written by hand in the shape of the real push deliveries of both services.
"""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest
from aiohttp.test_utils import TestClient, TestServer

from conveyor.api.pipeline import SecretKeyRef, WebhookTrigger
from conveyor.api.pipelinerun import PipelineRun
from conveyor.triggers import (
    PayloadError,
    Ping,
    PushEvent,
    RefDeleted,
    parse_push,
    run_name,
    verify,
    webhook_app,
)
from conveyor.triggers.webhook import github_signature

BEFORE = "95790bf891e76fee5e1747ab589903a6a1f80f22"
AFTER = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
TAG_OBJECT = "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
ZERO = "0" * 40
SECRET = "s3cr3t-Webhook-T0ken"


def gitlab_push(ref="refs/heads/main", before=BEFORE, after=AFTER, checkout_sha=AFTER):
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": checkout_sha,
        "message": None,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=8://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Diaspora",
            "description": "",
            "web_url": "http://example.com/mike/diaspora",
            "avatar_url": None,
            "git_ssh_url": "git@example.com:mike/diaspora.git",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "namespace": "Mike",
            "visibility_level": 0,
            "path_with_namespace": "mike/diaspora",
            "default_branch": "main",
            "homepage": "http://example.com/mike/diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "ssh_url": "git@example.com:mike/diaspora.git",
            "http_url": "http://example.com/mike/diaspora.git",
        },
        "commits": [
            {
                "id": AFTER,
                "message": "fixed readme",
                "title": "fixed readme",
                "timestamp": "2012-01-03T23:36:29+02:00",
                "url": f"http://example.com/mike/diaspora/commit/{AFTER}",
                "author": {"name": "GitLab dev user", "email": "[REDACTED]"},
                "added": ["CHANGELOG"],
                "modified": ["app/controller/application.rb"],
                "removed": [],
            }
        ],
        "total_commits_count": 1,
        "repository": {
            "name": "Diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "description": "",
            "homepage": "http://example.com/mike/diaspora",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "git_ssh_url": "git@example.com:mike/diaspora.git",
            "visibility_level": 0,
        },
    }


def gitlab_tag_push(tag="v1.0.0", after=TAG_OBJECT, checkout_sha=AFTER):
    body = gitlab_push(ref=f"refs/tags/{tag}", before=ZERO, after=after, checkout_sha=checkout_sha)
    body["object_kind"] = body["event_name"] = "tag_push"
    body["commits"] = []
    body["total_commits_count"] = 0
    return body


def gitlab_headers(event="Push Hook", token=SECRET):
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "X-Gitlab-Webhook-UUID": "3d6c8d7a-1c0c-4b7b-9a5c-6f0d4d0c3a1e",
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


def github_push(ref="refs/heads/main", before=BEFORE, after=AFTER, deleted=False, created=False):
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "repository": {
            "id": 186853002,
            "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": "Hello-World",
            "full_name": "Codertocat/Hello-World",
            "private": False,
            "owner": {"name": "Codertocat", "login": "Codertocat", "id": 21031067},
            "html_url": "https://github.com/Codertocat/Hello-World",
            "clone_url": "https://github.com/Codertocat/Hello-World.git",
            "ssh_url": "git@github.com:Codertocat/Hello-World.git",
            "default_branch": "main",
        },
        "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
        "sender": {"login": "Codertocat", "id": 21031067, "type": "User"},
        "created": created,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/Codertocat/Hello-World/compare/{before[:12]}...{after[:12]}",
        "commits": []
        if deleted
        else [
            {
                "id": after,
                "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
                "distinct": True,
                "message": "Update README.md",
                "timestamp": "2019-05-15T15:20:30-05:00",
                "url": f"https://github.com/Codertocat/Hello-World/commit/{after}",
                "author": {
                    "name": "Codertocat",
                    "email": "21031067+Codertocat@users.noreply.github.com",
                },
                "added": [],
                "removed": [],
                "modified": ["README.md"],
            }
        ],
        "head_commit": None if deleted else {"id": after, "message": "Update README.md"},
    }


def github_ping():
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 109948940,
        "hook": {"type": "Repository", "id": 109948940, "events": ["push"], "active": True},
        "repository": {"full_name": "Codertocat/Hello-World"},
        "sender": {"login": "Codertocat"},
    }


def github_headers(body: bytes, event="push", secret=SECRET, signature=None):
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-GitHub-Event": event,
        "X-GitHub-Hook-ID": "109948940",
    }
    if signature is None and secret is not None:
        signature = github_signature(body, secret)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return headers


def encode(payload) -> bytes:
    return json.dumps(payload).encode()


# --- parsing ---------------------------------------------------------------------------------


def test_gitlab_push_hook():
    event = parse_push(gitlab_headers(), encode(gitlab_push()))
    assert event == PushEvent(
        "main",
        AFTER,
        BEFORE,
        tag=False,
        provider="gitlab",
        delivery="13792a34-cac6-4fda-95a8-c58e00a3954e",
        repository="http://example.com/mike/diaspora.git",
        pusher="jsmith",
    )


def test_gitlab_new_branch_has_no_before_sha():
    event = parse_push(
        gitlab_headers(), encode(gitlab_push(ref="refs/heads/feature/x", before=ZERO))
    )
    assert isinstance(event, PushEvent)
    assert (event.ref, event.before_sha) == ("feature/x", None)


def test_gitlab_tag_push_builds_the_tagged_commit_not_the_tag_object():
    event = parse_push(gitlab_headers("Tag Push Hook"), encode(gitlab_tag_push()))
    assert isinstance(event, PushEvent)
    assert (event.ref, event.tag, event.sha, event.before_sha) == ("v1.0.0", True, AFTER, None)


def test_gitlab_branch_deletion():
    body = gitlab_push(after=ZERO, checkout_sha=None)
    assert parse_push(gitlab_headers(), encode(body)) == RefDeleted("main")


def test_github_push():
    body = encode(github_push())
    event = parse_push(github_headers(body), body)
    assert event == PushEvent(
        "main",
        AFTER,
        BEFORE,
        provider="github",
        delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        repository="https://github.com/Codertocat/Hello-World.git",
        pusher="Codertocat",
    )


def test_github_created_branch_and_deletion():
    body = encode(github_push(ref="refs/heads/topic", before=ZERO, created=True))
    event = parse_push(github_headers(body), body)
    assert isinstance(event, PushEvent)
    assert (event.ref, event.before_sha) == ("topic", None)
    body = encode(github_push(after=ZERO, deleted=True))
    assert parse_push(github_headers(body), body) == RefDeleted("main")


def test_github_annotated_tag_uses_head_commit():
    payload = github_push(ref="refs/tags/v2", before=ZERO, after=TAG_OBJECT, created=True)
    payload["head_commit"] = {"id": AFTER}
    body = encode(payload)
    event = parse_push(github_headers(body), body)
    assert isinstance(event, PushEvent)
    assert (event.ref, event.tag, event.sha) == ("v2", True, AFTER)


def test_github_form_encoded_push():
    body = urllib.parse.urlencode({"payload": json.dumps(github_push())}).encode()
    headers = github_headers(body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert verify(headers, body, SECRET)
    event = parse_push(headers, body)
    assert isinstance(event, PushEvent)
    assert (event.ref, event.sha) == ("main", AFTER)
    with pytest.raises(PayloadError, match="payload"):
        parse_push(headers, b"other=1")


def test_github_ping():
    body = encode(github_ping())
    assert parse_push(github_headers(body, event="ping"), body) == Ping("109948940")


def test_headers_are_case_insensitive():
    headers = {k.lower(): v for k, v in gitlab_headers().items()}
    assert isinstance(parse_push(headers, encode(gitlab_push())), PushEvent)
    assert verify(headers, b"{}", SECRET)


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        (gitlab_headers(), b"{not json", "not valid JSON"),
        (gitlab_headers(), b"[1, 2]", "not a JSON object"),
        (gitlab_headers("Merge Request Hook"), encode(gitlab_push()), "not a push"),
        (gitlab_headers(), encode(gitlab_push(ref="refs/merge-requests/1/head")), "ref is not"),
        (gitlab_headers(), encode(gitlab_push(ref="main")), "ref is not"),
        (gitlab_headers(), encode(gitlab_push(after="abc", checkout_sha=None)), "40-hex"),
        (gitlab_headers(), encode(gitlab_push(ref="refs/heads/" + "b" * 256)), "longer than"),
        (github_headers(b"{}", event="issues"), encode(github_push()), "not a push"),
        ({"Content-Type": "application/json"}, encode(gitlab_push()), "neither"),
    ],
)
def test_what_is_not_a_push(headers, body, problem):
    with pytest.raises(PayloadError, match=problem):
        parse_push(headers, body)


# --- authentication --------------------------------------------------------------------------


def test_verify_gitlab_token():
    body = encode(gitlab_push())
    assert verify(gitlab_headers(), body, SECRET)
    assert verify(gitlab_headers(), body, SECRET.encode())
    assert not verify(gitlab_headers(token="wrong"), body, SECRET)
    assert not verify(gitlab_headers(token=SECRET + " "), body, SECRET)
    assert not verify(gitlab_headers(token=None), body, SECRET)
    assert not verify(gitlab_headers(token=""), body, "")  # an empty secret admits nobody


def test_verify_github_signature_covers_the_raw_body():
    body = encode(github_push())
    assert verify(github_headers(body), body, SECRET)
    assert not verify(github_headers(body), body + b" ", SECRET)
    assert not verify(github_headers(body, secret="other"), body, SECRET)
    assert not verify(github_headers(body, secret=None), body, SECRET)
    bare = github_signature(body, SECRET).removeprefix("sha256=")
    assert not verify(github_headers(body, signature=bare), body, SECRET)
    upper = "sha256=" + bare.upper()
    assert verify(github_headers(body, signature=upper), body, SECRET)


def test_verify_without_provider_headers():
    assert not verify({"Authorization": f"Bearer {SECRET}"}, b"{}", SECRET)


# --- the endpoint ----------------------------------------------------------------------------


class Cluster:
    """Stands in for the operator's I/O: one pipeline with a webhook trigger, runs by name."""

    def __init__(self, trigger: WebhookTrigger | None) -> None:
        self.trigger = trigger
        self.runs: dict[tuple[str, str], dict] = {}
        self.fail = False
        self.lookups = 0

    async def lookup(self, namespace, pipeline):
        self.lookups += 1
        if (namespace, pipeline) != ("ci", "app") or self.trigger is None:
            return None
        return self.trigger, SECRET

    async def create_run(self, manifest, namespace):
        if self.fail:
            raise RuntimeError("API server unavailable")
        key = (namespace, manifest["metadata"]["name"])
        if key in self.runs:
            return "exists"
        self.runs[key] = manifest
        return "created"


TRIGGER = WebhookTrigger(
    secret_ref=SecretKeyRef(name="app-webhook"), branches=("main", "release/*")
)


@pytest.fixture
def cluster():
    return Cluster(TRIGGER)


@pytest.fixture
async def client(cluster):
    app = webhook_app(cluster.lookup, cluster.create_run, max_body=64 * 1024)
    async with TestClient(TestServer(app)) as c:
        yield c


async def post_gitlab(client, payload, event="Push Hook", token=SECRET, path="/hooks/ci/app"):
    return await client.post(path, data=encode(payload), headers=gitlab_headers(event, token))


async def post_github(client, payload, event="push", secret=SECRET, path="/hooks/ci/app"):
    body = encode(payload)
    return await client.post(path, data=body, headers=github_headers(body, event, secret))


async def test_gitlab_push_creates_a_run(client, cluster):
    response = await post_gitlab(client, gitlab_push())
    assert response.status == 202
    name = run_name("app", "main", AFTER)
    assert await response.json() == {"run": name, "created": True}
    manifest = cluster.runs["ci", name]
    run = PipelineRun.from_dict(manifest)  # valid against the PipelineRun model
    assert run.spec.pipeline_ref.name == "app"
    assert (run.spec.revision.ref, run.spec.revision.sha) == ("main", AFTER)
    assert run.spec.revision.before_sha == BEFORE
    assert run.spec.pipeline_source == "push"
    assert manifest["metadata"]["labels"]["conveyor.dev/trigger"] == "webhook"
    annotations = manifest["metadata"]["annotations"]
    assert annotations["conveyor.dev/trigger-provider"] == "gitlab"
    assert annotations["conveyor.dev/trigger-delivery"] == "13792a34-cac6-4fda-95a8-c58e00a3954e"


async def test_replay_returns_the_same_run_not_created(client, cluster):
    first = await post_gitlab(client, gitlab_push())
    again = await post_gitlab(client, gitlab_push())
    assert again.status == 202
    assert await again.json() == {"run": (await first.json())["run"], "created": False}
    assert len(cluster.runs) == 1


async def test_github_and_gitlab_deliveries_of_one_push_make_one_run(client, cluster):
    assert (await post_github(client, github_push())).status == 202
    response = await post_gitlab(client, gitlab_push())
    assert (await response.json())["created"] is False
    assert len(cluster.runs) == 1


async def test_github_push_and_ping(client, cluster):
    response = await post_github(client, github_push(ref="refs/heads/release/1.2"))
    assert response.status == 202
    assert (await response.json())["created"] is True
    ping = await post_github(client, github_ping(), event="ping")
    assert ping.status == 200
    assert await ping.json() == {"ok": True, "event": "ping"}
    assert len(cluster.runs) == 1


@pytest.mark.parametrize(
    "path", ["/hooks/ci/other", "/hooks/elsewhere/app", "/hooks/ci/Bad_Name", "/hooks/ci/app/x"]
)
async def test_unknown_pipeline_is_404(client, path):
    response = await post_gitlab(client, gitlab_push(), path=path)
    assert response.status == 404


async def test_pipeline_without_webhook_trigger_looks_unknown(client, cluster):
    unknown = await post_gitlab(client, gitlab_push(), path="/hooks/ci/other")
    cluster.trigger = None
    response = await post_gitlab(client, gitlab_push())
    assert response.status == 404
    assert await response.read() == await unknown.read()


@pytest.mark.parametrize("token", [None, "", "wrong", SECRET[:-1]])
async def test_bad_gitlab_token_is_401(client, cluster, token):
    response = await post_gitlab(client, gitlab_push(), token=token)
    assert response.status == 401
    assert await response.json() == {"error": "missing or invalid token or signature"}
    assert cluster.runs == {}


async def test_bad_github_signature_is_401(client, cluster):
    response = await post_github(client, github_push(), secret="not-the-secret")
    assert response.status == 401
    body = encode(github_push())
    unsigned = github_headers(body, secret=None)
    response = await client.post("/hooks/ci/app", data=body, headers=unsigned)
    assert response.status == 401
    assert cluster.runs == {}


async def test_unauthenticated_garbage_is_401_not_400(client):
    response = await client.post(
        "/hooks/ci/app", data=b"{oops", headers=gitlab_headers(token="wrong")
    )
    assert response.status == 401


async def test_declared_oversized_body_is_413(client, cluster):
    big = gitlab_push()
    big["commits"] = big["commits"] * 400
    response = await post_gitlab(client, big)
    assert response.status == 413
    assert cluster.lookups == 0  # refused on Content-Length alone
    assert cluster.runs == {}


async def test_chunked_oversized_body_is_413(client):
    async def chunks():
        yield b'{"ref": "refs/heads/main", "padding": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post("/hooks/ci/app", data=chunks(), headers=gitlab_headers())
    assert response.status == 413


async def test_chunked_body_within_the_limit_is_read(client):
    body = encode(gitlab_push())

    async def chunks():
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    response = await client.post("/hooks/ci/app", data=chunks(), headers=gitlab_headers())
    assert response.status == 202


@pytest.mark.parametrize(
    ("event", "body"),
    [
        ("Push Hook", b"{not json"),
        ("Merge Request Hook", encode({"object_kind": "merge_request"})),
        ("Push Hook", encode(gitlab_push(after="nope", checkout_sha=None))),
    ],
)
async def test_malformed_or_not_a_push_is_400(client, cluster, event, body):
    response = await client.post("/hooks/ci/app", data=body, headers=gitlab_headers(event))
    assert response.status == 400
    assert "error" in await response.json()
    assert cluster.runs == {}


async def test_github_other_event_is_400(client):
    response = await post_github(client, {"action": "opened"}, event="issues")
    assert response.status == 400


async def test_unselected_branch_is_204(client, cluster):
    response = await post_gitlab(client, gitlab_push(ref="refs/heads/feature/x"))
    assert response.status == 204
    assert response.headers["X-Conveyor-Reason"] == "branch not selected"
    assert await response.read() == b""
    assert cluster.runs == {}


async def test_tags_follow_the_trigger_tags_flag(client, cluster):
    response = await post_gitlab(client, gitlab_tag_push(), event="Tag Push Hook")
    assert response.status == 204
    cluster.trigger = WebhookTrigger(secret_ref=SecretKeyRef(name="app-webhook"), tags=True)
    response = await post_gitlab(client, gitlab_tag_push(), event="Tag Push Hook")
    assert response.status == 202
    manifest = cluster.runs["ci", (await response.json())["run"]]
    assert manifest["spec"]["revision"] == {"ref": "v1.0.0", "sha": AFTER, "beforeSha": "0" * 40}
    assert manifest["metadata"]["annotations"]["conveyor.dev/ref-type"] == "tag"


async def test_branch_deletion_is_204(client, cluster):
    response = await post_gitlab(client, gitlab_push(after=ZERO, checkout_sha=None))
    assert response.status == 204
    response = await post_github(client, github_push(after=ZERO, deleted=True))
    assert response.status == 204
    assert response.headers["X-Conveyor-Reason"] == "ref deleted"
    assert cluster.runs == {}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(client, method):
    response = await client.request(method, "/hooks/ci/app")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_create_failure_is_503(client, cluster):
    cluster.fail = True
    response = await post_gitlab(client, gitlab_push())
    assert response.status == 503


async def test_lookup_failure_is_503():
    async def lookup(namespace, pipeline):
        raise RuntimeError("cache not ready")

    async def create_run(manifest, namespace):
        raise AssertionError("not reached")

    async with TestClient(TestServer(webhook_app(lookup, create_run))) as c:
        response = await post_gitlab(c, gitlab_push())
        assert response.status == 503


async def test_the_secret_never_shows_in_responses_or_logs(client, cluster, caplog):
    caplog.set_level(logging.DEBUG)
    seen = []
    near_miss = SECRET[:-1] + "X"
    for token in (SECRET, near_miss, None):
        for payload, event in (
            (gitlab_push(), "Push Hook"),
            (gitlab_push(ref="refs/heads/feature/x"), "Push Hook"),
            (gitlab_tag_push(), "Tag Push Hook"),
            ({"object_kind": "note"}, "Note Hook"),
        ):
            response = await post_gitlab(client, payload, event=event, token=token)
            seen.append(await response.text())
            seen.append(json.dumps(dict(response.headers)))
    for payload, event in ((github_push(), "push"), (github_ping(), "ping")):
        response = await post_github(client, payload, event=event)
        seen.append(await response.text())
    cluster.fail = True
    response = await post_gitlab(client, gitlab_push(ref="refs/heads/release/9"))
    assert response.status == 503
    seen.append(await response.text())
    text = "\n".join(seen) + "\n".join(r.getMessage() for r in caplog.records)
    text += "\n".join(str(r.exc_info) for r in caplog.records)
    assert any("rejected" in r.getMessage() for r in caplog.records)
    assert any(
        "already there" in r.getMessage() or "created" in r.getMessage() for r in caplog.records
    )
    assert SECRET not in text
    assert near_miss not in text
    assert all(SECRET not in json.dumps(m) for m in cluster.runs.values())
