"""Job reports: JUnit XML (artifacts.reports.junit) into a test summary.

The XML comes from the job, so it is untrusted: parsed with expat as a stream, a document type
declaration (the only way to define entities) is refused outright, as defusedxml's
`forbid_dtd` does, so no entity is ever expanded and nothing external is read; the size is
bounded before parsing. Counting follows GitLab's parser (`Gitlab::Ci::Parsers::Test::Junit`):
every `<testcase>` is one test, failed with a `<failure>`, in error with an `<error>`, skipped
with a `<skipped>`, passed otherwise; `<testsuite>` totals are not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.parsers import expat

from conveyor.api.pipelinerun import MAX_FAILED_TESTS, JunitSummary

JUNIT_MAX_BYTES = 30 * 1024 * 1024  # per file, before parsing
MAX_DEPTH = 64
TEST_NAME_MAX = 512


class ReportError(ValueError):
    """A report that cannot be read (too large, not XML, a DTD, too deep)."""


@dataclass
class _Counts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    failed_tests: list[str] = field(default_factory=list)


def parse_junit(data: bytes, max_bytes: int = JUNIT_MAX_BYTES) -> JunitSummary:
    """The test summary of one JUnit XML document. Raises ReportError."""
    if len(data) > max_bytes:
        raise ReportError(f"larger than {max_bytes} bytes")
    counts = _Counts()
    parser = expat.ParserCreate()
    depth = 0
    case: dict[str, str] | None = None  # the open <testcase>'s name and its outcome
    case_depth = 0

    def refuse_dtd(*_args: object) -> None:
        raise ReportError("document type declarations (DTD, entities) are not allowed")

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal depth, case, case_depth
        depth += 1
        if depth > MAX_DEPTH:
            raise ReportError(f"nested deeper than {MAX_DEPTH} elements")
        if tag == "testcase" and case is None:
            name = attrs.get("name", "")
            classname = attrs.get("classname", "")
            full = f"{classname}.{name}" if classname and name else (name or classname or "?")
            case, case_depth = {"name": full[:TEST_NAME_MAX], "outcome": "passed"}, depth
        elif case is not None and depth == case_depth + 1:
            outcome = {"failure": "failed", "error": "errors", "skipped": "skipped"}.get(tag)
            # The worst outcome wins: error > failure > skipped.
            rank = {"passed": 0, "skipped": 1, "failed": 2, "errors": 3}
            if outcome and rank[outcome] > rank[case["outcome"]]:
                case["outcome"] = outcome

    def end(tag: str) -> None:
        nonlocal depth, case
        if case is not None and depth == case_depth and tag == "testcase":
            outcome = case["outcome"]
            setattr(counts, outcome, getattr(counts, outcome) + 1)
            if outcome in ("failed", "errors") and len(counts.failed_tests) < MAX_FAILED_TESTS:
                counts.failed_tests.append(case["name"])
            case = None
        depth -= 1

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.UnparsedEntityDeclHandler = refuse_dtd
    parser.ExternalEntityRefHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as err:
        raise ReportError(f"not well-formed XML: {err}") from None
    total = counts.passed + counts.failed + counts.errors + counts.skipped
    return JunitSummary(
        total=total,
        passed=counts.passed,
        failed=counts.failed,
        errors=counts.errors,
        skipped=counts.skipped,
        failed_tests=tuple(counts.failed_tests),
    )


def merge_summaries(summaries: Iterable[JunitSummary]) -> JunitSummary:
    """Several files' summaries as one (the job's): counts summed, the first failed names and
    unreadable files kept up to the status' bound."""
    total = passed = failed = errors = skipped = 0
    failed_tests: list[str] = []
    unreadable: list[str] = []
    for s in summaries:
        total += s.total
        passed += s.passed
        failed += s.failed
        errors += s.errors
        skipped += s.skipped
        failed_tests.extend(s.failed_tests)
        unreadable.extend(s.unreadable)
    return JunitSummary(
        total=total,
        passed=passed,
        failed=failed,
        errors=errors,
        skipped=skipped,
        failed_tests=tuple(failed_tests[:MAX_FAILED_TESTS]),
        unreadable=tuple(unreadable[:MAX_FAILED_TESTS]),
    )


def summarize_junit_files(
    files: Iterable[tuple[str, bytes]], max_bytes: int = JUNIT_MAX_BYTES
) -> JunitSummary:
    """The job's summary from (file name, content) pairs; a file that cannot be read is listed
    in `unreadable` (`NAME: why`) and the others still count."""
    summaries: list[JunitSummary] = []
    for name, data in files:
        try:
            summaries.append(parse_junit(data, max_bytes))
        except ReportError as err:
            summaries.append(JunitSummary(unreadable=(f"{name}: {err}"[:TEST_NAME_MAX],)))
    return merge_summaries(summaries)


def summary_text(tests: JunitSummary | None) -> str:
    """One line for `conveyor get` and the run list: `12 passed, 1 failed, 2 skipped`."""
    if tests is None:
        return ""
    parts = [f"{tests.passed} passed"]
    if tests.failed:
        parts.append(f"{tests.failed} failed")
    if tests.errors:
        parts.append(f"{tests.errors} errors")
    if tests.skipped:
        parts.append(f"{tests.skipped} skipped")
    if tests.unreadable:
        parts.append(f"{len(tests.unreadable)} unreadable")
    return ", ".join(parts)
