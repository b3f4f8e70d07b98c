"""Pins how the controller's log reads on a real run: the pinned Kopf, a real kube-apiserver, the simulator.

Kopf calls the controller's event handler for every watch event of a request and logs a line at INFO after each
call. The controller demotes those lines by matching its own handler id only (obstop.controller.main.HANDLER_ID),
not Kopf's wording. If a Kopf upgrade stops putting the id in its line, or logs it elsewhere, this test fails
instead of the controller's log filling with one line per event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.controller.main import HANDLER_ID
from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> Iterator[Stack]:
    with Stack(control_plane=control_plane, clusters=2, stage_seconds=0.2) as s:
        yield s


def run_one(s: Stack, name: str, cluster: int, env: dict[str, str]) -> list[dict[str, str]]:
    """Run the controller with `env` through one stop; the JSON log records of that run."""
    s.start_controller(env={"OBSTOP_LOG_FORMAT": "json", **env})
    s.create(stop_request(name, s.agent(cluster), force=True))
    assert s.wait_for(name, timeout=60)["phase"] == "Succeeded"
    s.stop_controller()
    log = sorted(Path(s.workdir).glob("controller-*.log"))[-1]
    records = []
    for line in log.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line not from the logging setup (an interpreter warning)
    return records


def test_a_normal_stop_logs_no_error_and_each_event_at_debug(stack: Stack) -> None:
    records = run_one(stack, "quiet", 0, {})
    assert records, "no JSON log records: the log format changed"
    errors = [r for r in records if r.get("severity", r.get("level", "")).lower() in ("error", "critical")]
    assert errors == [], errors
    assert not [r for r in records if HANDLER_ID in r.get("message", "")], "per-event lines above DEBUG"
    assert any("finished: Succeeded" in r.get("message", "") for r in records), "the controller's own lines"

    # With DEBUG on, Kopf's line after each call is there, carrying our id, demoted to debug.
    debug = run_one(stack, "verbose", 1, {"OBSTOP_LOG_LEVEL": "DEBUG"})
    calls = [r for r in debug if f"'{HANDLER_ID}'" in r.get("message", "") and "succeeded" in r["message"]]
    assert len(calls) >= 3, (
        "Kopf no longer logs its handler calls with the id: the filter in main.py matches nothing"
    )
    assert {r.get("severity", r.get("level", "")).lower() for r in calls} == {"debug"}, calls[:3]
