"""GitLab runner tags onto nodes: the operator's --tag-selector / --tag-toleration mapping, the
job pod it gives, the importer keeping tags, and the failure of a tag nobody maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.api import PipelineRun, parse_pipeline_spec
from conveyor.api.pipeline import Toleration
from conveyor.cli.main import build_parser
from conveyor.cli.operator_cmd import job_options
from conveyor.engine.tags import (
    TagError,
    TagMap,
    parse_tag_selector,
    parse_tag_toleration,
    placement,
    tag_map,
)
from conveyor.gitlab.importer import import_text
from conveyor.kube.jobspec import JobOptions, build_job

REAL = ["docker=conveyor.dev/node=real"]
REAL_TAINT = ["docker=conveyor.dev/real-node=true:NoSchedule"]
TAINT = Toleration(
    key="conveyor.dev/real-node", operator="Equal", value="true", effect="NoSchedule"
)


def test_a_tag_selector_is_tag_label_value() -> None:
    assert parse_tag_selector("docker=conveyor.dev/node=real") == (
        "docker",
        "conveyor.dev/node",
        "real",
    )
    assert parse_tag_selector("gpu=accelerator=") == ("gpu", "accelerator", "")
    for bad in ("docker", "docker=label", "=l=v", "a=b=c=d"):
        with pytest.raises(ValueError, match="TAG=LABEL=VALUE"):
            parse_tag_selector(bad)


def test_a_tag_toleration_is_written_as_kubectl_taint_writes_a_taint() -> None:
    assert parse_tag_toleration(REAL_TAINT[0]) == ("docker", TAINT)
    assert parse_tag_toleration("gpu=nvidia.com/gpu:NoSchedule") == (
        "gpu",
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
    )
    assert parse_tag_toleration("gpu=dedicated=ml") == (
        "gpu",
        Toleration(key="dedicated", operator="Equal", value="ml"),
    )
    with pytest.raises(ValueError, match="effect must be one of"):
        parse_tag_toleration("gpu=dedicated=ml:Never")
    with pytest.raises(ValueError, match="TAG=KEY"):
        parse_tag_toleration("gpu")


def test_one_tag_cannot_map_a_label_to_two_values() -> None:
    with pytest.raises(ValueError, match=r"'docker' maps label conveyor\.dev/node to both"):
        tag_map([*REAL, "docker=conveyor.dev/node=kwok"])


def test_tags_add_their_labels_and_tolerations_to_the_jobs_own() -> None:
    mapping = tag_map([*REAL, "go=lang=go"], REAL_TAINT)
    selector, tolerations = placement(["docker", "go"], {"zone": "a"}, None, mapping)
    assert selector == {"zone": "a", "conveyor.dev/node": "real", "lang": "go"}
    assert tolerations == [TAINT]
    # The job's own toleration is kept, once.
    selector, tolerations = placement(["docker"], None, [TAINT], mapping)
    assert tolerations == [TAINT]
    assert placement([], {"zone": "a"}, None, mapping) == ({"zone": "a"}, [])


def test_a_tag_nobody_maps_fails_naming_the_tag() -> None:
    mapping = tag_map(REAL, REAL_TAINT)
    with pytest.raises(TagError, match=r"no node serves tag 'gpu'.*tags it maps: docker") as e:
        placement(["docker", "gpu"], None, None, mapping)
    assert e.value.tag == "gpu"
    with pytest.raises(TagError, match="tags it maps: none"):
        placement(["docker"], None, None, TagMap())


def test_a_tag_mapped_by_a_toleration_only_is_mapped() -> None:
    mapping = tag_map((), REAL_TAINT)
    assert placement(["docker"], None, None, mapping) == ({}, [TAINT])


def test_a_tag_that_contradicts_the_jobs_node_selector_fails() -> None:
    mapping = tag_map([*REAL, "kwok=conveyor.dev/node=kwok"])
    with pytest.raises(TagError, match=r"the job's nodeSelector asks for conveyor\.dev/node=kwok"):
        placement(["docker"], {"conveyor.dev/node": "kwok"}, None, mapping)
    with pytest.raises(
        TagError, match=r"tag 'kwok' needs conveyor\.dev/node=kwok, but another tag"
    ):
        placement(["docker", "kwok"], None, None, mapping)


def _job(fields: dict, spec: dict | None = None) -> tuple[PipelineRun, object, object]:
    pipeline = parse_pipeline_spec(
        {"jobs": [{"name": "j", "script": ["x"], **fields}], **(spec or {})}
    )
    run = PipelineRun.from_dict(
        {
            "metadata": {"name": "r", "namespace": "ci", "uid": "u"},
            "spec": {"pipelineRef": {"name": "p"}, "revision": {"ref": "main"}},
        }
    )
    return run, pipeline, pipeline.jobs[0]


def test_the_job_pod_carries_what_its_tags_map_to() -> None:
    run, pipeline, job = _job({"tags": ["docker"]}, {"nodeSelector": {"zone": "a"}})
    options = JobOptions(tags=tag_map(REAL, REAL_TAINT))
    spec = build_job(run=run, pipeline=pipeline, job=job, attempt=1, options=options)
    pod = spec["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"zone": "a", "conveyor.dev/node": "real"}
    assert pod["tolerations"] == [
        {
            "key": "conveyor.dev/real-node",
            "operator": "Equal",
            "value": "true",
            "effect": "NoSchedule",
        }
    ]


def test_building_a_job_with_an_unmapped_tag_raises() -> None:
    run, pipeline, job = _job({"tags": ["gpu"]})
    with pytest.raises(TagError, match="'gpu'"):
        build_job(run=run, pipeline=pipeline, job=job, attempt=1, options=JobOptions())


def test_job_tags_are_a_set_of_names_in_the_api() -> None:
    _, _, job = _job({"tags": ["docker", "linux"]})
    assert job.tags == ("docker", "linux")  # type: ignore[attr-defined]
    _, _, job = _job({})
    assert job.tags == ()  # type: ignore[attr-defined]


def test_the_operator_options_build_the_tag_map() -> None:
    args = build_parser().parse_args(
        ["operator", "--tag-selector", REAL[0], "--tag-toleration", REAL_TAINT[0]]
    )
    assert job_options(args).tags == TagMap(
        {"docker": {"conveyor.dev/node": "real"}}, {"docker": (TAINT,)}
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "--tag-selector", "docker"])


def _imported(text: str) -> dict[str, dict]:
    result = import_text(text, ".gitlab-ci.yml", Path("."), name="p")
    return {j["name"]: j for j in result.manifest["spec"]["jobs"]}


def test_the_importer_keeps_job_and_default_tags() -> None:
    jobs = _imported(
        "default:\n  tags: [docker]\n"
        "a:\n  script: [x]\n"
        "b:\n  script: [x]\n  tags: [gpu, gpu, linux]\n"
        "c:\n  script: [x]\n  inherit: {default: false}\n"
        "d:\n  script: [x]\n  tags: docker\n"
    )
    assert jobs["a"]["tags"] == ["docker"]
    assert jobs["b"]["tags"] == ["gpu", "linux"]  # a job's own tags replace default:tags
    assert "tags" not in jobs["c"]
    assert jobs["d"]["tags"] == ["docker"]
    # And the manifest is a valid Pipeline.
    assert parse_pipeline_spec({"jobs": list(jobs.values())}).jobs[1].tags == ("gpu", "linux")
