"""Artifacts, caches and reports: the pure rules (conveyor.engine.artifacts, .reports) and the
API fields they read."""

from __future__ import annotations

import datetime
import hashlib
import re

import pytest

from conveyor.api import ModelError, parse_pipeline_spec
from conveyor.api.pipeline import (
    EXPIRE_IN_PATTERN,
    ArtifactReports,
    Artifacts,
    Cache,
    CacheKeyFiles,
)
from conveyor.api.pipelinerun import JunitSummary, parse_run_status
from conveyor.engine import validate_pipeline
from conveyor.engine.artifacts import (
    CONTAINER_SCANNING_REPORT,
    CacheKeyError,
    archive_name,
    artifact_object,
    artifact_prefix,
    artifact_sources,
    cache_keys,
    cache_object,
    cache_restores,
    cache_saves,
    check_cache_key,
    effective_artifacts,
    expire_seconds,
    expires_at,
    files_digest,
    has_archive,
    key_files_prefix,
    namespace_prefix,
    normalize_path,
    report_paths,
    run_prefix,
    sanitize_cache_key,
    should_upload,
    should_upload_reports,
    uses_untracked,
)
from conveyor.engine.reports import (
    ReportError,
    merge_summaries,
    parse_junit,
    summarize_junit_files,
    summary_text,
)


def spec(*jobs, stages=("build", "test", "deploy")):
    return parse_pipeline_spec({"stages": list(stages), "jobs": list(jobs)})


def job(name, stage="test", **fields):
    return {"name": name, "stage": stage, "script": ["x"], **fields}


# --- which artifacts a job downloads ---------------------------------------------------------


def test_a_stage_job_downloads_every_earlier_stage_in_order():
    s = spec(
        job("b2", "build"),
        job("b1", "build"),
        job("t", "test"),
        job("t2", "test"),
        job("d", "deploy"),
    )
    assert artifact_sources(s, "d") == ("b2", "b1", "t", "t2")
    assert artifact_sources(s, "t") == ("b2", "b1")  # not its own stage
    assert artifact_sources(s, "b1") == ()


def test_dependencies_name_exactly_the_jobs_and_empty_means_none():
    s = spec(
        job("b1", "build"),
        job("b2", "build"),
        job("t", "test", dependencies=["b2"]),
        job("d", "deploy", dependencies=[]),
    )
    assert artifact_sources(s, "t") == ("b2",)
    assert artifact_sources(s, "d") == ()
    assert validate_pipeline(s) == []


def test_needs_narrow_and_artifacts_false_leaves_a_need_out():
    s = spec(
        job("b1", "build"),
        job("b2", "build"),
        job("b3", "build"),
        job("t", "test", needs=["b1", "b2"], needsWithoutArtifacts=["b2"]),
        job("o", "test", needs=["b1"], optionalNeeds=["b3", "gone"]),
        job("now", "deploy", needs=[]),
    )
    assert artifact_sources(s, "t") == ("b1",)
    assert artifact_sources(s, "o") == ("b1", "b3")
    assert artifact_sources(s, "o", present={"b1", "o"}) == ("b1",)  # b3 excluded by rules
    assert artifact_sources(s, "now") == ()
    assert validate_pipeline(s) == []


def test_dependencies_and_needs_together_dependencies_win():
    s = spec(
        job("b1", "build"), job("b2", "build"), job("t", needs=["b1", "b2"], dependencies=["b2"])
    )
    assert artifact_sources(s, "t") == ("b2",)


def test_excluded_jobs_give_no_artifacts():
    s = spec(job("b1", "build"), job("b2", "build"), job("t"))
    assert artifact_sources(s, "t", present=["b2", "t"]) == ("b2",)
    with pytest.raises(KeyError):
        artifact_sources(s, "nope")


