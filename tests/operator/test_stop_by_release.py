"""The operator's stop scenarios against every obshell release people run (issue 11).

For each release profile of the simulator (fact sheet §7): a real kube-apiserver, a real controller process
(`obstop run`) and simulated agents answering as that release, over real HTTP on loopback. Each profile goes
through the scenarios whose answers differ between releases: the three stop modes, a failing DAG (old and new
log-line forms), a lock left by a failed stop and the forcePassDag that clears it, a lost answer (found in the
unfinished list; the history route is absent before 4.3.0.0), and a key change (reported as 10008, DecryptFailed
without a code, or code 1). Nothing is mocked.
"""

from __future__ import annotations

import pytest
from k8s_tools import as_chart_identity, refused_calls

from obstop.testing.controlplane import ControlPlane
from obstop.testing.obshell_sim.releases import KNOWN_RELEASES
from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(240)

FREEZE = "Minor freeze before stop server"


@pytest.mark.parametrize("version", [v for v in KNOWN_RELEASES if v != "4.2.2.0"])
def test_stop_scenarios_on_each_release(control_plane: ControlPlane, version: str) -> None:
    with Stack(control_plane=control_plane, clusters=5, stage_seconds=0.2, obshell_version=version) as s:
        user = as_chart_identity(s)  # only the chart's rights
        s.start_controller()
        sim = s.sim
        # 0: an immediate stop of one server; 1: a terminate stop of a zone, after the agents' keys changed.
        s.create(stop_request("immediate", s.agent(0), scope="SERVER", targets=[s.agent(0, 1)]))
        sim.rotate_key()
        s.create(stop_request("terminate", s.agent(1), scope="ZONE", targets=["zone2"], terminate=True))
        # 2: a terminate stop failing at the minor freeze, which does not release the agents' locks.
        sim.faults.fail_stop(
            FREEZE, "OB.Cluster.MinorFreezeTimeout", "minor freeze timeout", agent=s.agent(2)
        )
        s.create(stop_request("abandoned", s.agent(2), terminate=True))
        # 3: a force stop whose answer is lost: found on the agent, not sent again.
        sim.faults.drop_responses(agent=s.agent(3), times=1)
        s.create(stop_request("lost", s.agent(3), force=True))

        for name in ("immediate", "terminate", "lost"):
            status = s.wait_for(name, timeout=90)
            assert status["phase"] == "Succeeded", (version, name, status)
        assert [r.dropped for r in sim.landed_stops(sim.clusters[3].name)] == [True]
        assert len(sim.landed_stops(sim.clusters[1].name)) == 1

        abandoned = s.wait_for("abandoned", timeout=90)
        assert abandoned["phase"] == "Failed" and abandoned["dag"]["failedNode"] == FREEZE, abandoned
        assert "minor freeze timeout" in abandoned["message"]
        # The log line's form differs by release; the reason is the errCode only where the agent writes it.
        newer = tuple(int(p) for p in version.split(".")) >= (4, 3, 1, 0)
        assert abandoned["reason"] == ("OB.Cluster.MinorFreezeTimeout" if newer else "DagFailed"), abandoned
        holder = abandoned["dag"]["id"]

        s.create(stop_request("blocked", s.agent(2), force=True))
        blocked = s.wait_for("blocked", timeout=90)
        assert blocked["phase"] == "Failed", blocked
        assert f'forcePassDag: ["{holder}"]' in blocked["message"], blocked
        s.create(stop_request("unblocked", s.agent(2), force=True, force_pass_dag=[holder]))
        unblocked = s.wait_for("unblocked", timeout=90)
        assert unblocked["phase"] == "Succeeded", unblocked
        assert unblocked["submission"]["obshellVersion"] == version
        assert refused_calls(control_plane, user) == [], "the chart's RBAC refused a controller call"
