"""The controller's stop steps (Controller.step) driven by hand against the simulator over real HTTP, to
sequence races that an end-to-end run cannot make happen on purpose. Only the Secret reader is replaced (it
would need a Kubernetes API server); everything between the step and the agent is real."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller_helpers import StaticSecrets
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus
from obstop.controller.stop import Controller, Request
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig
from obstop.testing.stack import stop_request

PASSWORD = "steps-root-pw"
log = logging.getLogger("test")


@pytest.fixture
async def sim() -> AsyncIterator[ObshellSimulator]:
    async with ObshellSimulator(SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=0.5)) as s:
        yield s


def request(name: str, agent: str, status: dict[str, Any]) -> Request:
    spec = stop_request(name, agent, terminate=True)["spec"]
    return Request("default", name, f"uid-{name}", 1, spec, RequestStatus.from_wire(status))


async def run_step(controller: Controller, name: str, agent: str, status: dict[str, Any]) -> dict[str, Any]:
    return (await controller.step(request(name, agent, status), log)).status.to_wire()


async def test_a_request_never_adopts_a_dag_started_by_another_after_it_recorded(
    sim: ObshellSimulator,
) -> None:
    agent = sim.clusters[0].agents[0].address
    controller = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    try:
        b = await run_step(controller, "b", agent, {})  # B records its submission (the agent's clock)...
        assert "submission" in b and "dag" not in b
        a = await run_step(controller, "a", agent, {})
        a = await run_step(controller, "a", agent, a)  # ...then A's stop lands first
        assert a["dag"]["id"]
        b = await run_step(controller, "b", agent, b)  # B must send its own stop, not take A's DAG
        assert b.get("dag", {}).get("id") != a["dag"]["id"]
        assert len([r for r in sim.stops if r.params and r.params.get("terminate")]) == 2
    finally:
        await controller.aclose()


async def test_a_restarted_controller_adopts_the_dag_of_its_lost_answer(sim: ObshellSimulator) -> None:
    agent = sim.clusters[0].agents[0].address
    first = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    status = await run_step(first, "lost", agent, {})
    sim.faults.drop_responses(agent=agent, times=1)  # the stop lands, its answer never comes
    status = await run_step(first, "lost", agent, status)
    assert "dag" not in status and status["lastError"]
    await first.aclose()

    second = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]  # a new process
    try:
        status = await run_step(second, "lost", agent, status)
        assert status["dag"]["id"] == sim.stops[0].dag_id
        assert "found on the agent" in " ".join(e for e in [status.get("message", "")]) or status[
            "phase"
        ] in ("Submitted", "Running")
        assert len(sim.stops) == 1
    finally:
        await second.aclose()


async def test_a_poll_can_be_aimed_again_only_from_a_step_that_aimed_one(sim: ObshellSimulator) -> None:
    """Controller.replan (pacing.py rule 5): after the POST and after each poll, the aim made again from the
    same answer; after a step whose next one is not a poll (the record, a fault, the end), nothing."""
    agent = sim.clusters[0].agents[0].address
    controller = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    try:
        uid = request("paced", agent, {}).uid
        status = await run_step(controller, "paced", agent, {})
        assert "submission" in status and controller.replan(uid) is None
        decision = await controller.step(request("paced", agent, status), log)
        assert decision.status.dag is not None and decision.next_step_in is not None
        assert controller.replan(uid) == pytest.approx(decision.next_step_in)  # nothing learned since
        sim.faults.error_burst(5, agent=agent, method="GET")  # the DAG cannot be read: a fault, retried later
        faulted = await controller.step(request("paced", agent, decision.status.to_wire()), log)
        assert faulted.status.last_error and controller.replan(uid) is None
        status = faulted.status.to_wire()
        sim.faults.clear()
        while True:
            decision = await controller.step(request("paced", agent, status), log)
            status = decision.status.to_wire()
            if decision.next_step_in is None:
                break
            # The same aim again from the small view kept (not the DAG's answer, with its sub-tasks and logs):
            assert controller.replan(uid) == pytest.approx(decision.next_step_in)
            runtime = controller.runtimes.find(uid)
            assert runtime is not None and runtime.paced is not None
            assert (
                decision.status.dag is not None and runtime.paced.max_stage == decision.status.dag.max_stage
            )
            await asyncio.sleep(0.2)
        assert status["phase"] == "Succeeded" and controller.replan(uid) is None
        assert controller.knowledge > 0, "the DAG's node times were learned"
    finally:
        await controller.aclose()