@pytest.mark.parametrize(
    ("jobs", "problem"),
    [
        (
            [job("b", "build"), job("t", dependencies=["nope"])],
            "job 't': dependencies: job 'nope' does not exist in the pipeline",
        ),
        (
            [job("b", "test"), job("t", dependencies=["b"])],
            "job 't': dependencies: 'b' is not in an earlier stage (it is in 'test')",
        ),
        (
            [job("b", "deploy"), job("t", dependencies=["b"])],
            "job 't': dependencies: 'b' is not in an earlier stage (it is in 'deploy')",
        ),
        (
            [job("b", "build"), job("c", "build"), job("t", needs=["c"], dependencies=["b"])],
            "job 't': dependencies: 'b' should be part of needs",
        ),
        (
            [job("b", "build"), job("t", needs=["b"], needsWithoutArtifacts=["c"])],
            "job 't': needsWithoutArtifacts: 'c' is not in needs or optionalNeeds",
        ),
        (
            [job("t", cache=[{"key": "a/b", "paths": ["x"]}])],
            "job 't': cache[0]: key 'a/b': must not contain '/' (or %2F)",
        ),
        (
            [job("t", cache=[{"key": "..", "paths": ["x"]}])],
            "job 't': cache[0]: key '..': must not be '.' or '..' (or %2E)",
        ),
        (
            [job("t", cache=[{"key": "k"}])],
            "job 't': cache[0]: paths: give paths or untracked: true",
        ),
    ],
)
def test_validation_names_the_job_and_the_field(jobs, problem):
    assert problem in validate_pipeline(spec(*jobs))


def test_a_same_stage_dependency_is_fine_when_it_is_a_need():
    s = spec(job("b", "test"), job("t", needs=["b"], dependencies=["b"]))
    assert validate_pipeline(s) == []
    assert artifact_sources(s, "t") == ("b",)


# --- the API fields ---------------------------------------------------------------------------


def test_absent_dependencies_differ_from_an_empty_list():
    s = spec(job("a"), job("b", dependencies=[]))
    assert s.job("a").dependencies is None
    assert s.job("b").dependencies == ()


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"artifacts": {"paths": ["x"], "expireIn": "soon"}}, "expireIn"),
        ({"artifacts": {"paths": ["x"], "when": "manual"}}, "when"),
        ({"cache": [{"key": "k", "keyFiles": {"files": ["a"]}, "paths": ["x"]}]}, "cache"),
        ({"cache": [{"keyFiles": {"files": ["a", "b", "c"]}, "paths": ["x"]}]}, "files"),
        ({"cache": [{"paths": ["x"], "policy": "sometimes"}]}, "policy"),
    ],
)
def test_bad_fields_are_refused_naming_the_field(fields, path):
    with pytest.raises(ModelError) as err:
        spec(job("t", **fields))
    assert path in str(err.value)


def test_job_status_reads_artifacts_and_tests():
    status = parse_run_status(
        {
            "jobs": [
                {
                    "name": "t",
                    "stage": "test",
                    "phase": "Succeeded",
                    "artifacts": [
                        {
                            "name": "artifacts.tar.gz",
                            "size": 12,
                            "digest": "sha256:" + "a" * 64,
                            "expiresAt": "2026-12-07T10:00:00Z",
                        },
                        {"name": "junit.xml", "kind": "junit", "size": 3},
                    ],
                    "tests": {"total": 3, "passed": 2, "failed": 1, "failedTests": ["a.b"]},
                }
            ]
        }
    )
    t = status.job("t")
    assert t.artifacts[0].kind == "archive" and t.artifacts[0].expires_at.day == 7
    assert t.artifacts[1].kind == "junit"
    assert t.tests == JunitSummary(total=3, passed=2, failed=1, failed_tests=("a.b",))


# --- artifacts: kept or not, names, expiry --------------------------------------------------


@pytest.mark.parametrize(
    ("when", "succeeded", "upload"),
    [
        ("on_success", True, True),
        ("on_success", False, False),
        ("on_failure", True, False),
        ("on_failure", False, True),
        ("always", True, True),
        ("always", False, True),
    ],
)
def test_should_upload_follows_when(when, succeeded, upload):
    assert should_upload(Artifacts(paths=("x",), when=when), succeeded) is upload


def test_no_artifacts_nothing_to_upload():
    assert should_upload(None, True) is False
    assert should_upload_reports(None) is False and has_archive(None) is False


def test_reports_are_kept_whatever_the_result_and_an_archive_needs_paths():
    reports_only = Artifacts(reports=ArtifactReports(junit=("junit.xml",)))
    assert should_upload_reports(reports_only) is True  # GitLab: reports are `when: always`
    assert has_archive(reports_only) is False
    assert has_archive(Artifacts(untracked=True)) and has_archive(Artifacts(paths=("x",)))
    assert should_upload_reports(Artifacts(paths=("x",))) is False


