"""The official obshell Python SDK (PyPI obshell 0.0.9), unchanged, against the simulator: proof that the
simulator speaks the real wire format (auth v2 selection, header and body encryption, envelope, DTOs).

The SDK is synchronous (requests), so the simulator runs in its own thread. Its wait loop sleeps 3 s
between polls, which sets this test's duration.
"""

from __future__ import annotations

import pytest
from obshell import ClientSet, OBShellHandleError, TaskExecuteFailedError
from obshell.auth.password import PasswordAuth
from obshell_sim_helpers import PASSWORD

from obstop.testing.obshell_sim import SimulatorConfig, SimulatorThread


@pytest.fixture(scope="module")
def sim_thread():  # type: ignore[no-untyped-def]
    with SimulatorThread(SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=0.05)) as sim:
        yield sim


def test_sdk_stops_the_cluster_and_waits_for_the_dag(sim_thread: SimulatorThread) -> None:
    agent = sim_thread.clusters[0].agents[0]
    client = ClientSet(agent.ip, agent.port, PasswordAuth(PASSWORD))
    dag = client.v1.stop("GLOBAL", [], force=True)
    assert dag.name == "Stop OB" and dag.state == "READY"
    done = client.v1.wait_dag_succeed(dag.generic_id)
    assert done.state == "SUCCEED" and done.operator == "RUN"
    assert [node.name for node in done.nodes][-1] == "Inform all agents to end the task"
    assert client.v1.get_status().ob_state == 0
    assert len(sim_thread.landed_stops()) == 1


def test_sdk_sees_validation_errors_and_failed_dags(sim_thread: SimulatorThread) -> None:
    sim_thread.reset()
    agent = sim_thread.clusters[0].agents[1]
    client = ClientSet(agent.ip, agent.port, PasswordAuth(PASSWORD))
    with pytest.raises(OBShellHandleError) as caught:
        client.v1.stop("GLOBAL", [])
    assert "ForceStopOrTerminateRequired" in str(caught.value)
    sim_thread.faults.fail_stop(1, "Sim.SDK", "seen by the SDK")
    with pytest.raises(TaskExecuteFailedError) as failed:
        client.v1.stop_sync("ZONE", ["zone3"], terminate=True)
    assert "ERROR: [Sim.SDK]: seen by the SDK" in str(failed.value)
