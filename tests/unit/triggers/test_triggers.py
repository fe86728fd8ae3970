"""Triggers: deterministic run manifests, poll decisions, branch globs, and the API fields."""

from __future__ import annotations

import datetime
import re

import pytest

from conveyor.api.codec import ModelError, from_dict
from conveyor.api.crd import all_crds
from conveyor.api.pipeline import (
    MAX_TRACKED_REFS,
    PipelineStatus,
    PollStatus,
    PollTrigger,
    parse_pipeline_spec,
)
from conveyor.api.pipelinerun import PipelineRun
from conveyor.triggers import (
    PushEvent,
    branch_matches,
    next_poll_delay,
    parse_ls_remote,
    plan_poll,
    poll_decisions,
    poll_error_patch,
    poll_status,
    ref_selected,
    run_for_event,
    run_for_push,
    run_name,
    split_remote_refs,
)

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
ZERO = "0" * 40
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NOW = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)


def sha(n: int) -> str:
    return f"{n:040x}"


# --- run names and manifests -----------------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline",
    ["app", "a", "x" * 253, "my.pipeline.with.dots", "a-" * 100 + "z", "9lives"],
)
def test_run_name_is_a_short_dns_label(pipeline):
    name = run_name(pipeline, "refs/heads/" + "f" * 250, A)
    assert len(name) <= 63
    assert DNS_LABEL.match(name), name
    assert re.search(r"-[0-9a-f]{10}$", name)


def test_run_name_is_deterministic_and_readable():
    assert run_name("build-app", "main", A) == run_name("build-app", "main", A)
    assert run_name("build-app", "main", A).startswith("build-app-")
    # A full ref and its short name are the same push.
    assert run_name("build-app", "refs/heads/main", A) == run_name("build-app", "main", A)
    assert run_name("app", "refs/tags/v1", A) == run_name("app", "v1", A, tag=True)


def test_run_names_are_distinct():
    names = {
        run_name("app", "main", A),
        run_name("app", "main", B),  # another commit
        run_name("app", "dev", A),  # another branch at the same commit
        run_name("app", "main", A, tag=True),  # a tag named like the branch
        run_name("app2", "main", A),  # another pipeline
        run_name("x" * 100 + "1", "main", A),  # slugs equal after truncation
        run_name("x" * 100 + "2", "main", A),
        run_name("a.b", "main", A),  # slugs equal after folding
        run_name("a-b", "main", A),
    }
    assert len(names) == 9
    many = {run_name("app", f"branch-{i}", sha(i)) for i in range(2000)}
    assert len(many) == 2000


def test_run_for_push_manifest():
    manifest = run_for_push("app", "ci", "refs/heads/main", B, A, "poll", labels={"team": "web"})
    assert manifest["apiVersion"] == "conveyor.dev/v1alpha1"
    assert manifest["kind"] == "PipelineRun"
    meta = manifest["metadata"]
    assert meta["name"] == run_name("app", "main", B)
    assert meta["namespace"] == "ci"
    assert meta["labels"] == {
        "team": "web",
        "conveyor.dev/pipeline": "app",
        "conveyor.dev/trigger": "poll",
    }
    assert meta["annotations"] == {"conveyor.dev/ref-type": "branch"}
    assert manifest["spec"] == {
        "pipelineRef": {"name": "app"},
        "revision": {"ref": "main", "sha": B, "beforeSha": A},
        "pipelineSource": "push",
    }
    run = PipelineRun.from_dict(manifest)
    assert run.pipeline_name == "app"


@pytest.mark.parametrize("before", [None, ZERO, ""])
def test_unknown_before_sha_is_recorded_as_zeros_a_new_ref(before):
    manifest = run_for_push("app", "ci", "main", B, before, "webhook")
    assert manifest["spec"]["revision"] == {"ref": "main", "sha": B, "beforeSha": ZERO}


