"""Artifacts, caches and dependencies on the real API server: the CRD schema stores every field
(nothing pruned), refuses bad ones with the field's name, and keeps the status the data plane
writes (jobs[].artifacts, jobs[].tests)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conveyor.api import GROUP, VERSION, Pipeline
from conveyor.api.pipelinerun import parse_run_status
from conveyor.engine.artifacts import artifact_sources
from tests.e2e.conveyor import install
from tests.e2e.support import Clusters

MERGE = "application/merge-patch+json"

JOBS: list[dict[str, Any]] = [
    {
        "name": "build",
        "stage": "build",
        "script": ["make"],
        "artifacts": {
            "paths": ["dist/", "bin/app"],
            "exclude": ["dist/**/*.map"],
            "untracked": True,
            "name": "build-$CI_COMMIT_REF_SLUG",
            "when": "always",
            "expireIn": "1 week",
            "reports": {"junit": ["junit.xml"], "containerScanning": ["gl-cs.json"]},
        },
        "cache": [
            {
                "keyFiles": {"files": ["package-lock.json", "yarn.lock"], "prefix": "npm"},
                "paths": ["node_modules/"],
                "fallbackKeys": ["npm-main", "npm-default"],
                "policy": "pull",
                "when": "on_failure",
                "untracked": True,
            },
            {"key": "$CI_COMMIT_REF_SLUG", "paths": [".cache/"]},
        ],
    },
    {"name": "lint", "stage": "build", "script": ["lint"]},
    {"name": "test", "stage": "test", "script": ["test"], "dependencies": ["build"]},
    {"name": "none", "stage": "test", "script": ["x"], "dependencies": []},
    {
        "name": "deploy",
        "stage": "deploy",
        "script": ["deploy"],
        "needs": ["build", "lint"],
        "needsWithoutArtifacts": ["lint"],
    },
]


@pytest.fixture(scope="module")
def api(clusters: Clusters) -> client.CustomObjectsApi:
    install(clusters)
    return client.CustomObjectsApi(clusters.api("ci"))


def _pipeline(name: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {"stages": ["build", "test", "deploy"], "jobs": jobs},
    }


def test_a_pipeline_with_every_artifact_field_is_stored_whole(
    api: client.CustomObjectsApi, namespace: str
) -> None:
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "pipelines", _pipeline("app", JOBS)
    )
    stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "pipelines", "app")
    jobs = {j["name"]: j for j in stored["spec"]["jobs"]}
    assert jobs["build"]["artifacts"] == JOBS[0]["artifacts"]
    first, second = jobs["build"]["cache"]
    assert first == JOBS[0]["cache"][0]
    # the schema's defaults
    assert second == {
        "key": "$CI_COMMIT_REF_SLUG",
        "paths": [".cache/"],
        "policy": "pull-push",
        "when": "on_success",
    }
    assert jobs["lint"].get("dependencies") is None  # absent stays absent
    assert jobs["none"]["dependencies"] == []  # distinct from absent
    assert jobs["deploy"]["needsWithoutArtifacts"] == ["lint"]
    spec = Pipeline.from_dict(stored).spec
    assert spec is not None
    assert artifact_sources(spec, "test") == ("build",)
    assert artifact_sources(spec, "none") == ()
    assert artifact_sources(spec, "deploy") == ("build",)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (
            {"cache": [{"key": "k", "keyFiles": {"files": ["a"]}, "paths": ["x"]}]},
            "cache: give key or keyFiles, not both",
        ),
        ({"cache": [{"keyFiles": {"files": ["a", "b", "c"]}, "paths": ["x"]}]}, "keyFiles.files"),
        ({"cache": [{"paths": ["x"], "policy": "sometimes"}]}, "policy"),
        ({"artifacts": {"paths": ["x"], "when": "manual"}}, "artifacts.when"),
        ({"artifacts": {"paths": ["x"], "expireIn": "soon"}}, "artifacts.expireIn"),
        ({"cache": [{"paths": ["x"]}] * 5}, "cache"),
    ],
)
def test_bad_fields_are_refused_naming_them(
    api: client.CustomObjectsApi, namespace: str, job: dict[str, Any], message: str
) -> None:
    body = _pipeline("bad", [{"name": "j", "script": ["x"], **job}])
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "pipelines", body, dry_run="All"
        )
    assert err.value.status == 422 and message in err.value.body, err.value.body


def test_the_run_status_keeps_artifacts_and_tests(
    api: client.CustomObjectsApi, namespace: str
) -> None:
    run = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PipelineRun",
        "metadata": {"name": "app-1"},
        "spec": {
            "pipelineSpec": {"jobs": [{"name": "t", "script": ["x"]}]},
            "revision": {"ref": "main"},
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "pipelineruns", run)
    job = {
        "name": "t",
        "stage": "test",
        "phase": "Failed",
        "artifacts": [
            {
                "name": "artifacts.tar.gz",
                "kind": "archive",
                "size": 1234,
                "digest": "sha256:" + "0" * 64,
                "expiresAt": "2026-12-07T10:00:00Z",
            },
            {"name": "junit.xml", "kind": "junit", "size": 99},
        ],
        "tests": {
            "total": 3,
            "passed": 1,
            "failed": 1,
            "errors": 0,
            "skipped": 1,
            "failedTests": ["app.T.fails"],
            "unreadable": [],
        },
    }
    # A server-side dry run shows what would be stored: a field the schema lacks is pruned.
    answer = api.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "pipelineruns",
        "app-1",
        {"status": {"jobs": [job]}},
        dry_run="All",
        _content_type=MERGE,
    )
    stored = answer["status"]["jobs"][0]
    assert stored["artifacts"] == job["artifacts"]
    assert stored["tests"] == job["tests"]
    status = parse_run_status(answer["status"])
    assert status.job("t").tests.failed_tests == ("app.T.fails",)
    bad = {**job, "artifacts": [{"name": "x", "digest": "md5:abc"}]}
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            "pipelineruns",
            "app-1",
            {"status": {"jobs": [bad]}},
            dry_run="All",
            _content_type=MERGE,
        )
    assert err.value.status == 422 and "digest" in err.value.body
