"""The dashboard's pure parts: a run's graph layout and JSON views, and the server's guards
against other web pages (Host, token, origin), checked over real HTTP on 127.0.0.1 (requests
refused before any API server is asked need none)."""

from __future__ import annotations

import datetime
import http.client
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.api.approval import Approval
from conveyor.api.pipeline import parse_pipeline_spec
from conveyor.api.pipelinerun import JobStatus, PipelineRun
from conveyor.cli.common import CommandError
from conveyor.cli.objects import parse
from conveyor.dashboard import views
from conveyor.dashboard.server import (
    TOKEN_HEADER,
    Dashboard,
    Refused,
    check_host,
    check_post,
    parse_action,
    serve,
)

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def _run(
    jobs: list[dict[str, Any]] | None = None,
    spec_jobs: list[dict[str, Any]] | None = None,
    stages: list[str] | None = None,
    name: str = "r1",
    created: str = "2026-11-30T11:58:00Z",
    cancelled: bool = False,
    **status: Any,
) -> PipelineRun:
    if spec_jobs is None:  # a pipeline has a job at least: one no status names
        spec_jobs = [{"name": "other", "stage": (stages or ["test"])[0], "script": ["true"]}]
    pipeline: dict[str, Any] = {"jobs": spec_jobs}
    if stages is not None:
        pipeline["stages"] = stages
    spec: dict[str, Any] = {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}}
    if cancelled:
        spec["status"] = "Cancelled"
    body = {
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": "uid-1",
            "creationTimestamp": created,
            "resourceVersion": "7",
        },
        "spec": spec,
        "status": {"pipelineSpec": pipeline, "jobs": jobs or [], **status},
    }
    return parse(PipelineRun, body)


PIPELINE = [
    {"name": "compile", "stage": "build", "script": ["make"]},
    {"name": "lint", "stage": "build", "script": ["make lint"]},
    {"name": "unit", "stage": "test", "script": ["make test"], "needs": ["compile"]},
    {"name": "e2e", "stage": "test", "script": ["make e2e"]},
    {"name": "ship", "stage": "deploy", "script": ["./ship"], "needs": ["unit", "lint"]},
]
JOBS = [
    {"name": "compile", "stage": "build", "phase": "Succeeded", "attempt": 1, "jobName": "j1"},
    {"name": "lint", "stage": "build", "phase": "Failed", "attempt": 1, "allowedFailure": True},
    {"name": "unit", "stage": "test", "phase": "Running", "attempt": 1, "jobName": "j3"},
    {"name": "e2e", "stage": "test", "phase": "Failed", "attempt": 2, "jobName": "j4"},
    {"name": "ship", "stage": "deploy", "phase": "Manual"},
]


def _boxes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for s in graph["stages"] for j in s["jobs"]}


def test_stages_are_columns_in_pipeline_order_and_jobs_stack_in_them() -> None:
    graph = views.graph(_run(JOBS, PIPELINE, stages=["build", "test", "deploy"]))
    assert [s["name"] for s in graph["stages"]] == ["build", "test", "deploy"]
    assert [[j["name"] for j in s["jobs"]] for s in graph["stages"]] == [
        ["compile", "lint"],
        ["unit", "e2e"],
        ["ship"],
    ]
    boxes = _boxes(graph)
    # One x per column, left to right; one y per row, top to bottom.
    xs = [s["x"] for s in graph["stages"]]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert {boxes[n]["x"] for n in ("compile", "lint")} == {xs[0]}
    assert boxes["compile"]["y"] < boxes["lint"]["y"]
    assert boxes["compile"]["y"] == boxes["unit"]["y"] == boxes["ship"]["y"]
    # Nothing overlaps, and everything fits in the graph's size.
    for box in boxes.values():
        assert box["x"] + box["w"] <= graph["width"] and box["y"] + box["h"] <= graph["height"]
    assert boxes["lint"]["y"] >= boxes["compile"]["y"] + boxes["compile"]["h"]
    assert xs[1] >= xs[0] + views.BOX_WIDTH


def test_an_empty_stage_has_no_column_and_unlisted_stages_come_last() -> None:
    jobs = [
        {"name": "a", "stage": "build", "phase": "Succeeded"},
        {"name": "b", "stage": "extra", "phase": "Pending"},
    ]
    graph = views.graph(_run(jobs, stages=["build", "test", "deploy"]))
    assert [s["name"] for s in graph["stages"]] == ["build", "extra"]
    # Without stages in the spec: GitLab's defaults.
    graph = views.graph(_run([{**jobs[0], "stage": "deploy"}, {**jobs[1], "stage": "build"}]))
    assert [s["name"] for s in graph["stages"]] == ["build", "deploy"]


