"""The pre-check and the approval gate, step by step against the simulator over real HTTP (issue 14).

Controller.step is driven by hand, as in test_controller_by_release.py; only the Secret reader and the approvals
reader (the Kubernetes API server's part) are replaced. tests/operator/test_precheck_approval.py runs the same on
a real kube-apiserver with the controller as a process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_controller_by_release import PASSWORD, simulator

from controller_helpers import StaticSecrets
from obstop.controller.approvals import ApprovalObject
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus
from obstop.controller.stop import Controller, Request
from obstop.testing.obshell_sim import ObshellSimulator, SimAgent
from obstop.testing.stack import stop_request
from obstop.testing.waiting import until

log = logging.getLogger("test")


class Approvals:
    """Stands in for ApprovalReader: the ObStopApprovals of the namespace, as the API server would list them."""

    def __init__(self) -> None:
        self.items: list[ApprovalObject] = []

    async def list(self, namespace: str) -> list[ApprovalObject]:
        return list(self.items)

    def give(self, name: str, request: str, by: str) -> ApprovalObject:
        approval = ApprovalObject(name, f"uid-{name}", request, "", by, datetime.now(UTC))
        self.items.append(approval)
        return approval


@pytest.fixture
def approvals() -> Approvals:
    return Approvals()


@pytest.fixture
async def controller(approvals: Approvals) -> AsyncIterator[Controller]:
    settings = Settings(approval_poll_seconds=0.1, precheck_max_age_seconds=300)
    c = Controller(settings, StaticSecrets(PASSWORD), approvals=approvals)  # type: ignore[arg-type]
    yield c
    await c.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[ObshellSimulator]:
    s = await simulator("4.5.0.0", stage_seconds=0.1)
    yield s
    await s.stop()


def make(name: str, address: str, status: dict[str, Any] | None = None, **spec: Any) -> Request:
    extra = {k: spec.pop(k) for k in ("dryRun", "approval") if k in spec}
    manifest = stop_request(name, address, **spec)
    return Request(
        "default",
        name,
        f"uid-{name}",
        1,
        {**manifest["spec"], **extra},
        RequestStatus.from_wire(status or {}),
        created=datetime.now(UTC) - timedelta(seconds=5),
    )


async def step(controller: Controller, req: Request) -> tuple[dict[str, Any], Request]:
    decision = await controller.step(req, log)
    status = decision.status.to_wire()
    return status, Request(
        req.namespace, req.name, req.uid, 1, req.spec, decision.status, created=req.created
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


STOP = "POST /api/v1/ob/stop"
# Who the agent is and its key (every request), then the locks: all an automatic request asks before its POST.
LIGHT = Counter({"GET /api/v1/info": 1, "GET /api/v1/secret": 1, "GET /api/v1/task/dag/maintain/agents": 1})
FULL = LIGHT + Counter({"GET /api/v1/status": 1, "GET /api/v1/ob/info": 1, "GET /api/v1/agents/status": 1})
ZONE_CHECK = "POST /api/v1/ob/zone/{zone}/stop/check"


def before_the_post(agent: SimAgent) -> Counter[str]:
    """The receiving agent's calls by route, up to the first stop POST (all of them if none came)."""
    paths = agent.request_paths
    calls = paths[: paths.index(STOP)] if STOP in paths else paths
    return Counter(ZONE_CHECK if p.endswith("/stop/check") else p for p in calls)


AUTOMATIC = [
    {"scope": "GLOBAL", "force": True},
    {"scope": "ZONE", "targets": ("zone1",), "terminate": True},
    {"scope": "ZONE", "targets": ("zone1",)},
    {"scope": "SERVER", "targets": ("127.0.0.1:PORT",), "force": True},
]


def targets_of(spec: dict[str, Any], agent: SimAgent) -> dict[str, Any]:
    targets = tuple(t.replace("127.0.0.1:PORT", agent.address) for t in spec.get("targets", ()))
    return {**spec, "targets": targets} if targets else spec


