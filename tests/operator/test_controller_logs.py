"""Pins how the controller's log reads on a real run: the pinned Kopf, a real kube-apiserver, the simulator.

Each step ends with a kopf.TemporaryError that schedules the next one, which Kopf logs at ERROR. The controller
demotes those lines by matching its own text only (obstop.controller.main.NEXT_STEP), not Kopf's wording. If a
Kopf upgrade stops putting the exception's text in its line, or logs it elsewhere, this test fails instead of the
controller silently reporting every poll as an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.controller.main import NEXT_STEP
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


def test_a_normal_stop_logs_no_error_and_the_next_steps_at_debug(stack: Stack) -> None:
    records = run_one(stack, "quiet", 0, {})
    assert records, "no JSON log records: the log format changed"
    errors = [r for r in records if r.get("severity", r.get("level", "")).lower() in ("error", "critical")]
    assert errors == [], errors
    assert not [r for r in records if NEXT_STEP in r.get("message", "")], "next-step lines above DEBUG"

    # With DEBUG on, Kopf's line for our TemporaryError is there, carrying our text, demoted to debug.
    debug = run_one(stack, "verbose", 1, {"OBSTOP_LOG_LEVEL": "DEBUG"})
    steps = [r for r in debug if NEXT_STEP in r.get("message", "")]
    assert steps, (
        "Kopf no longer logs the TemporaryError with its text: the filter in main.py matches nothing"
    )
    assert {r.get("severity", r.get("level", "")).lower() for r in steps} == {"debug"}, steps[:3]