def test_our_labels_win_and_source_is_checked():
    manifest = run_for_push(
        "app", "ci", "main", B, None, "webhook", labels={"conveyor.dev/trigger": "x"}
    )
    assert manifest["metadata"]["labels"]["conveyor.dev/trigger"] == "webhook"
    with pytest.raises(ValueError, match="source"):
        run_for_push("app", "ci", "main", B, None, "push")


def test_long_pipeline_name_gets_a_valid_label():
    manifest = run_for_push("p" * 200, "ci", "main", B, None, "poll")
    label = manifest["metadata"]["labels"]["conveyor.dev/pipeline"]
    assert len(label) <= 63
    PipelineRun.from_dict(manifest)


def test_run_for_event_records_the_delivery():
    event = PushEvent(
        "v1.0", A, None, tag=True, provider="github", delivery="d-1", pusher="p" * 1000
    )
    manifest = run_for_event("app", "ci", event, "webhook")
    annotations = manifest["metadata"]["annotations"]
    assert annotations["conveyor.dev/trigger-provider"] == "github"
    assert annotations["conveyor.dev/trigger-delivery"] == "d-1"
    assert len(annotations["conveyor.dev/trigger-pusher"]) == 256
    assert annotations["conveyor.dev/ref-type"] == "tag"
    assert "conveyor.dev/trigger-repository" not in annotations
    assert manifest["metadata"]["name"] == run_name("app", "v1.0", A, tag=True)


def test_webhook_and_poll_of_one_push_share_the_run_name():
    hook = run_for_event("app", "ci", PushEvent("main", B, A, provider="gitlab"), "webhook")
    (polled,) = poll_decisions({"main": B}, {"main": A}, ["*"])
    poll = run_for_event("app", "ci", polled, "poll")
    assert hook["metadata"]["name"] == poll["metadata"]["name"]
    assert hook["spec"] == poll["spec"]


# --- branch globs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "globs", "expected"),
    [
        ("main", ["main"], True),
        ("main", ["Main"], False),  # case-sensitive, like git
        ("mainline", ["main"], False),
        ("release/1.2", ["release/*"], True),
        ("release/1.2/hotfix", ["release/*"], True),  # fnmatch: * crosses /
        ("releases/1.2", ["release/*"], False),
        ("feature/x", ["*"], True),
        ("v1", ["v[0-9]"], True),
        ("dev", ["main", "release/*"], False),
        ("hotfix-1", ["main", "hotfix-?"], True),
    ],
)
def test_branch_matches(branch, globs, expected):
    assert branch_matches(branch, globs) is expected


def test_ref_selected_tags_by_flag():
    assert ref_selected("v1", tag=True, branches=["nothing"], tags=True)
    assert not ref_selected("main", tag=True, branches=["*"], tags=False)
    assert ref_selected("main", tag=False, branches=["*"], tags=False)


# --- poll decisions --------------------------------------------------------------------------


def test_first_poll_records_without_runs():
    assert poll_decisions({"main": A, "dev": B}, None, ["*"]) == []


def test_poll_changed_new_and_deleted_branches():
    events = poll_decisions(
        {"main": B, "dev": C, "new": D, "same": A},
        {"main": A, "dev": B, "gone": C, "same": A},
        ["*"],
    )
    assert events == [
        PushEvent("dev", C, B),
        PushEvent("main", B, A),
        PushEvent("new", D, None),
    ]


def test_poll_nothing_changed():
    heads = {"main": A, "dev": B}
    assert poll_decisions(heads, dict(heads), ["*"]) == []


def test_poll_respects_globs():
    events = poll_decisions(
        {"main": B, "release/1": C, "feature/x": D}, {"main": A}, ["main", "release/*"]
    )
    assert [e.ref for e in events] == ["main", "release/1"]


def test_poll_tags():
    events = poll_decisions({"v1": A, "v2": B}, {"v1": A}, [], tags=True)
    assert events == [PushEvent("v2", B, None, tag=True)]


