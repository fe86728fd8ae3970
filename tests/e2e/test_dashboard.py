"""`conveyor dashboard` in a real headless Chromium (Debian's chromium and chromium-driver),
against the ci cluster and the operator: the page draws a run's graph (stage columns, a box per
job, an edge per need), follows it live without a reload, shows a job's log, and its buttons act
as the user who started the dashboard: an approver's approval goes through, an outsider's is
refused in the API server's own words; play and retry release and rerun jobs."""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conveyor import (
    Conveyor,
    add_environment,
    bind,
    conveyor_cli,
    fails,
    job,
    lasts,
    phase,
    pipeline,
    run,
)
from tests.e2e.support import ROOT, Clusters, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCRIPT_LOG = (ROOT / "hack" / "kwok" / "logs" / "script.log").read_text()
# Set to a path (docs/dashboard.png) to keep the screenshot the test takes.
SCREENSHOT = os.environ.get("CONVEYOR_DASHBOARD_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Chromium, headless, through chromedriver (WebDriver): both from Debian's packages, which
    hack/node-deps.sh installs. Missing, the test fails: e2e tests never skip."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} is missing: run `make node-deps` (as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root has no user namespace sandbox here
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1500,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class DashboardProcess:
    """`conveyor dashboard` as a child process, as one user (a kubeconfig context)."""

    def __init__(self, clusters: Clusters, namespace: str, context: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "conveyor.cli.main", "dashboard", "--port", "0",
                "-n", namespace, "--kubeconfig", str(clusters.kubeconfig), "--context", context,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.url = self._url()

    def _url(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if found is None:
            self.stop()
            raise AssertionError(f"the dashboard did not start: {line}{self._stderr()}")
        return found.group(0)

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def dashboards(clusters: Clusters) -> Iterator[Callable[[str, str], DashboardProcess]]:
    started: list[DashboardProcess] = []

    def start(namespace: str, context: str) -> DashboardProcess:
        started.append(DashboardProcess(clusters, namespace, context))
        return started[-1]

    yield start
    for d in started:
        d.stop()


def job_phase(run_obj: dict[str, Any], name: str) -> str | None:
    jobs = (run_obj.get("status") or {}).get("jobs") or ()
    return next((j.get("phase") for j in jobs if j["name"] == name), None)


def job_attempt(run_obj: dict[str, Any], name: str) -> int | None:
    jobs = (run_obj.get("status") or {}).get("jobs") or ()
    return next((j.get("attempt") for j in jobs if j["name"] == name), None)


# -- reading the page
def wait_for(browser: WebDriver, check: Callable[[WebDriver], Any], what: str, timeout=120) -> Any:
    # The page redraws what changed: an element found a moment ago may be gone.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    wait = WebDriverWait(browser, timeout, poll_frequency=0.2, ignored_exceptions=ignored)
    return wait.until(check, message=what)


def box(browser: WebDriver, name: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f'#graph .job[data-job="{name}"]')


def click(browser: WebDriver, selector: str) -> None:
    """Click what the selector finds, finding it again if the page redrew it before the click."""

    def found_and_clicked(b: WebDriver) -> bool:
        b.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait_for(browser, found_and_clicked, f"to click {selector}", timeout=30)


def click_box(browser: WebDriver, name: str) -> None:
    click(browser, f'#graph .job[data-job="{name}"]')


def status_of(browser: WebDriver, name: str) -> str | None:
    """The status a job's box shows (read in one step: the page may redraw meanwhile)."""
    return browser.execute_script(
        'const e = document.querySelector(`#graph .job[data-job="${arguments[0]}"]`);'
        "return e && e.classList.contains(`status-${e.dataset.status}`) ? e.dataset.status : null;",
        name,
    )


def rect(browser: WebDriver, selector: str) -> dict[str, float]:
    return browser.execute_script(
        "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
        "return {left: r.left, right: r.right, top: r.top, bottom: r.bottom};",
        selector,
    )


def notice(browser: WebDriver) -> tuple[str, str] | None:
    """The banner after an action: ("ok" or "error", its text)."""
    found = browser.find_elements(By.CSS_SELECTOR, "#notice:not([hidden])")
    if not found or not found[0].text:
        return None
    kind = "ok" if "ok" in (found[0].get_attribute("class") or "").split() else "error"
    return kind, found[0].text


def click_action(browser: WebDriver, selector: str) -> tuple[str, str]:
    browser.execute_script("document.getElementById('notice').hidden = true;")
    click(browser, selector)
    return wait_for(browser, notice, f"the result of clicking {selector}", timeout=60)


def _keep_screenshot(browser: WebDriver, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOT:
        shutil.copyfile(
            shot, ROOT / SCREENSHOT if not Path(SCREENSHOT).is_absolute() else SCREENSHOT
        )


# Records each status a job's box shows, in one document: a reload would lose window.__seen.
RECORD_STATUSES = """
window.__seen = [];
const record = () => {
  const e = document.querySelector(`#graph .job[data-job="${arguments[0]}"]`);
  const status = e && e.dataset.status;
  if (status && window.__seen[window.__seen.length - 1] !== status) window.__seen.push(status);
};
record();
new MutationObserver(record).observe(document.getElementById("graph"), {childList: true});
"""


# -- the tests
def test_the_page_draws_a_run_follows_it_live_shows_logs_and_votes_as_the_user(
    conveyor: Conveyor,
    clusters: Clusters,
    browser: WebDriver,
    dashboards: Callable[[str, str], DashboardProcess],
    target_namespace: str,
    tmp_path: Path,
) -> None:
    ns = conveyor.ns
    # approver1 may vote (RBAC's conveyor-approver, and the Environment names them); the
    # outsider may use Conveyor here (edit) but has no approver role.
    bind(clusters, ns, [("approver1", "edit"), ("approver1", "conveyor-approver")])
    bind(clusters, ns, [("outsider", "edit")])
    add_environment(
        clusters, ns, "prod", "prod", target_namespace,
        "--approvers", "approver1", "--required-approvals", "1",
    )  # fmt: skip
    conveyor.create(
        pipeline(
            "app",
            [
                # A blocking manual job: the run waits for it, so the page is seen before
                # anything changes, however long the browser takes to start.
                job("compile", "build", when="manual", allowFailure=False),
                job("lint", "build"),
                job("unit", "test", needs=["compile"], **lasts("20s")),
                job("e2e", "test"),
                job("ship", "deploy", needs=["unit"], environment={"name": "prod"}),
            ],
            stages=["build", "test", "deploy"],
        )
    )
    conveyor.create(run("app-1", "app"))
    for user in ("approver1", "outsider"):
        wait_until(
            lambda user=user: (
                conveyor_cli(clusters, "get", "-n", ns, context=f"ci-as-{user}").returncode == 0
            ),
            what=f"{user} may read runs (RBAC is cached a moment)",
        )
    approver = dashboards(ns, "ci-as-approver1")
    outsider = dashboards(ns, "ci-as-outsider")

    browser.get(f"{approver.url}#/run/{ns}/app-1")
    # The list: the run, its pipeline and phase.
    row = f'#runs tr[data-run="{ns}/app-1"]'
    wait_for(
        browser,
        lambda b: b.find_element(By.CSS_SELECTOR, row).text.split()[:3] == ["app-1", "app", "main"],
        "the run in the list",
    )
    # The graph: stage columns in order, each job's box in its stage's column.
    wait_for(browser, lambda b: status_of(b, "compile") == "manual", "compile waiting")
    wait_for(browser, lambda b: status_of(b, "lint") == "success", "lint done")
    wait_for(
        browser,
        lambda b: "ManualActionRequired" in b.find_element(By.CSS_SELECTOR, row).text,
        "what the run waits for, in the list",
    )
    stages = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#graph .stage-title")]
    assert stages == ["build", "test", "deploy"]
    boxes = {name: rect(browser, f'#graph .job[data-job="{name}"]') for name in
             ("compile", "lint", "unit", "e2e", "ship")}  # fmt: skip
    assert boxes["compile"]["left"] == boxes["lint"]["left"]
    assert boxes["unit"]["left"] == boxes["e2e"]["left"]
    assert boxes["compile"]["right"] < boxes["unit"]["left"] < boxes["ship"]["left"]
    assert boxes["compile"]["bottom"] <= boxes["lint"]["top"]
    for name in boxes:
        assert box(browser, name).get_attribute("data-stage") == {
            "compile": "build", "lint": "build", "unit": "test", "e2e": "test", "ship": "deploy",
        }[name]  # fmt: skip
    # An edge per need, drawn from the needed box's right side to the needing box's left side.
    edges = {
        (e.get_attribute("data-from"), e.get_attribute("data-to"))
        for e in browser.find_elements(By.CSS_SELECTOR, "#graph svg path.edge")
    }
    assert edges == {("compile", "unit"), ("unit", "ship")}
    edge = rect(browser, '#graph path.edge[data-from="compile"][data-to="unit"]')
    assert abs(edge["left"] - boxes["compile"]["right"]) <= 3
    assert abs(edge["right"] - boxes["unit"]["left"]) <= 3

    # Live: compile is played (by the CLI, elsewhere); the page follows without a reload:
    # compile runs, then unit, which turns green when it finishes (20 s on a kwok node). What
    # unit's box showed is recorded as the page redraws it.
    browser.execute_script(RECORD_STATUSES, "unit")
    played = conveyor_cli(clusters, "play", "app-1", "compile", "-n", ns)
    assert played.returncode == 0, played.stderr
    wait_for(browser, lambda b: status_of(b, "unit") == "running", "unit to run, live")
    # A running job's log is followed: what it has printed shows while it runs.
    click_box(browser, "unit")
    first_line = SCRIPT_LOG.splitlines()[0].split(" ", 3)[3]
    wait_for(
        browser,
        lambda b: first_line in b.find_element(By.ID, "log").text,
        "unit's log while it runs",
        timeout=60,
    )
    wait_for(browser, lambda b: status_of(b, "unit") == "success", "unit to succeed, live")
    assert status_of(browser, "compile") == "success"
    seen = browser.execute_script("return window.__seen;")
    assert seen[0] in ("created", "pending") and "running" in seen and seen[-1] == "success", seen

    # Its whole log once it has ended, from its pod through `conveyor logs`' code.
    wait_for(
        browser,
        lambda b: (
            b.find_element(By.ID, "job-status").text == "Succeeded"
            and b.find_element(By.ID, "log").get_attribute("data-state") == "done"
            and first_line in b.find_element(By.ID, "log").text
        ),
        "unit's log, read again once it ended",
        timeout=60,
    )
    shown = browser.find_element(By.ID, "log").text
    logs = conveyor_cli(clusters, "logs", "app-1", "unit", "-n", ns)
    assert logs.returncode == 0, logs.stderr
    assert [line.rstrip() for line in shown.splitlines()] == [
        line.rstrip() for line in logs.stdout.strip().splitlines()
    ]

    # The deploy waits for its approval: the page offers to vote.
    wait_for(browser, lambda b: status_of(b, "ship") == "approval", "ship waiting for approval")
    assert phase(conveyor.get_run("app-1")) == "WaitingForApproval"
    wait_for(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#approvals [data-action=approve]"),
        "the approval banner",
    )
    _keep_screenshot(browser, tmp_path)

    # The outsider's dashboard: the API server refuses, and the page says what it said.
    cli = conveyor_cli(clusters, "approve", "app-1", "-n", ns, context="ci-as-outsider")
    assert cli.returncode == 1 and 'cannot patch resource "approvals"' in cli.stderr
    browser.get(f"{outsider.url}#/run/{ns}/app-1")
    wait_for(browser, lambda b: status_of(b, "ship") == "approval", "the outsider's page")
    kind, text = click_action(browser, "#approvals [data-action=approve]")
    assert kind == "error"
    assert text == cli.stderr.strip().removeprefix("conveyor: ")
    assert phase(conveyor.get_run("app-1")) == "WaitingForApproval"

    # The approver's: the vote is theirs, and the deploy runs.
    browser.get(f"{approver.url}#/run/{ns}/app-1")
    wait_for(browser, lambda b: status_of(b, "ship") == "approval", "the approver's page")
    browser.execute_script("window.__sameDocument = true;")
    browser.find_element(By.CSS_SELECTOR, "#approvals input").send_keys("ship it")
    kind, text = click_action(browser, "#approvals [data-action=approve]")
    assert kind == "ok", text
    assert text.startswith("approver1 approved ") and "job ship, environment prod" in text
    wait_for(browser, lambda b: status_of(b, "ship") == "success", "ship to succeed live")
    wait_for(
        browser,
        lambda b: b.find_element(By.ID, "run-phase").text == "Succeeded",
        "the run's phase on the page",
    )
    assert browser.execute_script("return window.__sameDocument === true;")
    approvals = conveyor.api.list_namespaced_custom_object(
        "conveyor.dev", "v1alpha1", ns, "approvals"
    )["items"]
    vote = approvals[0]["spec"]["votes"]["approver1"]  # stamped as approver1: their own vote
    assert (vote["decision"], vote["comment"]) == ("approve", "ship it")
    assert list(approvals[0]["spec"]["votes"]) == ["approver1"]


def test_play_and_retry_buttons_act_through_the_cli_commands(
    conveyor: Conveyor,
    clusters: Clusters,
    browser: WebDriver,
    dashboards: Callable[[str, str], DashboardProcess],
) -> None:
    ns = conveyor.ns
    bind(clusters, ns, [("developer", "edit")])
    conveyor.create(
        pipeline(
            "rel",
            [
                job("flaky", "build", allowFailure=True, **fails(3)),
                job("release", "deploy", when="manual", allowFailure=False),
            ],
            stages=["build", "deploy"],
        )
    )
    conveyor.create(run("rel-1", "rel"))
    wait_until(
        lambda: conveyor_cli(clusters, "get", "-n", ns, context="ci-as-developer").returncode == 0,
        what="developer may read runs",
    )
    developer = dashboards(ns, "ci-as-developer")
    browser.get(f"{developer.url}#/run/{ns}/rel-1")
    wait_for(browser, lambda b: status_of(b, "release") == "manual", "release waiting to be played")
    assert status_of(browser, "flaky") == "warning"  # failed, allowed
    browser.execute_script("window.__sameDocument = true;")

    # Play, from the box's own button.
    kind, text = click_action(browser, '#graph .job[data-job="release"] [data-action=play]')
    assert (kind, text) == ("ok", "rel-1: release released")
    wait_for(browser, lambda b: status_of(b, "release") == "success", "release to run")
    assert conveyor.get_run("rel-1")["spec"]["play"] == ["release"]

    # Retry, from the job's panel: attempt 2 of flaky, in the same run.
    click_box(browser, "flaky")
    kind, text = click_action(browser, "#job-actions [data-action=retry]")
    assert (kind, text) == ("ok", "rel-1: flaky retried (attempt 2)")
    conveyor.wait_run("rel-1", lambda r: job_attempt(r, "flaky") == 2)
    wait_for(
        browser,
        lambda b: "2" in [e.text for e in b.find_elements(By.CSS_SELECTOR, "#job-details dd")],
        "attempt 2 on the page",
    )
    # release ran: its panel offers nothing, and a play of it is refused, on the page as in
    # the terminal (the CLI's own check, through the page's endpoint with the page's token).
    click_box(browser, "release")
    wait_for(browser, lambda b: b.find_element(By.ID, "job-name").text == "release", "panel")
    assert not browser.find_elements(By.CSS_SELECTOR, "#job-actions [data-action]")
    assert browser.execute_script("return window.__sameDocument === true;")
    status = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/api/action', {method: 'POST', headers: {'Content-Type': 'application/json',
          'X-Conveyor-Token': document.querySelector('meta[name="conveyor-token"]').content},
          body: JSON.stringify({action: 'play', namespace: arguments[0], run: 'rel-1',
                                job: 'release'})})
          .then(r => r.json().then(b => done([r.status, b.message])));""",
        ns,
    )
    cli = conveyor_cli(clusters, "play", "rel-1", "release", "-n", ns, context="ci-as-developer")
    assert cli.returncode == 1
    assert status == [409, cli.stderr.strip().removeprefix("conveyor: ")]
