"""The pre-check and the approval gate, step by step against the simulator over real HTTP (issue 14).

Controller.step is driven by hand, as in test_controller_by_release.py; only the Secret reader and the approvals
reader (the Kubernetes API server's part) are replaced. tests/operator/test_precheck_approval.py runs the same on
a real kube-apiserver with the controller as a process.
"""

from __future__ import annotations

import asyncio
import logging
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
from obstop.testing.obshell_sim import ObshellSimulator
from obstop.testing.stack import stop_request

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


async def test_a_missing_zone_or_server_is_refused_before_any_post(
    controller: Controller, sim: ObshellSimulator
) -> None:
    agent = sim.clusters[0].agents[0]
    status, _ = await step(controller, make("zone", agent.url, scope="ZONE", targets=("zone9",), force=True))
    assert status["phase"] == "Failed" and status["reason"] == "TargetNotFound", status
    assert "zone9" in status["message"] and "zone1, zone2, zone3" in status["message"], status["message"]
    status, _ = await step(
        controller, make("srv", agent.url, scope="SERVER", targets=("127.0.0.1:1",), force=True)
    )
    assert status["reason"] == "TargetNotFound" and "127.0.0.1:1" in status["message"], status
    assert condition(status, "Validated")["status"] == "False"
    assert sim.stops == []


async def test_an_unreachable_agent_is_refused_before_any_post(
    controller: Controller, sim: ObshellSimulator
) -> None:
    agent, other = sim.clusters[0].agents[0], sim.clusters[0].agents[2]
    await sim.agent_down(other.address)
    status, _ = await step(
        controller, make("away", agent.url, scope="SERVER", targets=(agent.address,), force=True)
    )
    assert status["phase"] == "Failed" and status["reason"] == "AgentsUnreachable", status
    assert other.address in status["message"] and sim.stops == []


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
