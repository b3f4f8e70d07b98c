"""What the benchmark relies on and the performance changes it led to: the simulator's realistic timing and
load records (real HTTP on loopback through the project's own client), the aimed DAG polling (pure functions)
and the per-agent call rate bound. Nothing is mocked; no test here measures time against a threshold."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from obstop.controller import pacing
from obstop.controller.agents import _RateLimit
from obstop.controller.settings import Settings, SettingsError
from obstop.controller.status import parse_time
from obstop.obshell import DagDetail, ObshellClient, Scope, ScopeType, StopParams
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig

SETTINGS = Settings()
NODES = ["a", "b", "c"]


def _dag(stage: int, states: list[str], state: str = "RUNNING") -> DagDetail:
    nodes: list[dict[str, Any]] = [
        {"id": str(i + 1), "name": name, "state": s, "operator": "RUN"}
        for i, (name, s) in enumerate(zip(NODES, states, strict=True))
    ]
    return DagDetail.model_validate(
        {"id": "1", "stage": stage, "max_stage": 3, "state": state, "operator": "RUN", "nodes": nodes}
    )


def test_expected_remaining_adds_what_is_left_of_the_node_and_the_nodes_after() -> None:
    typical = {"a": 1.0, "b": 4.0, "c": 2.0}
    dag = _dag(2, ["SUCCEED", "RUNNING", "PENDING"])
    assert pacing.expected_remaining(dag, 1.5, typical) == pytest.approx(2.5 + 2.0)
    assert pacing.expected_remaining(dag, 9.0, typical) == pytest.approx(0 + 2.0)  # overran
    # A node never seen counts as the mean of those that were; nothing learned at all: no estimate.
    assert pacing.expected_remaining(dag, 0.0, {"a": 1.0, "b": 3.0}) == pytest.approx(3.0 + 2.0)
    assert pacing.expected_remaining(dag, 0.0, {}) is None


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (30.0, 5.0),  # far away: no later than poll_max_seconds, so status stays fresh
        (3.0, 2.5),  # one fine step before the expected end
        (0.8, 0.5),  # due: every fine step
        (0.0, 0.5),
    ],
)
def test_aimed_poll_delay(remaining: float, expected: float) -> None:
    assert pacing.next_poll_seconds(remaining, 0.5, SETTINGS) == pytest.approx(expected)


def test_fine_step_is_a_quarter_of_the_last_node_within_bounds() -> None:
    assert pacing.fine_poll_seconds(2.0, SETTINGS) == pytest.approx(0.5)
    assert pacing.fine_poll_seconds(60.0, SETTINGS) == pytest.approx(1.0)
    assert pacing.fine_poll_seconds(0.01, SETTINGS) == pytest.approx(SETTINGS.poll_min_seconds)


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


async def test_simulator_times_nodes_and_records_load() -> None:
    """Per-node durations, the terminal timestamp and the per-agent call record, over real HTTP."""
    config = SimulatorConfig(
        password="pw",
        zones=1,
        clusters=1,
        stage_seconds=5.0,
        node_seconds={"READY": 0.01, "Inform all agents to prepare to stop observer": 0.01},
        stage_jitter=0.0,
    )
    config_fast = SimulatorConfig(
        password="pw", zones=1, stage_seconds=0.01, node_seconds={"Make sure all agents are ready": 0.02}
    )
    async with ObshellSimulator(config) as slow:
        cluster = slow.clusters[0]
        dag = slow.clusters[0].agents[0].new_dag("Stop OB", ["Inform all agents to prepare to stop observer"])
        assert cluster.stage_duration(dag) == pytest.approx(0.01)  # READY: picked up quickly
        dag.state = dag.state.RUNNING
        assert cluster.stage_duration(dag) == pytest.approx(0.01)
    async with ObshellSimulator(config_fast) as sim:
        agent = sim.clusters[0].agents[0]
        started = time.time()
        async with ObshellClient(agent.url, "pw") as client:
            dag = await client.stop(StopParams(scope=Scope(type=ScopeType.GLOBAL), force=True))
            while not dag.finished:
                await asyncio.sleep(0.02)
                dag = await client.get_dag(dag.id)
        main = sim.dag(dag.id)
        assert main.terminal_at is not None and started < main.terminal_at <= time.time()
        async with httpx.AsyncClient() as http:
            load = (await http.get(f"{agent.url}/__sim__/load")).json()[agent.address]
            state = (await http.get(f"{agent.url}/__sim__/state")).json()
        assert len(load["times"]) >= 3 and load["peakInFlight"] == 1  # secret, stop, get_dag...
        listed = state["clusters"][0]["agents"][0]
        assert listed["requests"] == len(load["times"])
        assert next(d for d in listed["dags"] if d["id"] == dag.id)["terminalAt"] == main.terminal_at


def test_jitter_must_be_below_one() -> None:
    with pytest.raises(ValueError, match="stage_jitter"):
        SimulatorConfig(password="pw", stage_jitter=1.5)
