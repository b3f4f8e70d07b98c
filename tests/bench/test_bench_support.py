"""What the benchmark relies on and the performance changes it led to (the aimed DAG polling: tests/unit/test_pacing.py):
the per-agent call rate bound, the bench script's own figures, and the simulator's per-route call record. (The
simulator's per-node timing and load records: tests/harness/test_simulator_timing.py.) Nothing is mocked; no
test here measures time against a threshold."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest

from obstop.controller.agents import _RateLimit
from obstop.controller.settings import Settings, SettingsError
from obstop.controller.status import parse_time
from obstop.obshell import ObshellClient
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig

SETTINGS = Settings()


def test_go_times_with_nanoseconds_parse() -> None:
    parsed = parse_time("2025-06-01T10:00:00.123456789+08:00")
    assert parsed is not None and parsed.microsecond == 123456 and parsed.utcoffset() is not None
    assert parse_time("") is None and parse_time("yesterday") is None


def test_agent_rate_setting() -> None:
    assert Settings.from_env({"OBSTOP_AGENT_RATE": "5"}).agent_rate == 5.0
    with pytest.raises(SettingsError, match="OBSTOP_AGENT_RATE"):
        Settings(agent_rate=-1)


async def test_rate_limit_spaces_calls_after_the_burst() -> None:
    """Counts how many acquisitions complete before each other's deadlines, not wall-clock thresholds."""
    limit = _RateLimit(50.0)  # bursts of 5, then one per 20 ms
    for _ in range(5):
        await limit.acquire()
    assert limit.tokens < 1
    task = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    assert not task.done()  # the 6th waits for a token
    await task


# ----------------------------------------------------------------------------------------------------------
# The benchmark's own pure helpers (tests/bench/bench.py, loaded by path: pytest does not collect it)


def _bench() -> Any:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("obstop_bench", Path(__file__).with_name("bench.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_routes_fold_ids_but_not_the_api_version() -> None:
    assert bench.route("GET /api/v1/task/dag/11002003004") == "GET /api/v1/task/dag/{id}"
    assert bench.route("POST /api/v1/ob/stop") == "POST /api/v1/ob/stop"


def test_polls_by_order_counts_only_the_dag_polls_of_the_first_requests_and_the_others() -> None:
    load = {
        "a": {"paths": ["GET /api/v1/info", "GET /api/v1/task/dag/1001", "GET /api/v1/task/dag/1001"]},
        "b": {"paths": ["POST /api/v1/ob/stop", "GET /api/v1/task/dag/2002"]},
        "c": {"paths": ["GET /api/v1/task/dag/maintain/agents"]},
    }
    assert bench.polls_by_order(load, ["a", "b", "c"], first=1) == "first 1: 2.00, the other 2: 0.50"
    assert bench.polls_by_order(load, ["b"], first=10) == "first 1: 1.00"


def test_visible_changes_are_pending_submitted_each_stage_and_the_end() -> None:
    assert bench.visible_changes(5) == 8  # a force stop: 5 nodes
    assert bench.visible_changes(6) == 9  # terminate: the minor freeze too


def test_api_cost_counts_each_call_once_by_user_and_time() -> None:
    from obstop.testing.controlplane import AuditEvent

    def event(verb: str, resource: str, sub: str = "", *, user: str = "ctl", at: float = 10.0, aid: str = ""):
        return AuditEvent(user, (), verb, "", resource, sub, "default", "r", 200, "", "", at, "", aid)

    events = [
        event("patch", "obstoprequests"),
        event("patch", "obstoprequests", "status"),
        event("create", "events"),
        event("get", "secrets"),
        event("watch", "obstoprequests", aid="w1"),
        event("watch", "obstoprequests", aid="w1"),  # the same watch, logged again when it ended
        event("patch", "obstoprequests", user="someone else"),
        event("patch", "obstoprequests", at=1.0),  # before the window
    ]
    cost = bench.ApiCost.of(events, "ctl", since=5.0)
    assert cost.per(2) == {"writes": 1.5, "reads": 0.5, "watches": 0.5}
    assert cost.writes["patch obstoprequests/status"] == 1
    assert "get secrets 0.50" in cost.breakdown(2)


def test_audit_events_carry_time_stage_and_id() -> None:
    from obstop.testing.controlplane import AuditEvent

    parsed = AuditEvent.parse(
        {
            "verb": "watch",
            "stage": "ResponseStarted",
            "auditID": "abc",
            "stageTimestamp": "2026-01-02T03:04:05.250000Z",
            "objectRef": {"resource": "obstoprequests"},
        }
    )
    assert (parsed.stage, parsed.audit_id) == ("ResponseStarted", "abc")
    assert parsed.time == pytest.approx(1767323045.25)
    assert AuditEvent.parse({"stageTimestamp": "not a time"}).time == 0.0


def test_first_after() -> None:
    assert bench.first_after([3.0, 1.0, 5.0], 2.0) == 3.0
    assert bench.first_after([1.0], 2.0) is None


def test_profile_summary_by_leaf_frame_and_by_package() -> None:
    # py-spy names some of our files by their bare name: any module of the controller package will do.
    ours = next(name for name, package in bench.OUR_FILES.items() if package == "obstop/controller")
    lines = [
        "<module> (obstop/cli.py:40);run (asyncio/runners.py:190);worker (kopf/_core/reactor/queueing.py:338);"
        f"Controller.step ({ours}:138);send (httpx/_client.py:10) 3",
        "<module> (obstop/cli.py:40);run (asyncio/runners.py:190);worker (kopf/_core/reactor/queueing.py:338);"
        "patch (kopf/_cogs/clients/patching.py:20) 1",
        "not a stack line",
    ]
    leaves, packages = bench.profile_summary(lines)
    assert leaves[0] == ("send (httpx/_client.py)", 0.75)
    shares = dict(packages)
    assert shares["kopf"] == 1.0 and shares["httpx"] == 0.75 and shares["obstop/controller"] == 0.75
    assert "asyncio" not in shares and "obstop" not in shares  # under every sample: not informative
    assert bench.profile_summary([]) == ([], [])


def test_children_get_this_checkout_first_on_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = bench.child_env({"X": "1"})
    assert env["PYTHONPATH"].split(":")[:2] == [str(bench.ROOT / "operator"), "/elsewhere"]
    assert env["X"] == "1"


async def test_simulator_records_each_calls_route() -> None:
    async with ObshellSimulator(SimulatorConfig(password="pw", zones=1)) as sim:
        agent = sim.clusters[0].agents[0]
        async with ObshellClient(agent.url, "pw") as client:
            await client.info()
        async with httpx.AsyncClient() as http:
            load = (await http.get(f"{agent.url}/__sim__/load")).json()[agent.address]
    assert load["paths"] == ["GET /api/v1/info"] and len(load["times"]) == 1
