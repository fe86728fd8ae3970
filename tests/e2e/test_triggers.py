"""A push starts a run with nobody applying YAML: poll and webhook triggers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.conveyor import (
    GROUP,
    VERSION,
    Conveyor,
    Operator,
    job_status,
    phase,
)
from tests.e2e.gitrepo import GitRepo, go_app_repo
from tests.e2e.support import wait_until
from tests.e2e.test_gitlab import import_gitlab

POLL_INTERVAL = 5


def pipeline_status(conveyor: Conveyor, name: str) -> dict:
    obj = conveyor.api.get_namespaced_custom_object(GROUP, VERSION, conveyor.ns, "pipelines", name)
    return obj.get("status") or {}


def runs_of(conveyor: Conveyor, sha: str) -> list[dict]:
    return [r for r in conveyor.runs() if r["spec"]["revision"].get("sha") == sha]


def seed_pipeline(conveyor: Conveyor, tmp_path: Path, triggers: dict) -> GitRepo:
    repo = go_app_repo(tmp_path / "go-app")
    code, manifest, stderr = import_gitlab(repo.path / ".gitlab-ci.yml", "go-app", repo.url)
    assert code in (0, 3), stderr
    manifest["spec"]["triggers"] = triggers
    conveyor.create(manifest)
    return repo


def test_poll_trigger_picks_up_a_new_commit_within_its_interval(
    conveyor: Conveyor, tmp_path: Path
) -> None:
    repo = seed_pipeline(
        conveyor, tmp_path, {"poll": {"intervalSeconds": POLL_INTERVAL, "branches": ["master"]}}
    )
    # The first poll only records the heads: existing branches start no storm of runs.
    wait_until(
        lambda: (
            pipeline_status(conveyor, "go-app")["triggers"]["poll"]["heads"]["master"]
            == repo.head()
        ),
        what="the first poll",
    )
    assert conveyor.runs() == []

    before = repo.head()
    after = repo.commit("log requests", {"src/server.go": "\n// log requests\n"})
    created = wait_until(
        lambda: runs_of(conveyor, after),
        timeout=2 * POLL_INTERVAL + 10,
        what="a run of the new commit",
    )
    assert len(created) == 1
    new_run = created[0]
    assert new_run["spec"]["revision"] == {"ref": "master", "sha": after, "beforeSha": before}
    assert new_run["spec"]["pipelineSource"] == "push"
    assert new_run["metadata"]["labels"]["conveyor.dev/trigger"] == "poll"
    done = conveyor.wait_finished(new_run["metadata"]["name"])
    assert job_status(done, "test")["phase"] == "Succeeded"  # the push changed src/*.go

    # Later polls see nothing new: still exactly one run for that commit.
    polled = pipeline_status(conveyor, "go-app")["triggers"]["poll"]["lastPollTime"]
    wait_until(
        lambda: pipeline_status(conveyor, "go-app")["triggers"]["poll"]["lastPollTime"] > polled,
        timeout=2 * POLL_INTERVAL + 10,
        what="another poll",
    )
    assert len(conveyor.runs()) == 1


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as e:
        return e.code, {}


def gitlab_push(repo: GitRepo, before: str, after: str) -> bytes:
    return json.dumps(
        {
            "object_kind": "push",
            "event_name": "push",
            "ref": "refs/heads/master",
            "before": before,
            "after": after,
            "checkout_sha": after,
            "user_username": "dev",
            "project": {"path_with_namespace": "team/go-app", "git_http_url": repo.url},
            "commits": [{"id": after, "message": "new endpoint"}],
            "total_commits_count": 1,
        }
    ).encode()


def test_webhook_delivery_creates_one_run_and_a_replay_none(
    conveyor: Conveyor, operator: Operator, hook_secret: str, tmp_path: Path
) -> None:
    repo = seed_pipeline(conveyor, tmp_path, {"webhook": {"secretRef": {"name": "hook"}}})
    wait_until(
        lambda: pipeline_status(conveyor, "go-app").get("observedGeneration"),
        what="the operator to see the pipeline",
    )
    url = f"http://127.0.0.1:{operator.webhook_port}/hooks/{conveyor.ns}/go-app"
    before = repo.head()
    after = repo.commit("new endpoint", {"src/server.go": "\n// new endpoint\n"})
    body = gitlab_push(repo, before, after)
    headers = {"X-Gitlab-Event": "Push Hook", "Content-Type": "application/json"}

    # Refused, and nothing created: a wrong token, a non-push event, an oversized body.
    assert post(url, body, {**headers, "X-Gitlab-Token": "wrong"})[0] == 401
    note = {**headers, "X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": hook_secret}
    assert post(url, b'{"object_kind": "note"}', note)[0] == 400
    big = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert post(url, big, {**headers, "X-Gitlab-Token": hook_secret})[0] == 413
    assert conveyor.runs() == []

    status, answer = post(url, body, {**headers, "X-Gitlab-Token": hook_secret})
    assert (status, answer["created"]) == (202, True)
    replay_status, replay = post(url, body, {**headers, "X-Gitlab-Token": hook_secret})
    assert (replay_status, replay["created"], replay["run"]) == (202, False, answer["run"])
    runs = conveyor.runs()
    assert [r["metadata"]["name"] for r in runs] == [answer["run"]]
    assert runs[0]["metadata"]["labels"]["conveyor.dev/trigger"] == "webhook"
    done = conveyor.wait_finished(answer["run"])
    assert phase(done) == "Succeeded"
    assert job_status(done, "build")["phase"] == "Succeeded"