@pytest.mark.parametrize("spec", AUTOMATIC, ids=lambda s: f"{s['scope']}-{sorted(s)}")
async def test_an_automatic_request_asks_only_for_the_locks_before_its_post(
    controller: Controller, sim: ObshellSimulator, spec: dict[str, Any]
) -> None:
    """Neither dryRun nor approval Manual: nobody reads a report before the stop, and obshell refuses missing
    targets and an unavailable observer at the POST itself; the locks it would not refuse (§3.5) are asked."""
    agent = sim.clusters[0].agents[0]
    spec = targets_of(spec, agent)
    status, req = await step(controller, make("auto", agent.url, **spec))
    assert "submission" in status and sim.stops == [], status
    status, req = await step(controller, req)
    assert len(sim.landed_stops()) == 1 and status["phase"] in ("Submitted", "Running"), status
    assert before_the_post(agent) == LIGHT, agent.request_paths
    # status.precheck says what was checked, and no Validated condition claims more.
    assert status["precheck"]["checks"] == "Locks" and status["precheck"]["lockHolders"] == [], status
    assert "Validated" not in {c["type"] for c in status["conditions"]}, status["conditions"]


@pytest.mark.parametrize("spec", AUTOMATIC, ids=lambda s: f"{s['scope']}-{sorted(s)}")
async def test_a_dry_run_makes_the_full_survey(
    controller: Controller, sim: ObshellSimulator, spec: dict[str, Any]
) -> None:
    agent = sim.clusters[0].agents[0]
    spec = targets_of(spec, agent)
    status, _ = await step(controller, make("dry", agent.url, dryRun=True, **spec))
    assert status["phase"] == "Validated" and sim.stops == [], status
    # The agent's own zone stop check, for a ZONE stop on obshell 4.4.1.0+ (this simulator is 4.5.0.0).
    zone = Counter({ZONE_CHECK: 1}) if spec["scope"] == "ZONE" else Counter()
    assert before_the_post(agent) == FULL + zone, agent.request_paths
    assert status["precheck"]["checks"] == "Full" and condition(status, "Validated")["status"] == "True"


async def test_a_dry_run_reports_and_sends_no_stop(controller: Controller, sim: ObshellSimulator) -> None:
    agent = sim.clusters[0].agents[0]
    status, _ = await step(controller, make("dry", agent.url, force=True, dryRun=True))
    assert status["phase"] == "Validated" and status["reason"] == "Validated", status
    assert sim.stops == [] and "submission" not in status
    validated = condition(status, "Validated")
    assert validated["status"] == "True" and "3 zone(s), 3 agent(s)" in validated["message"], validated
    assert "observers: 3 ACTIVE" in status["precheck"]["cluster"], status["precheck"]
    assert (
        condition(status, "Ready")["status"] == "True"
        and condition(status, "Reconciling")["status"] == "False"
    )
    again, _ = await step(controller, make("dry", agent.url, status, force=True, dryRun=True))
    assert again == status and sim.stops == []  # terminal: never asked again


async def test_a_missing_zone_or_server_is_refused_by_the_pre_check_before_any_post(
    controller: Controller, sim: ObshellSimulator
) -> None:
    """Where a person reads the pre-check (dryRun, approval Manual), it names what is missing and what exists."""
    agent = sim.clusters[0].agents[0]
    zone = make("zone", agent.url, scope="ZONE", targets=("zone9",), force=True, dryRun=True)
    status, _ = await step(controller, zone)
    assert status["phase"] == "Failed" and status["reason"] == "TargetNotFound", status
    assert "zone9" in status["message"] and "zone1, zone2, zone3" in status["message"], status["message"]
    server = make("srv", agent.url, scope="SERVER", targets=("127.0.0.1:1",), force=True, approval="Manual")
    status, _ = await step(controller, server)
    assert status["reason"] == "TargetNotFound" and "127.0.0.1:1" in status["message"], status
    assert condition(status, "Validated")["status"] == "False"
    assert sim.stops == []


@pytest.mark.parametrize(
    ("scope", "target", "code"),
    [("ZONE", "zone9", "OB.Zone.NotExist"), ("SERVER", "127.0.0.1:1", "Agent.NotExist")],
)
async def test_a_missing_target_of_an_automatic_request_is_refused_by_obshell_at_the_post(
    controller: Controller, sim: ObshellSimulator, scope: str, target: str, code: str
) -> None:
    """Without a person to read a report, obshell's own refusal at the POST says it (fact sheet §3.2 check 2):
    terminal at once, with obshell's code and text, and no DAG, so nothing was stopped."""
    agent = sim.clusters[0].agents[0]
    status, req = await step(controller, make("auto", agent.url, scope=scope, targets=(target,), force=True))
    assert "submission" in status and status["precheck"]["checks"] == "Locks", status
    status, _ = await step(controller, req)
    assert status["phase"] == "Failed" and status["reason"] == code, status
    assert target in status["message"] and "nothing was stopped" in status["message"], status["message"]
    assert "dag" not in status and [r.error for r in sim.stops] == [code] and sim.landed_stops() == []


