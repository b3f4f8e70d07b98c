"""The official obshell Python SDK (PyPI obshell 0.0.9), unchanged, against the simulator: proof that the
simulator speaks the real wire format (auth version selection, header and body encryption, envelope, DTOs),
for every obshell release profile (fact sheet §7).

The SDK picks its auth version from /api/v1/info: `supportedAuth` when present (4.2.5.0+), else v2 for 4.2.3.0+
and v1 for 4.2.2.0 ([PY] client.py __confirm_auth_version). So on the 4.2.2.0 profile the SDK speaks auth v1
(X-OCS-Auth, plaintext body), which the simulator accepts there as the SDK describes it (that server is not in
public history: inferred). On 4.2.3.0 it selects v2 without `supportedAuth`.

The SDK is synchronous (requests), so the simulator runs in its own thread. Its wait loop sleeps 3 s
between polls; with `stage_seconds=0` the DAG is finished by the time the SDK asks, so no profile waits.
"""

from __future__ import annotations

import pytest
from obshell import ClientSet, OBShellHandleError, TaskExecuteFailedError
from obshell.auth.base import AuthVersion
from obshell.auth.password import PasswordAuth

from obshell_sim_helpers import PASSWORD
from obstop.testing.obshell_sim import KNOWN_RELEASES, SimulatorConfig, SimulatorThread


@pytest.fixture(scope="module", params=KNOWN_RELEASES)
def sim_thread(request):  # type: ignore[no-untyped-def]
    # stage_seconds=0: the DAG is done before the SDK polls again, so its 3 s wait loop never sleeps.
    config = SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=0, version=request.param)
    with SimulatorThread(config) as sim:
        yield sim


def test_sdk_stops_the_cluster_and_waits_for_the_dag(sim_thread: SimulatorThread) -> None:
    sim_thread.reset()
    agent = sim_thread.clusters[0].agents[0]
    client = ClientSet(agent.ip, agent.port, PasswordAuth(PASSWORD))
    dag = client.v1.stop("GLOBAL", [], force=True)
    assert dag.name == "Stop OB" and dag.state == "READY"
    # The auth version the SDK chose from /api/v1/info: v1 only for 4.2.2.0.
    wanted = AuthVersion.V1 if sim_thread.simulator.release.auth_v1_only else AuthVersion.V2
    assert client.v1._get_auth().get_version() is wanted
    done = client.v1.wait_dag_succeed(dag.generic_id)
    assert done.state == "SUCCEED" and done.operator == "RUN"
    assert [node.name for node in done.nodes][-1] == "Inform all agents to end the task"
    assert client.v1.get_status().ob_state == 0
    assert len(sim_thread.landed_stops()) == 1


def test_sdk_sees_validation_errors_and_failed_dags(sim_thread: SimulatorThread) -> None:
    sim_thread.reset()
    agent = sim_thread.clusters[0].agents[1]
    client = ClientSet(agent.ip, agent.port, PasswordAuth(PASSWORD))
    old = not sim_thread.simulator.release.err_codes  # before 4.3.1.0: {code, message}, no errCode
    with pytest.raises(OBShellHandleError) as caught:
        client.v1.stop("GLOBAL", [])
    if old:
        assert (caught.value.code, caught.value.err_code) == (1001, "")
        assert caught.value.message == "Illegal argument: cannot stop all observer without 'force'"
    else:
        assert caught.value.err_code == "OB.Cluster.ForceStopOrTerminateRequired"
    sim_thread.faults.fail_stop(1, "Sim.SDK", "seen by the SDK")
    with pytest.raises(TaskExecuteFailedError) as failed:
        client.v1.stop_sync("ZONE", ["zone3"], terminate=True)
    assert ("ERROR: seen by the SDK" if old else "ERROR: [Sim.SDK]: seen by the SDK") in str(failed.value)
    assert len(sim_thread.landed_stops()) == 1
