"""`scan: {scanner: clair}` jobs: the pod the operator makes, and the Go client's own tests
(scanners/, run here with the Go toolchain so `make test` covers them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conveyor.api import ModelError
from conveyor.api.pipeline import parse_pipeline_spec
from conveyor.kube.jobspec import JobOptions, build_job
from tests.unit.kube.test_jobspec import env_of, make

ROOT = Path(__file__).resolve().parents[3]


def clair_pod(scan, options=None, built=None):
    run, spec, _ = make(
        {"script": [], "scan": scan, "stage": "test"},
        {
            "jobs": [
                {"name": "unit tests", "stage": "test", "scan": scan},
                {"name": "img", "stage": "build", "build": {"image": "reg/app:1"}},
            ]
        },
    )
    job = spec.job("unit tests")
    return build_job(run=run, pipeline=spec, job=job, attempt=1, options=options, built=built)[
        "spec"
    ]["template"]["spec"]


def test_the_scanner_is_trivy_unless_clair_is_asked_for():
    spec = parse_pipeline_spec({"jobs": [{"name": "s", "scan": {"image": "x"}}]})
    assert spec.jobs[0].scan.scanner == "trivy"
    with pytest.raises(ModelError, match="scanner: must be one of trivy, clair"):
        parse_pipeline_spec({"jobs": [{"name": "s", "scan": {"image": "x", "scanner": "grype"}}]})


def test_a_clair_scan_runs_the_client_against_the_operators_clair():
    digest = "sha256:" + "e5" * 32
    options = JobOptions(clair_url="http://clair.sec.svc:6060", clair_scanner_image="cs@sha256:1")
    pod = clair_pod(
        {"build": "img", "scanner": "clair", "severities": ["CRITICAL"]},
        options,
        built={"reg/app:1": digest},
    )
    (scan,) = pod["containers"]
    assert scan["image"] == "cs@sha256:1"
    assert "command" not in scan and "args" not in scan  # the image's entrypoint is the client
    env = env_of(scan)
    assert env["CONVEYOR_SCAN_IMAGE"] == f"reg/app:1@{digest}"
    assert env["CONVEYOR_CLAIR_URL"] == "http://clair.sec.svc:6060"
    assert env["CONVEYOR_SCAN_SEVERITIES"] == "CRITICAL"
    assert env["CONVEYOR_SCAN_IGNORE_UNFIXED"] == "false"
    assert env["CONVEYOR_SCAN_REPORT"] == "gl-container-scanning-report.json"
    assert "DOCKER_CONFIG" not in env
    context = scan["securityContext"]
    assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert scan["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_a_clair_scan_defaults_and_private_images():
    pod = clair_pod(
        {"image": "reg/base:3", "scanner": "clair", "ignoreUnfixed": True, "registrySecret": "pull"}
    )
    (scan,) = pod["containers"]
    env = env_of(scan)
    assert scan["image"] == "conveyor-clair-scan:0.1.0"
    assert env["CONVEYOR_CLAIR_URL"] == "http://clair.clair.svc:6060"
    assert env["CONVEYOR_SCAN_IGNORE_UNFIXED"] == "true"
    assert env["DOCKER_CONFIG"] == "/conveyor/registry-auth"
    assert scan["volumeMounts"] == [
        {"name": "registry-auth", "mountPath": "/conveyor/registry-auth", "readOnly": True}
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == "registry-auth")
    assert volume["secret"]["secretName"] == "pull"
    # No Clair configured: the client is told nothing and exits 2, saying so.
    pod = clair_pod({"image": "reg/base:3", "scanner": "clair"}, JobOptions(clair_url=None))
    assert "CONVEYOR_CLAIR_URL" not in env_of(pod["containers"][0])


def test_the_clair_client_go_tests():
    go = shutil.which("go") or "/usr/local/go/bin/go"
    proc = subprocess.run(
        [go, "test", "-count=1", "./..."],
        cwd=ROOT / "scanners",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "GOFLAGS": "-mod=mod",
             "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
