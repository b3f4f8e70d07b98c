"""Prometheus metrics of the controller, served with /healthz on the controller's HTTP port.

prometheus-client does the exposition; this module only names the figures and serves them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from obstop.controller.resource import Phase
from obstop.obshell import ObshellApiError, ObshellError


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Gauge(
            "obstop_requests", "ObStopRequests seen by this controller, by phase", ["phase"], registry=r
        )
        self.obshell_seconds = Histogram(
            "obstop_obshell_request_seconds",
            "Latency of calls to obshell agents",
            ["call"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.obshell_errors = Counter(
            "obstop_obshell_errors_total",
            "Failed calls to obshell agents, by errCode or reason",
            ["call", "code"],
            registry=r,
        )
        self.dag_seconds = Histogram(
            "obstop_dag_duration_seconds",
            "From a request's start to its terminal phase",
            ["phase"],
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.polls = Histogram(
            "obstop_polls_per_request",
            "DAG polls a request needed",
            buckets=(1, 2, 5, 10, 20, 50, 100, 500),
            registry=r,
        )
        self.retries = Counter(
            "obstop_retries_total", "Transient faults retried, by reason", ["reason"], registry=r
        )
        self.submitted = Counter("obstop_stops_submitted_total", "Stops POSTed to obshell", registry=r)
        # Every phase's series exists from the start, at 0: Prometheus' increase() cannot see the first failure
        # in a series that appears with it (the PrometheusRule of the chart alerts on these).
        for phase in Phase:
            self.requests.labels(phase.value)
            if phase.terminal:
                self.dag_seconds.labels(phase.value)

    @contextmanager
    def call(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except ObshellError as exc:
            code = exc.err_code or f"HTTP{exc.status}" if isinstance(exc, ObshellApiError) else exc.reason
            self.obshell_errors.labels(name, code).inc()
            raise
        finally:
            self.obshell_seconds.labels(name).observe(time.perf_counter() - started)

    def phase_changed(self, old: Phase | None, new: Phase | None) -> None:
        """One request moved from phase `old` to `new` (None: not counted); the gauge is the count per phase."""
        if old is not None:
            self.requests.labels(old.value).dec()
        if new is not None:
            self.requests.labels(new.value).inc()

    def finished(self, phase: Phase | None, polls: int, seconds: float | None) -> None:
        """A request reached its terminal phase after `polls` DAG polls, `seconds` after it started."""
        self.polls.observe(polls)
        if seconds is not None and phase is not None:
            self.dag_seconds.labels(phase.value).observe(seconds)


def health_app(metrics: Metrics) -> web.Application:
    """/healthz answers while the controller's event loop runs; /metrics is Prometheus' text format."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    return app


async def serve(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    runner = web.AppRunner(health_app(metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