def test_poll_tracks_at_most_the_limit_keeping_known_refs():
    last = {f"b{i:03}": sha(i) for i in range(5)}
    now = {f"a{i:03}": sha(100 + i) for i in range(5)} | {k: sha(999) for k in last}
    events = poll_decisions(now, last, ["*"], limit=5)
    # The known branches keep their places; the new ones (earlier in name order) do not fit.
    assert [e.ref for e in events] == sorted(last)
    assert all(e.before_sha is not None for e in events)


def test_poll_skips_refs_a_run_could_not_name():
    now = {"main": "f" * 64, "ok": A, "long": A, "x" * 300: A}
    assert [e.ref for e in poll_decisions(now, {}, ["*"])] == ["long", "ok"]


def test_ls_remote_parsing_peels_annotated_tags():
    output = (
        f"{A}\tHEAD\n{A}\trefs/heads/main\n{B}\trefs/heads/release/1\n"
        f"{C}\trefs/tags/v1\n{D}\trefs/tags/v1^{{}}\n{B}\trefs/tags/light\n"
        f"{C}\trefs/pull/1/head\n{C}\trefs/merge-requests/2/head\n"
    )
    branches, tags = split_remote_refs(parse_ls_remote(output))
    assert branches == {"main": A, "release/1": B}
    assert tags == {"v1": D, "light": B}


# --- plan_poll: what the operator writes to status --------------------------------------------


def parsed(status):
    return from_dict(PollStatus, status, "status.triggers.poll")


def test_plan_poll_first_then_changes():
    trigger = PollTrigger(branches=("main", "release/*"))
    first = plan_poll(trigger, {"main": A, "dev": B, "release/1": C}, {}, None, NOW)
    assert first.baseline and first.events == ()
    assert first.status["heads"] == {"main": A, "release/1": C}
    assert first.status["lastPollTime"] == "2025-03-01T12:00:00Z"
    assert first.status["untracked"] == 0
    previous = parsed(first.status)

    later = NOW + datetime.timedelta(minutes=1)
    second = plan_poll(trigger, {"main": B, "release/2": D}, {}, previous, later)
    assert not second.baseline
    assert second.events == (PushEvent("main", B, A), PushEvent("release/2", D, None))
    assert second.status["heads"] == {"main": B, "release/2": D}
    # A merge patch merges maps key by key: the deleted branch is nulled explicitly.
    assert second.patch["heads"] == {"main": B, "release/2": D, "release/1": None}
    assert second.patch["error"] is None
    merged = {k: v for k, v in ({**previous.heads, **second.patch["heads"]}).items() if v}
    assert merged == second.status["heads"]


def test_plan_poll_after_restart_sees_the_push_made_meanwhile():
    trigger = PollTrigger()
    stored = plan_poll(trigger, {"main": A}, {}, None, NOW).status
    # The operator restarts; all it has is the status it wrote.
    previous = poll_status({"triggers": {"poll": stored}})
    plan = plan_poll(trigger, {"main": B}, {}, previous, NOW)
    assert plan.events == (PushEvent("main", B, A),)


def test_plan_poll_rebaselines_when_the_selection_changes():
    narrow = PollTrigger(branches=("main",))
    previous = parsed(plan_poll(narrow, {"main": A, "dev": B}, {}, None, NOW).status)
    wide = PollTrigger(branches=("*",), tags=True)
    plan = plan_poll(wide, {"main": A, "dev": B}, {"v1": C}, previous, NOW)
    assert plan.baseline and plan.events == ()  # no storm for the newly selected refs
    assert plan.status["heads"] == {"main": A, "dev": B}
    assert plan.status["tags"] == {"v1": C}
    again = plan_poll(wide, {"main": A, "dev": B}, {"v1": C, "v2": D}, parsed(plan.status), NOW)
    assert again.events == (PushEvent("v2", D, None, tag=True),)