def test_a_scan_job_keeps_its_gitlab_report():
    s = spec(
        {"name": "scan", "stage": "test", "scan": {"image": "alpine:3"}},
        {
            "name": "scan2",
            "stage": "test",
            "scan": {"image": "alpine:3"},
            "artifacts": {"paths": ["extra"], "reports": {"junit": ["j.xml"]}},
        },
    )
    plain = effective_artifacts(s.job("scan"))
    assert plain is not None and plain.when == "always"
    assert report_paths(plain) == {"container_scanning": (CONTAINER_SCANNING_REPORT,)}
    own = effective_artifacts(s.job("scan2"))
    assert own.paths == ("extra",)
    assert report_paths(own) == {
        "junit": ("j.xml",),
        "container_scanning": (CONTAINER_SCANNING_REPORT,),
    }
    script_job = spec(job("t")).job("t")
    assert effective_artifacts(script_job) is None and report_paths(None) == {}


def test_the_report_is_the_file_the_scanners_write():
    from conveyor.kube import clair, scans

    assert CONTAINER_SCANNING_REPORT == scans.SCAN_REPORT == clair.REPORT


def test_archive_name_expands_variables_and_stays_one_component():
    values = {"CI_JOB_NAME": "build/linux", "REF": "main"}.get
    assert archive_name(None) == "artifacts"
    assert archive_name(Artifacts(name="$CI_JOB_NAME-$REF"), values) == "build-linux-main"
    assert archive_name(Artifacts(name="$NOPE"), values) == "artifacts"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("42", 42),
        ("42 seconds", 42),
        ("3 mins 4 sec", 184),
        ("2 hrs 20 min", 8400),
        ("2h20min", 8400),
        ("6 mos 1 day", 6 * 30 * 86400 + 86400),
        ("3 weeks and 2 days", 23 * 86400),
        ("47 yrs 6 mos and 4d", 47 * 31557600 + 6 * 2592000 + 4 * 86400),
        ("1 Week", 7 * 86400),
        ("never", None),
        ("Never", None),
    ],
)
def test_expire_in_takes_gitlabs_documented_examples(text, seconds):
    assert expire_seconds(text) == seconds
    assert re.search(EXPIRE_IN_PATTERN, text), "the CRD's pattern refuses it"
    assert Artifacts(expire_in=text).expire_in == text


@pytest.mark.parametrize(
    "text", ["soon", "1 week soon", "weeks", "1 weeks and", "-1h", "1 fortnight"]
)
def test_expire_in_refuses_what_gitlab_refuses(text):
    with pytest.raises(ModelError, match="expireIn"):
        Artifacts(expire_in=text)
    if text != "1 fortnight":  # the units are Python's to check, the shape the schema's
        assert not re.search(EXPIRE_IN_PATTERN, text)


def test_expires_at():
    done = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.UTC)
    assert expires_at(Artifacts(expire_in="1 week"), done) == done + datetime.timedelta(days=7)
    assert expires_at(Artifacts(expire_in="never"), done) is None
    assert expires_at(Artifacts(), done) == done + datetime.timedelta(days=30)  # the default
    assert expires_at(Artifacts(), done, default_expire_in=None) is None
    assert expires_at(None, done, "1h") == done + datetime.timedelta(hours=1)
    with pytest.raises(ValueError):
        expire_seconds("0")


# --- object names -----------------------------------------------------------------------------


def test_object_names_are_per_namespace_run_job_and_attempt():
    assert artifact_prefix("team", "app-1", "build", 2) == "artifacts/team/app-1/build/2/"
    assert (
        artifact_object("team", "app-1", "test 1/2: [a, b]", 1, "junit.xml")
        == "artifacts/team/app-1/test%201%2F2%3A%20%5Ba%2C%20b%5D/1/junit.xml"
    )
    assert artifact_prefix("team", "app-1", "b", 1, run_uid="u1") == "artifacts/team/app-1-u1/b/1/"
    assert run_prefix("team", "app-1") == "artifacts/team/app-1/"
    assert artifact_object("team", "r", "j", 1, "x").startswith(namespace_prefix("team"))
    # one namespace's prefix is never another's: `team` vs `team-b`
    assert not artifact_object("team-b", "r", "j", 1, "x").startswith(namespace_prefix("team"))
    assert cache_object("team", "app", "a/b c") == "caches/team/app/a%2Fb%20c"


def test_normalize_path_keeps_paths_inside_the_checkout():
    assert normalize_path("dist/") == "dist"
    assert normalize_path("a/../b") == "b"
    assert normalize_path("../x") is None
    assert normalize_path("/etc/passwd") is None


# --- caches -----------------------------------------------------------------------------------


def test_check_cache_key_follows_gitlabs_rules():
    assert check_cache_key("a-b_c.d") == "a-b_c.d"
    for bad in ("a/b", "a%2Fb", ".", "..", "%2E", "%2e%2e", " "):
        with pytest.raises(CacheKeyError):
            check_cache_key(bad)


