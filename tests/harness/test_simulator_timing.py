"""What the benchmark relies on in the simulator: realistic per-node timing and the per-agent load record
(real HTTP on loopback through the project's own client). No test here measures time against a threshold."""

from __future__ import annotations

import time

import httpx
import pytest

from obstop.obshell import DagDetail, ObshellClient, Scope, ScopeType, StopParams
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig
from obstop.testing.waiting import until


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
            created = await client.stop(StopParams(scope=Scope(type=ScopeType.GLOBAL), force=True))

            async def finished() -> DagDetail | None:
                dag = await client.get_dag(created.id)
                return dag if dag.finished else None

            dag = await until(finished, 30, "the DAG finished", interval=0.02)
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