def test_plan_poll_status_fits_the_schema_when_over_the_limit():
    many = {f"branch-{i:04}": sha(i) for i in range(MAX_TRACKED_REFS + 50)}
    plan = plan_poll(PollTrigger(), many, {}, None, NOW)
    assert len(plan.status["heads"]) == MAX_TRACKED_REFS
    assert plan.status["untracked"] == 50
    status = from_dict(PipelineStatus, {"triggers": {"poll": plan.status}}, "status")
    assert status.triggers.poll.untracked == 50
    with pytest.raises(ModelError, match="at most 200"):
        parsed({"heads": many})


def test_poll_error_patch_redacts_credentials_and_is_bounded():
    patch = poll_error_patch(
        "fatal: unable to access 'https://oauth2:glpat-SECRET@gitlab.example.com/x.git/': 403"
    )
    assert "glpat-SECRET" not in patch["error"]
    assert "https://***@gitlab.example.com" in patch["error"]
    assert len(poll_error_patch("x" * 5000)["error"]) == 1024
    parsed(poll_error_patch("y" * 5000))


def test_next_poll_delay():
    trigger = PollTrigger(interval_seconds=60)
    assert next_poll_delay(trigger, None, NOW) == 0
    assert next_poll_delay(trigger, NOW - datetime.timedelta(seconds=20), NOW) == 40
    assert next_poll_delay(trigger, NOW - datetime.timedelta(seconds=90), NOW) == 0


def test_poll_status_absent():
    assert poll_status(None) is None
    assert poll_status({"triggers": {}}) is None


# --- API -------------------------------------------------------------------------------------

JOBS = [{"name": "test", "script": ["make test"]}]


def test_triggers_defaults():
    spec = parse_pipeline_spec(
        {"jobs": JOBS, "triggers": {"poll": {}, "webhook": {"secretRef": {"name": "hook"}}}}
    )
    assert spec.triggers.poll == PollTrigger(interval_seconds=60, branches=("*",), tags=False)
    assert spec.triggers.webhook.secret_ref.key == "token"
    assert spec.triggers.webhook.branches == ("*",)
    assert parse_pipeline_spec({"jobs": JOBS}).triggers is None


@pytest.mark.parametrize(
    ("triggers", "problem"),
    [
        ({"poll": {"intervalSeconds": 1}}, "must be >= 5"),
        ({"poll": {"branches": []}}, "at least 1"),
        ({"poll": {"branches": ["main", "main"]}}, "duplicate"),
        ({"poll": {"branches": [""]}}, "shorter"),
        ({"webhook": {}}, "secretRef: required"),
        ({"webhook": {"secretRef": {"name": "Bad_Name"}}}, "does not match"),
    ],
)
def test_triggers_validation(triggers, problem):
    with pytest.raises(ModelError, match=problem):
        parse_pipeline_spec({"jobs": JOBS, "triggers": triggers})


def test_crd_schema_of_triggers():
    schema = all_crds()["conveyor.dev_pipelines.yaml"]["spec"]["versions"][0]["schema"]
    root = schema["openAPIV3Schema"]["properties"]
    triggers = root["spec"]["properties"]["triggers"]
    assert [v["rule"] for v in triggers["x-kubernetes-validations"]] == [
        "has(self.poll) || has(self.webhook)"
    ]
    poll = triggers["properties"]["poll"]["properties"]
    assert poll["intervalSeconds"] == {
        "description": poll["intervalSeconds"]["description"],
        "type": "integer",
        "minimum": 5,
        "maximum": 86400,
        "default": 60,
    }
    assert poll["branches"]["default"] == ["*"]
    assert poll["branches"]["maxItems"] == 50
    webhook = triggers["properties"]["webhook"]
    assert webhook["required"] == ["secretRef"]
    assert webhook["properties"]["secretRef"]["properties"]["key"]["default"] == "token"
    status = root["status"]["properties"]["triggers"]["properties"]["poll"]["properties"]
    assert status["heads"]["maxProperties"] == MAX_TRACKED_REFS
    assert status["heads"]["additionalProperties"]["pattern"] == "^[0-9a-f]{40}$"
    assert status["lastPollTime"]["format"] == "date-time"