@pytest.mark.parametrize(
    ("key", "clean"),
    [
        ("main", "main"),
        ("feature/x", "feature/x"),  # an expanded key may hold `/` (the runner's object path)
        (
            "0_project/foo/../dependencies-7ab1-non_protected",
            "0_project/dependencies-7ab1-non_protected",
        ),
        ("../../etc", "etc"),
        ("a%2Fb%2E", "a/b."),
        ("a\\b", "a/b"),
        ("key  ", "key"),
        ("a/b /", "a/b"),
    ],
)
def test_sanitize_cache_key_as_the_runner(key, clean):
    assert sanitize_cache_key(key) == clean


@pytest.mark.parametrize("key", ["", " /  ", "/", "..", "%2e%2e/"])
def test_a_key_that_sanitises_to_nothing_is_refused(key):
    with pytest.raises(CacheKeyError):
        sanitize_cache_key(key)


def test_files_digest_is_gitlabs():
    a, b = "a" * 40, "b" * 40
    assert files_digest([b, a, a, None]) == hashlib.sha1(f"{a}-{b}".encode()).hexdigest()
    assert files_digest([None]) == "default"


def test_cache_keys_order_key_fallbacks_then_the_global_fallback():
    values = {
        "CI_COMMIT_REF_SLUG": "feature-x",
        "CI_DEFAULT_BRANCH": "main",
        "CACHE_FALLBACK_KEY": "global",
    }
    cache = Cache(
        key="cache-$CI_COMMIT_REF_SLUG",
        fallback_keys=("cache-$CI_DEFAULT_BRANCH", "cache-$CI_COMMIT_REF_SLUG", "$NOPE"),
        paths=("x",),
    )
    keys = cache_keys(cache, 0, values.get)
    assert keys.key == "cache-feature-x"
    # duplicates dropped; `$NOPE` expands to nothing and is left out, as the runner does
    assert keys.restore_order == ("cache-feature-x", "cache-main", "global")


def test_a_protected_global_fallback_is_refused():
    keys = cache_keys(Cache(key="k", paths=("x",)), 0, {"CACHE_FALLBACK_KEY": "main-protected"}.get)
    assert keys.restore_order == ("k",)


def test_cache_keys_from_files():
    # GitLab (lib/gitlab/ci/build/cache.rb, cache_prefix; seed/build/cache.rb,
    # hash_of_file_contents): without a prefix, the cache's index and the files' names up to
    # their first `.`; the hash: SHA-1 of the blob ids found, sorted, joined by `-`.
    blobs = {"Gemfile.lock": "1" * 40}
    cache = Cache(key_files=CacheKeyFiles(files=("Gemfile.lock", "none")), paths=("x",))
    digest = hashlib.sha1(("1" * 40).encode()).hexdigest()
    assert cache_keys(cache, 1, lambda _: None, lambda fs: [blobs.get(f) for f in fs]).key == (
        f"1_Gemfile_none-{digest}"
    )
    missing = Cache(key_files=CacheKeyFiles(files=("deps.lock",)), paths=("x",))
    assert cache_keys(missing, 0, lambda _: None, lambda fs: []).key == "0_deps-default"
    prefixed = Cache(key_files=CacheKeyFiles(files=("x",), prefix="$JOB"), paths=("x",))
    assert cache_keys(prefixed, 0, {"JOB": "rspec"}.get, lambda fs: [None]).key == "rspec-default"
    with pytest.raises(ValueError):
        cache_keys(prefixed, 0, lambda _: None)  # the blob ids are needed


def test_key_files_prefix_is_gitlabs():
    # GitLab's spec/lib/gitlab/ci/build/cache_spec.rb and seed/build/cache_spec.rb.
    assert key_files_prefix(0, ["file1.json"]) == "0_file1"
    assert key_files_prefix(1, ["file1.json", "file2.json"]) == "1_file1_file2"
    assert key_files_prefix(1, ["project-gemfile.lock", ""]) == "1_project-gemfile_"
    assert key_files_prefix(1, ["Gemfile.zip/"]) == "1_Gemfile"
    assert key_files_prefix(1, ["foo/bar/*"]) == "1_foo/bar/*"
    assert key_files_prefix(2, []) == "2"


def test_a_key_from_files_in_folders_is_sanitised_as_the_runner_does():
    cache = Cache(key_files=CacheKeyFiles(files=("**/package.json",)), paths=("x",))
    digest = hashlib.sha1(("2" * 40).encode()).hexdigest()
    # The prefix keeps its `/` (GitLab's runner cleans the key as a path: `**/package-HASH`).
    assert cache_keys(cache, 0, lambda _: None, lambda fs: ["2" * 40]).key == (
        f"0_**/package-{digest}"
    )


