"""The controller's /metrics and /healthz, served over real HTTP on loopback."""

from __future__ import annotations

import httpx
import pytest
from aiohttp.test_utils import TestServer

from obstop.controller.metrics import Metrics, health_app
from obstop.controller.resource import Phase
from obstop.obshell import ObshellApiError


async def test_metrics_are_exposed_in_prometheus_format() -> None:
    metrics = Metrics()
    metrics.phase_changed(None, Phase.RUNNING)  # a
    metrics.phase_changed(None, Phase.RUNNING)  # b
    metrics.phase_changed(Phase.RUNNING, Phase.SUCCEEDED)  # a
    with metrics.call("get_dag"):
        pass
    with pytest.raises(ObshellApiError), metrics.call("stop"):
        raise ObshellApiError(400, "Zone 'z9' does not exist", err_code="OB.Zone.NotExist")
    metrics.finished(Phase.SUCCEEDED, 2, 12.0)  # a, after two polls

    async with TestServer(health_app(metrics), host="127.0.0.1") as server, httpx.AsyncClient() as http:
        health = await http.get(str(server.make_url("/healthz")))
        scrape = await http.get(str(server.make_url("/metrics")))
    assert health.status_code == 200
    text = scrape.text
    assert scrape.headers["content-type"].startswith("text/plain")
    assert 'obstop_requests{phase="Running"} 1.0' in text
    assert 'obstop_requests{phase="Succeeded"} 1.0' in text
    assert 'obstop_obshell_errors_total{call="stop",code="OB.Zone.NotExist"} 1.0' in text
    assert 'obstop_obshell_request_seconds_count{call="get_dag"} 1.0' in text
    assert "obstop_polls_per_request_sum 2.0" in text
    assert 'obstop_dag_duration_seconds_sum{phase="Succeeded"} 12.0' in text


def test_forgetting_a_request_leaves_the_gauge() -> None:
    metrics = Metrics()
    metrics.phase_changed(None, Phase.PENDING)
    metrics.phase_changed(Phase.PENDING, None)
    assert metrics.requests.labels("Pending")._value.get() == 0


def test_every_phase_has_its_series_before_any_request() -> None:
    """A series that appears with its first sample hides that sample from increase(): the failure alert of the
    chart's PrometheusRule would miss the first failed request."""
    metrics = Metrics()
    samples = {
        (sample.name, sample.labels.get("phase")): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
    }
    for phase in ("Pending", "Submitted", "Running", "Succeeded", "Failed"):
        assert samples[("obstop_requests", phase)] == 0
    for phase in ("Succeeded", "Failed"):
        assert samples[("obstop_dag_duration_seconds_count", phase)] == 0
