"""A simulated obshell cluster over real HTTP on loopback (tested against obshell's documented behaviour in tests/harness): auth, envelope, stop validation,
"Stop OB" DAGs with their sub-DAGs and locks, DAG queries and operators, and fault injection.

    async with ObshellSimulator(SimulatorConfig(password="pw", zones=3, stage_seconds=0.05)) as sim:
        agent = sim.clusters[0].agents[0]          # agent.address == "127.0.0.1:<port>", agent.url
        ... ObshellClient(agent.url, "pw") ...
        sim.faults.fail_stop("Make sure all agents are ready", "Some.Code", "why")
        assert len(sim.landed_stops()) == 1

`SimulatorConfig(version="4.2.6.0")` behaves as that obshell release (README.md#obshell-releases-the-simulator-reproduces; releases.py, default the
newest). `SimulatorThread` runs the same in a thread for synchronous code; `obstop sim` runs it as a process.
Uses the client's wire helpers (obstop.obshell.crypto, .ids), never the controller. Citations `ob/...` are paths
in https://github.com/oceanbase/obshell, as in obstop.obshell.
"""

from obstop.testing.obshell_sim.cluster import SimAgent, SimCluster
from obstop.testing.obshell_sim.dags import Dag, Node, SubTask
from obstop.testing.obshell_sim.faults import Faults, StopFailure
from obstop.testing.obshell_sim.releases import KNOWN_RELEASES, NEWEST, Release
from obstop.testing.obshell_sim.simulator import (
    ObshellSimulator,
    SimulatorConfig,
    SimulatorThread,
    StopRecord,
)

__all__ = [
    "KNOWN_RELEASES",
    "NEWEST",
    "Dag",
    "Faults",
    "Node",
    "ObshellSimulator",
    "Release",
    "SimAgent",
    "SimCluster",
    "SimulatorConfig",
    "SimulatorThread",
    "StopFailure",
    "StopRecord",
    "SubTask",
]