def test_needs_are_edges_from_the_needed_box_to_the_needing_one() -> None:
    graph = views.graph(_run(JOBS, PIPELINE, stages=["build", "test", "deploy"]))
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [
        ("compile", "unit"),
        ("lint", "ship"),
        ("unit", "ship"),
    ]
    boxes = _boxes(graph)
    edge = next(e for e in graph["edges"] if e["to"] == "unit")
    numbers = [int(n) for n in re.findall(r"-?\d+", edge["path"])]
    a, b = boxes["compile"], boxes["unit"]
    # Starts on the right side of `compile`, ends on the left side of `unit`, mid-height.
    assert numbers[:2] == [a["x"] + a["w"], a["y"] + a["h"] // 2]
    assert numbers[-2:] == [b["x"], b["y"] + b["h"] // 2]
    assert edge["path"].startswith("M ") and " C " in edge["path"]


def test_a_need_within_a_stage_and_optional_needs() -> None:
    spec = [
        {"name": "a", "stage": "test", "script": ["true"]},
        {
            "name": "b",
            "stage": "test",
            "script": ["true"],
            "needs": ["a"],
            "optionalNeeds": ["gone", "c"],
        },
        {"name": "c", "stage": "test", "script": ["true"]},
    ]
    jobs = [{"name": n, "stage": "test", "phase": "Pending"} for n in ("a", "b", "c")]
    graph = views.graph(_run(jobs, spec))
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [("a", "b"), ("c", "b")]
    boxes = _boxes(graph)
    path = next(e["path"] for e in graph["edges"] if e["from"] == "a")
    numbers = [int(n) for n in re.findall(r"-?\d+", path)]
    # Same column: an arc on the right, from a's right side to b's right side, inside the graph.
    assert numbers[0] == numbers[-2] == boxes["a"]["x"] + boxes["a"]["w"]
    assert max(numbers[::2]) <= graph["width"]


def test_job_statuses_and_their_buttons() -> None:
    run = _run(JOBS, PIPELINE, stages=["build", "test", "deploy"])
    boxes = _boxes(views.graph(run))
    assert {n: b["status"] for n, b in boxes.items()} == {
        "compile": "success",
        "lint": "warning",
        "unit": "running",
        "e2e": "failed",
        "ship": "manual",
    }
    assert boxes["ship"]["actions"] == ["play"]
    assert boxes["e2e"]["actions"] == ["retry"]
    assert boxes["lint"]["actions"] == ["retry"]  # an allowed failure is retried too
    never_ran = JobStatus("lint", "build", "Failed")
    assert views.job_actions(run, never_ran, False) == []  # it never had a Job
    assert boxes["compile"]["actions"] == boxes["unit"]["actions"] == []
    assert boxes["compile"]["hasLog"] and boxes["unit"]["hasLog"]
    assert not boxes["ship"]["hasLog"]
    # A cancelled run offers nothing but approvals.
    cancelled = _run(JOBS, PIPELINE, stages=["build", "test", "deploy"], cancelled=True)
    assert all(not b["actions"] for b in _boxes(views.graph(cancelled)).values())
    delayed = JobStatus("ship", "deploy", "Manual", reason="Delayed")
    assert views.job_status(delayed, False) == "scheduled"
    assert views.job_status(JobStatus("ship", "deploy", "Cancelled"), False) == "canceled"
    assert views.job_status(JobStatus("ship", "deploy", "Skipped"), False) == "skipped"
    assert views.job_status(None, False) == "created"
    assert set(views.STATUSES) >= {b["status"] for b in boxes.values()}


def _approval(
    job: str, decision: str | None = None, run: str = "r1", uid: str = "uid-1"
) -> Approval:
    body = {
        "metadata": {"name": f"{run}-{job}", "creationTimestamp": "2026-11-30T11:59:00Z"},
        "spec": {
            "pipelineRun": run,
            "runUID": uid,
            "job": job,
            "digest": "sha256:" + "d" * 64,
            "environment": "prod",
            "revision": {"ref": "main"},
            "expiresAt": "2026-12-01T11:59:00Z",
            "requiredApprovals": 1,
            "approvers": ["group:approvers"],
        },
        "status": {"decision": decision} if decision else {},
    }
    return parse(Approval, body)


def test_a_job_waiting_for_its_approval_offers_approve_and_reject() -> None:
    run = _run(JOBS, PIPELINE, stages=["build", "test", "deploy"])
    others = [_approval("ship", run="r2"), _approval("ship", uid="an-older-run-of-that-name")]
    boxes = _boxes(views.graph(run, [*others, _approval("ship")]))
    assert boxes["ship"]["status"] == "approval"
    assert boxes["ship"]["actions"] == ["approve", "reject"]
    assert boxes["ship"]["approval"] == "r1-ship"
    # Another run's Approval, or a decided one, gates nothing.
    assert _boxes(views.graph(run, others))["ship"]["status"] == "manual"
    decided = _boxes(views.graph(run, [_approval("ship", "Approved")]))
    assert decided["ship"]["status"] == "manual"
    view = views.run_view(run, [*others, _approval("ship")], None, NOW)
    assert [a["name"] for a in view["approvals"]] == ["r1-ship"]
    assert view["approvals"][0]["decision"] == "Pending"


def test_a_run_that_has_not_started_shows_its_pipelines_jobs() -> None:
    body = {
        "metadata": {"name": "r0", "namespace": "team"},
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
    }
    run = parse(PipelineRun, body)
    pipeline = parse_pipeline_spec({"stages": ["build", "test"], "jobs": PIPELINE[:3]})
    graph = views.graph(run, (), pipeline)
    boxes = _boxes(graph)
    assert set(boxes) == {"compile", "lint", "unit"}
    assert {b["status"] for b in boxes.values()} == {"created"}
    assert [(e["from"], e["to"]) for e in graph["edges"]] == [("compile", "unit")]
    assert views.graph(run) == {
        "stages": [],
        "edges": [],
        "width": views.graph(run)["width"],
        "height": views.graph(run)["height"],
    }


def test_run_rows_newest_first_with_what_they_wait_for() -> None:
    older = _run(name="old", created="2026-11-30T10:00:00Z", phase="Succeeded")
    newer = _run(
        name="new",
        created="2026-11-30T11:59:30Z",
        phase="Running",
        shortSha="0123abcd",
        currentStage="deploy",
        conditions=[{"type": "Succeeded", "status": "Unknown", "reason": "ManualActionRequired"}],
    )
    rows = views.run_rows([older, newer], NOW)
    assert [r["name"] for r in rows] == ["new", "old"]
    assert rows[0] == {
        "namespace": "team",
        "name": "new",
        "pipeline": "app",
        "ref": "main",
        "sha": "0123abcd",
        "phase": "Running",
        "waiting": "ManualActionRequired",
        "stage": "deploy",
        "created": "2026-11-30T11:59:30Z",
        "age": "30s",
        "duration": None,
        "resourceVersion": "7",
    }
    assert rows[1]["waiting"] is None and rows[1]["age"] == "2h0m0s"
    pending = {
        "metadata": {"name": "p", "namespace": "team"},
        "spec": {"pipelineSpec": {"jobs": PIPELINE[:1]}, "revision": {"ref": "dev"}},
    }
    row = views.run_row(parse(PipelineRun, pending), NOW)
    assert (row["phase"], row["pipeline"], row["age"], row["ref"]) == (
        "Pending",
        "(inline)",
        "-",
        "dev",
    )


# -- the server's guards
def test_only_requests_naming_this_server_are_answered() -> None:
    check_host("127.0.0.1:8484", 8484)
    check_host("localhost:8484", 8484)
    for host in ("evil.example:8484", "127.0.0.1:8485", "127.0.0.1", None, ""):
        with pytest.raises(Refused) as e:
            check_host(host, 8484)
        assert e.value.status == 421


def test_a_post_needs_the_token_json_and_this_origin() -> None:
    good = {
        "Origin": "http://127.0.0.1:9000",
        TOKEN_HEADER: "s3cret",
        "Content-Type": "application/json",
    }
    check_post(good, 9000, "s3cret")
    check_post({k: v for k, v in good.items() if k != "Origin"}, 9000, "s3cret")
    for bad, status in (
        ({**good, TOKEN_HEADER: "guess"}, 403),
        ({k: v for k, v in good.items() if k != TOKEN_HEADER}, 403),
        ({**good, "Origin": "http://evil.example"}, 403),
        ({**good, "Origin": "null"}, 403),
        ({**good, "Content-Type": "text/plain"}, 415),
    ):
        with pytest.raises(Refused) as e:
            check_post(bad, 9000, "s3cret")
        assert e.value.status == status


def test_actions_are_checked_for_shape() -> None:
    assert parse_action({"action": "play", "namespace": "t", "run": "r", "job": "j"}) == {
        "action": "play",
        "namespace": "t",
        "run": "r",
        "job": "j",
        "approval": None,
        "comment": None,
    }
    for body in (
        {"action": "delete", "namespace": "t", "run": "r"},
        {"action": "play", "namespace": "t", "run": "r"},
        {"action": "retry", "run": "r"},
        {"action": "approve", "namespace": "t", "run": "r", "comment": 5},
    ):
        with pytest.raises(Refused):
            parse_action(body)


@pytest.fixture
def server() -> Iterator[tuple[int, str]]:
    """The real server on a free port, without a cluster: what is checked here is refused (or
    served from the package) before any API server is asked."""
    dashboard = Dashboard(kube=None, namespace="team")  # type: ignore[arg-type]
    srv = serve(dashboard, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], dashboard.token
    srv.shutdown()
    srv.server_close()


def _request(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_host=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    out = response.status, dict(response.getheaders()), response.read()
    conn.close()
    return out


def test_the_page_carries_the_token_and_assets_come_from_the_package(server) -> None:
    port, token = server
    status, headers, page = _request(port, "GET", "/", {"Host": f"127.0.0.1:{port}"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f'content="{token}"' in page.decode()
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    # No external asset: every script and stylesheet is this server's own.
    assert re.findall(r'(?:src|href)="(/[^"#]*|[a-z]+://[^"]*)"', page.decode()) == [
        "/static/app.css",
        "/static/app.js",
    ]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, body = _request(
            port, "GET", f"/static/{name}", {"Host": f"localhost:{port}"}
        )
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b"")
        assert b"https://" not in body
    assert _request(port, "GET", "/static/../server.py", {"Host": f"localhost:{port}"})[0] == 404


def test_a_rebound_name_or_a_post_without_the_token_is_refused(server) -> None:
    port, token = server
    status, _, body = _request(port, "GET", "/", {"Host": f"evil.example:{port}"})
    assert status == 421 and token.encode() not in body
    assert _request(port, "GET", "/api/runs", {"Host": f"evil.example:{port}"})[0] == 421
    action = json.dumps({"action": "play", "namespace": "team", "run": "r", "job": "j"}).encode()
    host = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json"}
    # As a cross-site form or fetch would send it: no token.
    status, _, body = _request(port, "POST", "/api/action", host, action)
    assert status == 403 and json.loads(body)["message"].startswith("missing or wrong")
    status, _, _ = _request(
        port, "POST", "/api/action", {**host, TOKEN_HEADER: token, "Origin": "https://evil.example"},
        action,
    )  # fmt: skip
    assert status == 403
    status, _, _ = _request(
        port, "POST", "/api/action", {**host, "Host": f"evil.example:{port}", TOKEN_HEADER: token},
        action,
    )  # fmt: skip
    assert status == 421
    # With the token, it gets as far as the namespace check (this dashboard shows `team` only).
    other = json.dumps({"action": "play", "namespace": "other", "run": "r", "job": "j"}).encode()
    status, _, body = _request(port, "POST", "/api/action", {**host, TOKEN_HEADER: token}, other)
    assert status == 404 and "namespace team only" in json.loads(body)["message"]


def test_the_page_ships_in_the_wheel() -> None:
    """pyproject's package-data carries every file of static/ (an editable install would serve
    them from the checkout even without it)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["conveyor"]
    static = root / "operator" / "conveyor" / "dashboard" / "static"
    files = sorted(p.relative_to(static.parent.parent).as_posix() for p in static.iterdir())
    assert files == [
        "dashboard/static/app.css",
        "dashboard/static/app.js",
        "dashboard/static/index.html",
    ]
    assert all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files)


def test_the_list_leaves_out_a_run_its_model_refuses_and_a_run_page_names_the_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = {
        "metadata": {
            "name": "good",
            "namespace": "team",
            "creationTimestamp": "2026-11-30T11:00:00Z",
        },
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
    }
    edited = {
        **good,
        "metadata": {"name": "edited", "namespace": "team"},
        "status": {"phase": "Done"},
    }

    class Cluster:
        def list_runs(self, namespace: str | None) -> list[dict[str, Any]]:
            return [good, edited]

        def get_run(self, namespace: str, name: str) -> dict[str, Any]:
            return edited

    dashboard = Dashboard(kube=Cluster(), namespace="team")  # type: ignore[arg-type]
    assert [r["name"] for r in dashboard.runs()] == ["good"]
    line = capsys.readouterr().err.strip()
    assert line.startswith(
        "conveyor: skipped pipelinerun team/edited: status.phase: must be one of"
    )
    with pytest.raises(
        CommandError, match=r"pipelinerun team/edited cannot be read: status\.phase"
    ):
        dashboard.run("team", "edited")
