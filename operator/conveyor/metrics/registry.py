"""The operator's Prometheus metrics: counters and histograms fed as runs, jobs and approvals
end, and gauges read from the operator's in-memory view of the cluster when scraped."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.api.approval import PENDING as UNDECIDED
from conveyor.api.pipelinerun import PENDING
from conveyor.metrics.ends import ended

# Pipeline durations run from seconds (a lint job) to hours (a long integration suite).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
# A reconcile pass is milliseconds; a pass that reads git or waits on a slow API server, seconds.
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Bodies = Mapping[Any, Iterable[Mapping[str, Any]]]  # a Kopf index: key -> stored bodies


class OperatorMetrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        info = Gauge(
            "conveyor_build_info",
            "Always 1, labelled with the operator's version.",
            ["version"],
            registry=r,
        )
        info.labels(version).set(1)
        self.runs_finished = Counter(
            "conveyor_pipelineruns_finished_total",
            "PipelineRuns this operator saw end, by phase.",
            ["namespace", "pipeline", "phase"],
            registry=r,
        )
        self.run_seconds = Histogram(
            "conveyor_pipelinerun_duration_seconds",
            "From a run's start to its end (runs that started).",
            ["namespace", "pipeline", "phase"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "conveyor_jobs_finished_total",
            "Pipeline job attempts that ended, by phase.",
            ["namespace", "pipeline", "job", "phase"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "conveyor_job_duration_seconds",
            "From a job attempt's start to its end (attempts that started).",
            ["namespace", "pipeline", "phase"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.deployments = Counter(
            "conveyor_deployments_total",
            "Jobs with an environment (deploys) that ended, by environment and phase.",
            ["namespace", "environment", "phase"],
            registry=r,
        )
        self.decisions = Counter(
            "conveyor_approval_decisions_total",
            "Approvals decided, by environment and decision.",
            ["namespace", "environment", "decision"],
            registry=r,
        )
        self.pass_seconds = Histogram(
            "conveyor_reconcile_duration_seconds",
            "Time of one reconcile pass over a run.",
            buckets=PASS_BUCKETS,
            registry=r,
        )
        self.pass_errors = Counter(
            "conveyor_reconcile_errors_total",
            "Reconcile passes that failed and were retried, by cause (api: the API server "
            "refused or failed a call; internal: a bug, logged with its traceback).",
            ["cause"],
            registry=r,
        )
        for cause in ("api", "internal"):
            self.pass_errors.labels(cause)  # present at 0, so rate() works from the start

    # -- fed by the controller
    def status_written(
        self, namespace: str, pipeline: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        for end in ended(old, new):
            if end.job is None:
                self.runs_finished.labels(namespace, pipeline, end.phase).inc()
                if end.seconds is not None:
                    self.run_seconds.labels(namespace, pipeline, end.phase).observe(end.seconds)
                continue
            self.jobs_finished.labels(namespace, pipeline, end.job, end.phase).inc()
            if end.seconds is not None:
                self.job_seconds.labels(namespace, pipeline, end.phase).observe(end.seconds)
            if end.environment:
                self.deployments.labels(namespace, end.environment, end.phase).inc()

    def approval_decided(self, namespace: str, environment: str, decision: str) -> None:
        self.decisions.labels(namespace, environment, decision).inc()

    def watch(self, runs: Bodies, approvals: Bodies, queue_depth: Callable[[], int]) -> None:
        """Gauges computed at scrape time from what the operator holds in memory."""
        self.registry.register(_ViewCollector(runs, approvals, queue_depth))

    # -- read by Prometheus
    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ViewCollector(Collector):
    def __init__(self, runs: Bodies, approvals: Bodies, queue_depth: Callable[[], int]) -> None:
        self.runs, self.approvals, self.queue_depth = runs, approvals, queue_depth

    def describe(self) -> list[Any]:
        return []  # computed per scrape; nothing to check against other collectors

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily(
            "conveyor_pipelineruns",
            "PipelineRuns that exist, by phase.",
            labels=["namespace", "phase"],
        )
        for (namespace, phase), count in sorted(run_phases(self.runs).items()):
            runs.add_metric([namespace, phase], count)
        yield runs
        pending = GaugeMetricFamily(
            "conveyor_approvals_pending",
            "Approvals waiting for votes, by environment.",
            labels=["namespace", "environment"],
        )
        for (namespace, environment), count in sorted(pending_approvals(self.approvals).items()):
            pending.add_metric([namespace, environment], count)
        yield pending
        yield GaugeMetricFamily(
            "conveyor_workqueue_depth",
            "Runs queued for a reconcile pass.",
            value=self.queue_depth(),
        )


def run_phases(runs: Bodies) -> Tally[tuple[str, str]]:
    return Tally(
        (key[0], (body.get("status") or {}).get("phase") or PENDING)
        for key, bodies in list(runs.items())
        for body in bodies
    )


def pending_approvals(approvals: Bodies) -> Tally[tuple[str, str]]:
    return Tally(
        (key[0], (body.get("spec") or {}).get("environment") or "")
        for key, bodies in list(approvals.items())
        for body in bodies
        if (body.get("status") or {}).get("decision", UNDECIDED) == UNDECIDED
    )


def metrics_app(metrics: OperatorMetrics) -> web.Application:
    async def serve(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve)
    return app
