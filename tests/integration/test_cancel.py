"""Cancelling a stop (issue 14): Controller.step driven by hand against the simulator over real HTTP, so that
the cancel arrives at the stage the test wants. Only the Secret reader is replaced (it would need a Kubernetes
API server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller_helpers import StaticSecrets
from obstop.controller.resource import CANCEL_ANNOTATION
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus
from obstop.controller.stop import Controller, Request
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig
from obstop.testing.stack import stop_request
from obstop.testing.waiting import until

PASSWORD = "cancel-root-pw"
log = logging.getLogger("test")
CANCEL = {CANCEL_ANNOTATION: "true"}


@pytest.fixture
async def sim() -> AsyncIterator[ObshellSimulator]:
    async with ObshellSimulator(SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=1.0)) as s:
        yield s


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    c = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    yield c
    await c.aclose()


async def step(
    controller: Controller,
    name: str,
    agent: str,
    status: dict[str, Any],
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    manifest = stop_request(name, agent, **(spec or {"force": True}))
    req = Request(
        "default",
        name,
        f"uid-{name}",
        1,
        manifest["spec"],
        RequestStatus.from_wire(status),
        annotations or {},
    )
    return (await controller.step(req, log)).status.to_wire()


async def test_a_cancel_before_the_stop_was_sent_sends_nothing(
    sim: ObshellSimulator, controller: Controller
) -> None:
    agent = sim.clusters[0].agents[0].address
    status = await step(controller, "early", agent, {})  # recorded, not sent
    status = await step(controller, "early", agent, status, CANCEL)
    assert status["phase"] == "Cancelled" and status["reason"] == "CancelledOnRequest", status
    assert "nothing was sent" in status["message"]
    assert status["cancellation"]["by"] == "Annotation"
    assert sim.stops == []


async def cancel_at(sim: ObshellSimulator, controller: Controller, name: str, stage: int) -> dict[str, Any]:
    """A force stop of the whole cluster, cancelled once its DAG reached `stage`; the terminal status."""
    agent = sim.clusters[0].agents[0].address
    status = await step(controller, name, agent, {})
    status = await step(controller, name, agent, status)
    dag_id = status["dag"]["id"]
    await until(lambda: sim.dag(dag_id).stage >= stage)
    for _ in range(60):
        status = await step(controller, name, agent, status, CANCEL)
        if status["phase"] in ("Succeeded", "Failed", "Cancelled"):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"never ended: {status}")


async def test_a_running_stop_is_cancelled_and_the_agents_are_released(
    sim: ObshellSimulator, controller: Controller
) -> None:
    status = await cancel_at(sim, controller, "early-stage", 2)
    assert status["phase"] == "Cancelled" and status["reason"] == "CancelledOnRequest", status
    assert status["dag"]["operator"] == "CANCEL"
    assert "observers already stopped: none" in status["message"], status["message"]
    assert "locks are released" in status["message"]
    assert {row["agent"] for row in status["agents"]} == {a.address for a in sim.clusters[0].agents}
    assert all(row["observerStopped"] is False for row in status["agents"])
    # No agent is left locked: a new stop needs no forcePassDag.
    agent = sim.clusters[0].agents[0].address
    after = await step(controller, "after", agent, {})
    for _ in range(100):
        after = await step(controller, "after", agent, after)
        if after["phase"] in ("Succeeded", "Failed"):
            break
        await asyncio.sleep(0.2)
    assert after["phase"] == "Succeeded", after


async def test_a_cancel_after_the_kills_says_which_observers_are_down(
    sim: ObshellSimulator, controller: Controller
) -> None:
    status = await cancel_at(sim, controller, "late-stage", 5)  # Wait: the kills have run
    assert status["phase"] == "Cancelled", status
    stopped = sorted(row["agent"] for row in status["agents"] if row.get("observerStopped"))
    assert stopped == sorted(a.address for a in sim.clusters[0].agents), status["agents"]
    assert f"observers already stopped: {', '.join(stopped)}" in status["message"]


async def test_a_cancel_after_the_stop_ended_reports_what_happened(
    sim: ObshellSimulator, controller: Controller
) -> None:
    agent = sim.clusters[0].agents[0].address
    status = await step(controller, "too-late", agent, {})
    status = await step(controller, "too-late", agent, status)
    await until(lambda: sim.dag(status["dag"]["id"]).terminal)
    status = await step(controller, "too-late", agent, status, CANCEL)
    assert status["phase"] == "Succeeded", status
    assert "had already ended" in status["message"]


async def test_the_deadline_cancels_with_deadline_action_cancel(
    sim: ObshellSimulator, controller: Controller
) -> None:
    agent = sim.clusters[0].agents[0].address
    spec = {"force": True, "deadline": 1}
    manifest = stop_request("deadline", agent, **spec)
    manifest["spec"]["deadlineAction"] = "Cancel"

    async def run(status: dict[str, Any]) -> dict[str, Any]:
        req = Request(
            "default", "deadline", "uid-deadline", 1, manifest["spec"], RequestStatus.from_wire(status)
        )
        return (await controller.step(req, log)).status.to_wire()

    status = await run({})
    status = await run(status)
    assert status["dag"]["id"]
    await asyncio.sleep(1.2)
    for _ in range(60):
        status = await run(status)
        if status["phase"] in ("Succeeded", "Failed", "Cancelled"):
            break
        await asyncio.sleep(0.2)
    assert status["phase"] == "Cancelled" and status["reason"] == "DeadlineCancelled", status
    assert status["cancellation"]["by"] == "Deadline"
    stalled = {c["type"]: c["status"] for c in status["conditions"]}
    assert stalled["Stalled"] == "True" and stalled["Ready"] == "False"
