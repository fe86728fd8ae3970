"""The `conveyor` command as a user meets it: one-line errors with documented exit codes, what
`get`, `describe`, `retry`, `rerun`, `version` and `completion` print or ask for."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conveyor.api.approval import Approval
from conveyor.api.pipeline import parse_pipeline_spec
from conveyor.api.pipelinerun import PipelineRun, RetryRequest
from conveyor.cli.common import cluster_errors
from conveyor.cli.completion import commands, script
from conveyor.cli.logs import LogsError, check_job, next_to_follow
from conveyor.cli.main import build_parser, main
from conveyor.cli.objects import parse
from conveyor.cli.runs import cmd_get, exit_code_of, rerun_manifest, retry_entries
from conveyor.cli.version import deployment_version, image_version, metrics_version
from conveyor.cli.views import (
    describe,
    jobs_table,
    names,
    run_summary,
    runs_table,
    serialized,
    waiting_for,
)
from conveyor.kube import defaults, jobspec

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- errors: one line, the documented exit code -------------------------------------------


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def test_an_unreachable_api_server_is_one_line_and_exit_1(tmp_path, capsys):
    config = _kubeconfig(tmp_path, "https://127.0.0.1:1")  # nothing listens on port 1
    assert main(["get", "--kubeconfig", str(config)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert (
        line == "conveyor: cannot reach the API server at https://127.0.0.1:1: connection refused"
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"garbage: [\n", "is not valid YAML (line 2)"),
        (b"\xff\xfe\x00bad", "is not UTF-8 text"),
        (b"just a string\n", "cannot load cluster configuration"),
    ],
)
def test_a_broken_kubeconfig_is_named_on_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "kc"
    path.write_bytes(content)
    for command in (["get"], ["approvals"], ["env", "list"], ["version"]):
        assert main([*command, "--kubeconfig", str(path)]) == 1
        line = _one_line(capsys.readouterr().err)
        assert words in line and str(path) in line


def test_a_missing_kubeconfig_says_no_such_file(capsys):
    assert main(["logs", "r", "--kubeconfig", "/nope"]) == 1
    assert _one_line(capsys.readouterr().err) == "conveyor: kubeconfig /nope: no such file"


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: conveyor" in capsys.readouterr().err


def test_the_exit_codes_are_in_the_help():
    text = build_parser().format_help()
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {code}" in text


def test_help_and_version_do_not_load_the_kubernetes_client_or_kopf():
    # Start-up time (docs/benchmarks.md): what is not imported costs nothing.
    probe = (
        "import sys; from conveyor.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in ('kubernetes', 'kopf', 'jinja2', 'git', 'conveyor.gitlab."
        "importer', 'conveyor.kube.jobspec') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_and_the_job_builder_agree_on_defaults():
    assert jobspec.CHECKOUT_CONTAINER == defaults.CHECKOUT_CONTAINER == "checkout"
    assert jobspec.JobOptions().credentials_namespace == defaults.DEFAULT_CREDENTIALS_NAMESPACE


# --- logs: a job the run does not have ----------------------------------------------------


REF_SPEC = {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}}


def test_follow_of_a_job_the_run_does_not_have_fails_instead_of_waiting():
    run = parse(
        PipelineRun,
        {
            "metadata": {"name": "r"},
            "spec": REF_SPEC,
            "status": {"jobs": [{"name": "unit", "stage": "test", "phase": "Pending"}]},
        },
    )
    check_job(run, "unit", None)
    with pytest.raises(LogsError, match=r"run r has no job 'test' \(its jobs: unit\)"):
        check_job(run, "test", None)
    # Before the run has a status: the pipeline says which jobs it will have.
    pending = parse(PipelineRun, {"metadata": {"name": "r"}, "spec": REF_SPEC})
    pipeline = parse_pipeline_spec({"jobs": [{"name": "build", "script": ["make"]}]})
    check_job(pending, "build", pipeline)
    with pytest.raises(LogsError, match="has no job 'test'"):
        check_job(pending, "test", pipeline)
    with pytest.raises(LogsError, match="pipeline 'p' cannot be read"):
        check_job(pending, "build", None)


def test_following_a_whole_run_takes_started_jobs_in_pipeline_order():
    def run(*jobs):
        body = {
            "metadata": {"name": "r"},
            "spec": REF_SPEC,
            "status": {"phase": "Running", "jobs": [{"stage": "test", **j} for j in jobs]},
        }
        return parse(PipelineRun, body)

    build = {"name": "build", "phase": "Succeeded", "attempt": 1, "jobName": "r-build-1"}
    unit = {"name": "unit", "phase": "Running", "attempt": 2, "jobName": "r-unit-2"}
    ship = {"name": "ship", "phase": "Running", "attempt": 1, "jobName": "r-ship-1"}
    manual = {"name": "later", "phase": "Manual"}
    assert next_to_follow(run(build, unit, manual), set(), set()).job == "build"
    assert next_to_follow(run(build, unit), {("build", 1)}, set()).number == 2
    assert next_to_follow(run(build, unit, manual), {("build", 1), ("unit", 2)}, set()) is None
    # A native deploy has no pod: its record is shown once it has ended.
    assert next_to_follow(run(ship), set(), {"ship"}) is None
    assert next_to_follow(run({**ship, "phase": "Succeeded"}), set(), {"ship"}).job == "ship"


# --- get and describe ----------------------------------------------------------------------


def _run(name="app-1", phase="Running", reason="Running", **status):
    return parse(PipelineRun, _body(name, phase, reason, **status))


def _body(name="app-1", phase="Running", reason="Running", **status):
    return {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {
            "name": name,
            "namespace": "team",
            "uid": "u-1",
            "creationTimestamp": "2026-01-01T11:58:00Z",
            "annotations": {"conveyor.dev/initiator": "developer"},
        },
        "spec": {"pipelineRef": {"name": "app"}, "revision": {"ref": "main"}},
        "status": {
            "phase": phase,
            "shortSha": "01234567",
            "conditions": [
                {"type": "Succeeded", "status": "Unknown", "reason": reason, "message": "m"}
            ],
            **status,
        },
    }


def test_a_run_held_by_a_manual_job_or_a_gate_says_so():
    assert waiting_for(_run(reason="ManualActionRequired")) == "ManualActionRequired"
    assert waiting_for(_run(phase="WaitingForApproval", reason="WaitingForApproval"))
    assert waiting_for(_run()) is None
    assert waiting_for(_run(phase="Failed", reason="Failed")) is None
    text = runs_table([_run(reason="ManualActionRequired")], NOW)
    header, row = text.splitlines()
    assert header.split()[5] == "WAITING" and row.split()[5] == "ManualActionRequired"


def test_wide_and_all_namespaces_add_columns():
    text = runs_table([_run()], NOW, wide=True, namespaces=True)
    header, row = text.splitlines()
    assert header.split()[0] == "NAMESPACE" and row.split()[0] == "team"
    assert header.split()[-4:] == ["SOURCE", "INITIATOR", "TESTS", "MESSAGE"]
    assert "developer" in row


def test_output_name_json_and_yaml_are_kubectls():
    runs = [_body("a"), _body("b")]
    assert names(runs) == "pipelinerun.conveyor.dev/a\npipelinerun.conveyor.dev/b"
    listed = json.loads(serialized(runs, "json", single=False))
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == [
        "a",
        "b",
    ]
    assert yaml.safe_load(serialized(runs[:1], "yaml", single=True))["metadata"]["name"] == "a"


def test_describe_names_each_failure_approvals_and_events():
    run = _body(
        phase="Failed",
        reason="Failed",
        jobs=[
            {"name": "build", "stage": "build", "phase": "Succeeded", "attempt": 1},
            {
                "name": "unit",
                "stage": "test",
                "phase": "Failed",
                "attempt": 2,
                "exitCode": 3,
                "reason": "ScriptFailure",
                "message": "assertion failed in test_x",
            },
        ],
    )
    run["metadata"]["annotations"]["conveyor.dev/cancelled-by"] = "alice"
    approval = {
        "metadata": {"name": "app-1-ship", "creationTimestamp": "2026-01-01T11:59:00Z"},
        "spec": {
            "pipelineRun": "app-1",
            "runUID": "u-1",
            "job": "ship",
            "digest": "sha256:" + "d" * 64,
            "environment": "prod",
            "revision": {"ref": "main"},
            "expiresAt": "2026-01-02T11:59:00Z",
        },
        "status": {
            "decision": "Rejected",
            "votes": [{"user": "bob", "decision": "reject", "time": "2026-01-01T11:59:10Z"}],
        },
    }
    event = {
        "type": "Warning",
        "reason": "JobFailed",
        "message": "job 'unit' failed",
        "lastTimestamp": "2026-01-01T11:59:30Z",
    }
    text = describe(parse(PipelineRun, run), [parse(Approval, approval)], [event], NOW)
    assert "unit (attempt 2, exit code 3): assertion failed in test_x" in text
    assert "Started by:    developer" in text and "Cancelled by:  alice" in text
    assert "app-1-ship" in text and "bob: reject" in text
    assert "JobFailed" in text and "30s" in text
    assert "<none>" in describe(_run(), [], [], NOW)


def _tested_run():
    return _run(
        phase="Failed",
        reason="Failed",
        jobs=[
            {"name": "build", "stage": "build", "phase": "Succeeded", "attempt": 1},
            {
                "name": "unit",
                "stage": "test",
                "phase": "Failed",
                "attempt": 1,
                "tests": {
                    "total": 14,
                    "passed": 11,
                    "failed": 2,
                    "skipped": 1,
                    "failedTests": ["app.TestA.one", "app.TestA.two"],
                },
                "artifacts": [
                    {
                        "name": "artifacts.tar.gz",
                        "size": 3 * 1024 * 1024,
                        "digest": "sha256:" + "ab" * 32,
                        "expiresAt": "2026-01-31T12:00:00Z",
                    },
                    {"name": "junit.xml", "kind": "junit", "size": 512},
                ],
            },
            {
                "name": "lint",
                "stage": "test",
                "phase": "Succeeded",
                "tests": {"total": 3, "passed": 3, "unreadable": ["bad.xml: not well-formed"]},
            },
        ],
    )


def test_get_run_shows_the_test_summary_and_the_failed_tests():
    text = run_summary(_tested_run(), now=NOW)
    lines = text.splitlines()
    assert "Tests:    14 passed, 2 failed, 1 skipped, 1 unreadable" in lines
    header = next(line for line in lines if line.startswith("JOB"))
    assert header.split()[-1] == "TESTS"
    unit = next(line for line in lines if line.startswith("unit"))
    assert unit.endswith("11 passed, 2 failed, 1 skipped")
    build = next(line for line in lines if line.startswith("build"))
    assert build.split()[-1] == "-"
    assert lines[-4:] == [
        "Failed tests:",
        "  unit: app.TestA.one",
        "  unit: app.TestA.two",
        "  lint: unreadable report bad.xml: not well-formed",
    ]
    wide = runs_table([_tested_run()], NOW, wide=True)
    assert "14 passed, 2 failed, 1 skipped, 1 unreadable" in wide.splitlines()[1]


def test_a_run_without_reports_keeps_its_layout():
    run = _run(jobs=[{"name": "build", "stage": "build", "phase": "Succeeded"}])
    assert "TESTS" not in jobs_table(run) and "Tests:" not in run_summary(run, now=NOW)
    assert "Artifacts:" not in describe(run, [], [], NOW)


def test_describe_lists_the_kept_artifacts():
    text = describe(_tested_run(), [], [], NOW)
    assert "Failed tests:" in text
    section = text[text.index("Artifacts:") :].splitlines()
    assert section[1].split() == ["JOB", "FILE", "KIND", "SIZE", "DIGEST", "EXPIRES"]
    assert section[2].split() == [
        "unit",
        "artifacts.tar.gz",
        "archive",
        "3.0MiB",
        "sha256:abababababab",
        "2026-01-31T12:00:00Z",
    ]
    assert section[3].split() == ["unit", "junit.xml", "junit", "512B", "-", "never"]


def test_a_running_job_shows_how_long_it_has_run():
    run = _run(
        jobs=[
            {
                "name": "unit",
                "stage": "test",
                "phase": "Running",
                "attempt": 1,
                "startTime": "2026-01-01T11:59:00Z",
            }
        ]
    )
    assert jobs_table(run, now=NOW).splitlines()[1].split()[-1] == "1m0s"


# --- retry and rerun -----------------------------------------------------------------------


def _failed_run(**spec):
    run = _body(
        phase="Failed",
        reason="Failed",
        jobs=[
            {"name": "build", "stage": "build", "phase": "Succeeded", "attempt": 1},
            {"name": "unit", "stage": "test", "phase": "Failed", "attempt": 1},
            {"name": "lint", "stage": "test", "phase": "Failed", "attempt": 2},
            {
                "name": "ship",
                "stage": "deploy",
                "phase": "Failed",
                "attempt": 1,
                "environment": "prod",
            },
            {"name": "later", "stage": "deploy", "phase": "Skipped"},
        ],
    )
    run["spec"].update(spec)
    return parse(PipelineRun, run)


def test_retry_names_the_failed_attempt_of_each_job():
    assert retry_entries(_failed_run(), ["unit"], {}) == [RetryRequest("unit", 1)]
    assert retry_entries(_failed_run(), [], {"ship": "prod"}) == [
        RetryRequest("unit", 1),
        RetryRequest("lint", 2),
    ]
    # Asked for before: not asked again.
    again = _failed_run(retry=[{"job": "unit", "attempt": 1}])
    assert retry_entries(again, ["unit"], {}) == []


@pytest.mark.parametrize(
    ("jobs", "words"),
    [
        (["nope"], "has no job 'nope'"),
        (["build"], "has not failed (it is Succeeded)"),
        (["later"], "has not failed (it is Skipped)"),
        (["ship"], "deploys to prod, which requires approval"),
    ],
)
def test_what_retry_refuses_is_named(jobs, words):
    with pytest.raises(ValueError, match=r".*") as e:
        retry_entries(_failed_run(), jobs, {"ship": "prod"})
    assert words in str(e.value)


def test_retry_refuses_a_cancelled_run_and_a_run_with_nothing_failed():
    with pytest.raises(ValueError, match="cancelled"):
        retry_entries(_failed_run(status="Cancelled"), [], {})
    with pytest.raises(ValueError, match="no failed job"):
        retry_entries(_run(), [], {})
    # Only gated jobs failed: nothing may be retried, and why is said.
    only_gate = _run(
        phase="Failed", jobs=[{"name": "ship", "stage": "deploy", "phase": "Failed", "attempt": 1}]
    )
    with pytest.raises(ValueError, match="requires approval"):
        retry_entries(only_gate, [], {"ship": "prod"})


def test_rerun_is_a_new_run_of_the_commit_that_was_built():
    run = _body(evaluation={"sha": "a" * 40})
    run["spec"]["variables"] = {"X": "1"}
    run["spec"]["pipelineSource"] = "push"
    run["spec"]["retry"] = [{"job": "unit", "attempt": 1}]
    run["spec"]["status"] = "Cancelled"
    new = rerun_manifest(parse(PipelineRun, run))
    assert new["metadata"] == {
        "generateName": "app-",
        "annotations": {"conveyor.dev/rerun-of": "app-1"},
    }
    assert new["spec"] == {
        "revision": {"ref": "main", "sha": "a" * 40},
        "pipelineRef": {"name": "app"},
        "variables": {"X": "1"},
        "pipelineSource": "push",
    }


def test_wait_exits_0_only_for_a_run_that_succeeded_or_was_skipped():
    assert [exit_code_of(p) for p in ("Succeeded", "Skipped", "Failed", "Cancelled")] == [
        0,
        0,
        1,
        1,
    ]


# --- version and completion ----------------------------------------------------------------


def test_the_operators_version_from_its_image_or_metrics():
    assert image_version("registry.example.com:5000/conveyor:0.2.0") == "0.2.0"
    assert image_version("conveyor@sha256:abc") == "sha256:abc"
    assert image_version("conveyor") == "latest"
    deployment = {
        "metadata": {"name": "conveyor-operator"},
        "spec": {"template": {"spec": {"containers": [{"name": "operator", "image": "c:1.2"}]}}},
    }
    assert deployment_version([deployment]) == "1.2"
    assert deployment_version([]) is None
    metrics = '# HELP x\nconveyor_build_info{version="0.3.1"} 1.0\nother 2\n'
    assert metrics_version(metrics) == "0.3.1"
    assert metrics_version("nothing") is None


def test_version_client_needs_no_cluster(capsys):
    assert main(["version", "--client"]) == 0
    assert capsys.readouterr().out.startswith("conveyor: ")


def test_completion_knows_every_command_and_its_options():
    found = {c.name: c for c in commands(build_parser())}
    assert {"run", "get", "describe", "retry", "rerun", "logs", "env", "completion"} <= set(found)
    assert "--all-namespaces" in found["get"].options
    assert found["get"].choices["-o"] == ["table", "wide", "json", "yaml", "name"]
    assert found["retry"].takes_run and not found["run"].takes_run
    assert [s.name for s in found["env"].subcommands] == ["add", "list"]
    assert "--kube-context" not in found["env"].subcommands[0].options  # hidden old names


def test_the_bash_script_completes_commands_and_options(tmp_path):
    path = tmp_path / "c.bash"
    path.write_text(script("bash", build_parser()))

    def complete(*words: str) -> list[str]:
        line = " ".join(f"'{w}'" for w in words)
        probe = (
            f"source {path}; COMP_WORDS=(conveyor {line}); COMP_CWORD={len(words)}; "
            'conveyor() { :; }; _conveyor; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert "describe" in complete("des")
    assert complete("get", "--all") == ["--all-namespaces"]
    assert complete("get", "-o", "ya") == ["yaml"]
    assert complete("env", "a") == ["add"]
    assert "--target-context" in complete("env", "add", "--target-c")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_zsh_and_fish_scripts_parse(shell, tmp_path):
    text = script(shell, build_parser())
    assert "describe" in text and "_conveyor_runs" in text
    binary = shutil.which(shell)
    if binary is None:
        return  # the script's content is checked above; the shell is not installed here
    path = tmp_path / f"c.{shell}"
    path.write_text(text)
    flag = ["-n"] if shell == "zsh" else ["--no-execute"]
    subprocess.run([binary, *flag, str(path)], check=True)


# --- objects the model refuses -----------------------------------------------------------


class _Cluster:
    """The API server as `get` sees it: these run bodies, nothing else."""

    def __init__(self, *bodies, changes=()):
        self.bodies = {b["metadata"]["name"]: b for b in bodies}
        self.changes = list(changes)

    def watch_runs(self, namespace, name=None, timeout=3600):
        yield from (("ADDED", b) for b in self.bodies.values())  # a watch replays the list
        yield from (("MODIFIED", b) for b in self.changes)

    def list_runs(self, namespace):
        return list(self.bodies.values())

    def get_run(self, namespace, name):
        return self.bodies[name]


def _hand_edited():
    body = _body("edited")
    body["status"]["jobs"] = [{"name": "unit", "phase": "Running"}]  # no stage: the CRD's rule
    return body


def _get(cluster, *argv):
    args = build_parser().parse_args(["get", *argv])
    return cluster_errors(lambda: cmd_get(args, cluster, "team"), lambda: None)


def test_a_listing_leaves_out_a_run_its_model_refuses_and_says_so(capsys):
    assert _get(_Cluster(_body("good"), _hand_edited())) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["NAME", "good"]
    assert _one_line(err) == (
        "conveyor: skipped pipelinerun team/edited: status.jobs[0].stage: required field is missing"
    )
    # -o json prints the objects as the API server returns them: nothing is read, nothing left out.
    assert _get(_Cluster(_body("good"), _hand_edited()), "-o", "json") == 0
    out, err = capsys.readouterr()
    assert [i["metadata"]["name"] for i in json.loads(out)["items"]] == ["good", "edited"]
    assert err == ""


def test_a_command_about_a_run_its_model_refuses_fails_naming_the_field(capsys):
    assert _get(_Cluster(_hand_edited()), "edited") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err) == (
        "conveyor: pipelinerun team/edited cannot be read: "
        "status.jobs[0].stage: required field is missing"
    )


def test_a_watched_listing_says_a_refused_run_once_and_prints_the_others_changes(capsys):
    cluster = _Cluster(
        _body("good"), _hand_edited(), changes=[_hand_edited(), _body("good", "Failed")]
    )
    assert _get(cluster, "-w") == 0
    out, err = capsys.readouterr()
    rows = [line.split() for line in out.splitlines()]
    assert [(r[0], r[4]) for r in rows] == [
        ("NAME", "STATUS"),
        ("good", "Running"),
        ("good", "Failed"),
    ]
    assert _one_line(err).startswith("conveyor: skipped pipelinerun team/edited: status.jobs[0]")