def test_uses_untracked():
    job = parse_pipeline_spec(
        {"jobs": [{"name": "a", "script": ["x"], "artifacts": {"untracked": True}},
                  {"name": "c", "script": ["x"], "cache": [{"untracked": True}]},
                  {"name": "p", "script": ["x"], "artifacts": {"paths": ["x"]},
                   "cache": [{"paths": ["y"]}]}]}
    )  # fmt: skip
    assert [uses_untracked(j) for j in job.jobs] == [True, True, False]


def test_no_key_is_default_and_an_empty_key_is_refused():
    assert cache_keys(Cache(paths=("x",)), 0, lambda _: None).key == "default"
    with pytest.raises(CacheKeyError):
        cache_keys(Cache(key="$EMPTY", paths=("x",)), 0, lambda _: None)


@pytest.mark.parametrize(
    ("policy", "when", "succeeded", "restores", "saves"),
    [
        ("pull-push", "on_success", True, True, True),
        ("pull-push", "on_success", False, True, False),
        ("pull", "always", True, True, False),  # pull never uploads
        ("push", "on_success", True, False, True),
        ("pull-push", "on_failure", False, True, True),
        ("pull-push", "always", False, True, True),
    ],
)
def test_cache_policy_and_when(policy, when, succeeded, restores, saves):
    cache = Cache(paths=("x",), policy=policy, when=when)
    assert cache_restores(cache) is restores
    assert cache_saves(cache, succeeded) is saves


# --- JUnit reports ----------------------------------------------------------------------------

JUNIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="99">
    <testcase classname="app.Test" name="passes"/>
    <testcase classname="app.Test" name="fails"><failure message="boom">trace</failure></testcase>
    <testcase classname="app.Test" name="errs"><error message="x"/></testcase>
    <testcase classname="app.Test" name="skips"><skipped/></testcase>
    <testsuite name="nested">
      <testcase name="bare"><system-out>ok</system-out></testcase>
    </testsuite>
  </testsuite>
</testsuites>
"""


def test_parse_junit_counts_testcases_not_suite_attributes():
    summary = parse_junit(JUNIT)
    assert summary == JunitSummary(
        total=5,
        passed=2,
        failed=1,
        errors=1,
        skipped=1,
        failed_tests=("app.Test.fails", "app.Test.errs"),
    )
    assert summary_text(summary) == "2 passed, 1 failed, 1 errors, 1 skipped"
    assert summary_text(None) == ""


def test_a_single_testsuite_root_and_pytest_output():
    data = (
        b'<testsuite name="pytest" errors="0" failures="0"><testcase classname="tests.test_a" '
        b'name="test_one" time="0.1"/></testsuite>'
    )
    assert parse_junit(data) == JunitSummary(total=1, passed=1)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<testsuite><testcase name="&lol3;"/></testsuite>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="&x;"/></testsuite>
"""


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (BILLION_LAUGHS, "document type declarations"),
        (EXTERNAL_ENTITY, "document type declarations"),
        (b"<testsuite><testcase name='a'>", "not well-formed"),
        (b"<a>" * 100 + b"</a>" * 100, "nested deeper"),
        (b"<testsuite><testcase name='&undefined;'/></testsuite>", "not well-formed"),
    ],
)
def test_hostile_or_broken_junit_is_refused(data, reason):
    with pytest.raises(ReportError, match=reason):
        parse_junit(data)


def test_the_size_is_bounded_before_parsing():
    with pytest.raises(ReportError, match="larger than 10 bytes"):
        parse_junit(b"<testsuite/>", max_bytes=10)


def test_several_files_merge_and_a_bad_one_is_listed():
    many = (
        b"<testsuite>"
        + b"".join(b'<testcase name="f%d"><failure/></testcase>' % i for i in range(15))
        + b"</testsuite>"
    )
    summary = summarize_junit_files([("a.xml", JUNIT), ("b.xml", b"not xml"), ("c.xml", many)])
    assert (summary.total, summary.passed, summary.failed, summary.errors) == (20, 2, 16, 1)
    assert len(summary.failed_tests) == 10 and summary.failed_tests[0] == "app.Test.fails"
    assert summary.unreadable[0].startswith("b.xml: not well-formed XML")
    assert summary_text(summary).endswith("1 unreadable")
    assert merge_summaries([]) == JunitSummary()