async def test_an_unreachable_agent_is_refused_by_the_pre_check_before_any_post(
    controller: Controller, sim: ObshellSimulator
) -> None:
    agent, other = sim.clusters[0].agents[0], sim.clusters[0].agents[2]
    await sim.agent_down(other.address)
    away = make("away", agent.url, scope="SERVER", targets=(agent.address,), force=True, dryRun=True)
    status, _ = await step(controller, away)
    assert status["phase"] == "Failed" and status["reason"] == "AgentsUnreachable", status
    assert other.address in status["message"] and sim.stops == []


async def test_an_unreachable_agent_fails_an_automatic_stop_at_its_dag_without_stopping_anything(
    controller: Controller, sim: ObshellSimulator
) -> None:
    """Not asked before the POST of an automatic request: obshell accepts the stop and fails its DAG at "Make
    sure all agents are ready", naming the agent, and passes the sub-DAGs it made, so no observer stops and no
    agent stays locked (§3.4 node 2)."""
    agent, other = sim.clusters[0].agents[0], sim.clusters[0].agents[2]
    await sim.agent_down(other.address)
    req = make("away", agent.url, scope="SERVER", targets=(agent.address,), force=True)
    status, req = await step(controller, req)
    status, req = await step(controller, req)
    dag = status["dag"]["id"]
    await until(lambda: sim.dag(dag).terminal, 60)
    status, _ = await step(controller, req)
    assert status["phase"] == "Failed" and status["reason"] == "Task.SubDag.NotAllCreated", status
    assert other.address in status["message"], status["message"]
    assert agent.observer_running and not agent.under_maintenance


async def test_an_observer_that_is_down_refuses_a_terminate_stop_but_not_a_force_one(
    controller: Controller, sim: ObshellSimulator
) -> None:
    agent = sim.clusters[0].agents[0]
    sim.set_observer(agent.address, running=False)
    status, _ = await step(controller, make("term", agent.url, terminate=True, dryRun=True))
    assert status["phase"] == "Failed" and status["reason"] == "OB.Cluster.ForceStopRequired", status
    status, _ = await step(controller, make("kill", agent.url, force=True, dryRun=True))
    assert status["phase"] == "Validated", status
    assert "state is unknown" in status["precheck"]["cluster"], status["precheck"]  # no topology with OB down


async def test_an_observer_that_is_down_fails_an_automatic_terminate_stop_at_the_post(
    controller: Controller, sim: ObshellSimulator
) -> None:
    """obshell refuses it at the POST (§3.2 check 6); the controller asks the agent's /status only then, and a
    process that is not running makes it final, saying so."""
    agent = sim.clusters[0].agents[0]
    sim.set_observer(agent.address, running=False)
    status, req = await step(controller, make("term", agent.url, terminate=True))
    assert "GET /api/v1/status" not in agent.request_paths, agent.request_paths
    status, _ = await step(controller, req)
    assert status["phase"] == "Failed" and status["reason"] == "OB.Cluster.ForceStopRequired", status
    assert "observer process is not running" in status["message"], status["message"]
    assert "nothing was stopped" in status["message"] and sim.landed_stops() == [], status["message"]


async def test_the_agents_own_zone_check_refuses_an_immediate_stop_and_warns_a_forced_one(
    controller: Controller, sim: ObshellSimulator
) -> None:
    agent = sim.clusters[0].agents[0]
    sim.clusters[0].agents[2].service_stopped = True  # zone3 was stopped by ALTER SYSTEM STOP ZONE
    status, _ = await step(controller, make("imm", agent.url, scope="ZONE", targets=("zone1",), dryRun=True))
    assert status["phase"] == "Failed" and status["reason"] == "OB.Server.StoppedInMultiZone", status
    assert "zone stop check refused zone zone1" in status["message"], status["message"]
    status, _ = await step(
        controller, make("forced", agent.url, scope="ZONE", targets=("zone1",), force=True, dryRun=True)
    )
    assert status["phase"] == "Validated", status
    assert any("StoppedInMultiZone" in w for w in status["precheck"]["warnings"]), status["precheck"]
    assert any("STOPPED" in w for w in status["precheck"]["warnings"]) is False  # zone3 is not a target
    assert sim.stops == []


@pytest.mark.parametrize("version", ["4.3.1.0", "4.4.0.0"])
async def test_older_agents_skip_the_zone_check_and_say_so(controller: Controller, version: str) -> None:
    sim = await simulator(version, stage_seconds=0.1)
    try:
        agent = sim.clusters[0].agents[0]
        status, _ = await step(
            controller, make("old", agent.url, scope="ZONE", targets=("zone1",), dryRun=True)
        )
        assert status["phase"] == "Validated", status
        assert any("needs obshell 4.4.1.0" in s for s in status["precheck"]["skipped"]), status["precheck"]
        assert "skipped:" in condition(status, "Validated")["message"]
    finally:
        await sim.stop()


async def test_manual_approval_waits_then_stops_once_approved(
    controller: Controller, sim: ObshellSimulator, approvals: Approvals
) -> None:
    agent = sim.clusters[0].agents[0]
    req = make("gated", agent.url, force=True, approval="Manual")
    status, req = await step(controller, req)
    assert status["phase"] == "AwaitingApproval" and status["reason"] == "AwaitingApproval", status
    assert "pre-check passed" in status["message"] and "submission" not in status
    assert before_the_post(agent) == FULL and status["precheck"]["checks"] == "Full", agent.request_paths
    calls = len(agent.request_times)
    status, req = await step(controller, req)
    assert (
        status["phase"] == "AwaitingApproval" and len(agent.request_times) == calls
    )  # waiting asks no agent
    approvals.give("for-another", "someone-else", "bob")
    status, req = await step(controller, req)
    assert status["phase"] == "AwaitingApproval" and sim.stops == []
    approvals.give("ok", "gated", "bob")
    status, req = await step(controller, req)
    assert status["approval"]["approvedBy"] == "bob" and status["approval"]["name"] == "ok", status
    assert "submission" in status and sim.stops == []  # recorded; the POST is the next step
    status, req = await step(controller, req)
    assert len(sim.landed_stops()) == 1 and status["phase"] in ("Submitted", "Running"), status


async def test_an_approval_older_than_the_request_does_not_count(
    controller: Controller, sim: ObshellSimulator, approvals: Approvals
) -> None:
    agent = sim.clusters[0].agents[0]
    left = approvals.give("left-over", "again", "bob")
    approvals.items[0] = ApprovalObject(
        left.name, left.uid, left.request_name, "", left.approved_by, datetime.now(UTC) - timedelta(hours=1)
    )
    status, req = await step(controller, make("again", agent.url, force=True, approval="Manual"))
    status, req = await step(controller, req)
    assert status["phase"] == "AwaitingApproval" and "approval" not in status, status


async def test_a_stale_view_is_checked_again_and_a_changed_cluster_asks_for_a_new_approval(
    approvals: Approvals, sim: ObshellSimulator
) -> None:
    settings = Settings(approval_poll_seconds=0.1, precheck_max_age_seconds=0.2)
    controller = Controller(settings, StaticSecrets(PASSWORD), approvals=approvals)  # type: ignore[arg-type]
    try:
        agent = sim.clusters[0].agents[0]
        status, req = await step(controller, make("stale", agent.url, force=True, approval="Manual"))
        first = status["precheck"]
        sim.clusters[0].agents[1].service_stopped = True  # the cluster changes while the approver looks
        await asyncio.sleep(0.3)
        approvals.give("seen-before", "stale", "bob")
        status, req = await step(controller, req)
        assert status["phase"] == "AwaitingApproval" and "cluster changed" in status["message"], status
        assert status["approval"]["superseded"] == ["uid-seen-before"] and sim.stops == []
        assert status["precheck"]["digest"] != first["digest"]
        assert "1 STOPPED" in status["precheck"]["cluster"], status["precheck"]
        approvals.give("seen-now", "stale", "carol")
        status, req = await step(controller, req)  # fresh enough: no change, approved
        assert status["approval"]["approvedBy"] == "carol" and "submission" in status, status
        assert status["approval"]["superseded"] == ["uid-seen-before"]
    finally:
        await controller.aclose()


async def test_a_stale_view_that_now_fails_its_pre_check_fails_the_request(
    approvals: Approvals, sim: ObshellSimulator
) -> None:
    settings = Settings(approval_poll_seconds=0.1, precheck_max_age_seconds=0.01)
    controller = Controller(settings, StaticSecrets(PASSWORD), approvals=approvals)  # type: ignore[arg-type]
    try:
        agent = sim.clusters[0].agents[0]
        status, req = await step(controller, make("gone", agent.url, force=True, approval="Manual"))
        await sim.agent_down(sim.clusters[0].agents[1].address)
        await asyncio.sleep(0.05)
        approvals.give("late", "gone", "bob")
        status, req = await step(controller, req)
        assert status["phase"] == "Failed" and status["reason"] == "AgentsUnreachable", status
        assert sim.stops == []
    finally:
        await controller.aclose()
