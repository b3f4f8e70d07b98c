"""The controller's steps against obshell as each release really answers (fact sheet §6, §7; issue 11).

Controller.step is driven by hand against the simulator's release profiles over real HTTP on loopback, so that
each answer a real agent gives (an old error shape, a missing route, a lost answer, a gateway's error page, an
address that starts reaching another agent) arrives exactly when the test wants it. Only the Secret reader is
replaced (it would need a Kubernetes API server); the gateway in front of the agents is a real HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from controller_helpers import StaticSecrets
from obshell_sim_helpers import signed_header
from obstop.controller import answers
from obstop.controller.decisions import Event
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus
from obstop.controller.stop import Controller, Request
from obstop.obshell import ObshellApiError, ObshellClient, StopParams, crypto
from obstop.obshell.models import Scope, ScopeType
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig
from obstop.testing.obshell_sim.releases import KNOWN_RELEASES
from obstop.testing.stack import stop_request

PASSWORD = "release-root-pw"
log = logging.getLogger("test")
# Every release the client can talk to (4.2.2 speaks only auth v1: refused, tested on its own).
V2_RELEASES = [v for v in KNOWN_RELEASES if v != "4.2.2.0"]


async def simulator(version: str, stage_seconds: float = 0.3) -> ObshellSimulator:
    sim = ObshellSimulator(
        SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=stage_seconds, version=version)
    )
    await sim.start()
    return sim


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    c = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    yield c
    await c.aclose()


def request(
    name: str,
    address: str,
    status: dict[str, Any],
    *,
    scope: str = "GLOBAL",
    targets: tuple[str, ...] = (),
    **mode: bool,
) -> Request:
    """A request of `mode` (default: a GLOBAL terminate stop)."""
    spec = stop_request(name, address, scope=scope, targets=targets, **(mode or {"terminate": True}))["spec"]
    return Request("default", name, f"uid-{name}", 1, spec, RequestStatus.from_wire(status))


@dataclass(frozen=True)
class Step:
    """A step's decision as the API server receives it: the status in wire form."""

    status: dict[str, Any]
    delay: float | None
    events: tuple[Event, ...]


async def step(controller: Controller, req: Request) -> Step:
    decision = await controller.step(req, log)
    return Step(decision.status.to_wire(), decision.next_step_in, decision.events)


async def until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class Gateway:
    """A real HTTP reverse proxy on loopback in front of one agent at a time, as an ingress or a load balancer
    would be: `target` says which agent it reaches now, `bad_gateway` makes it forward the next POSTs and answer
    502 with its own HTML page instead of the agent's answer."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.bad_gateway = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._http = httpx.AsyncClient(timeout=30)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._http.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = await self._http.request(
            request.method,
            f"http://{self.target}{request.raw_path}",
            headers=headers,
            content=await request.read(),
        )
        if request.method == "POST" and self.bad_gateway:
            self.bad_gateway -= 1
            return web.Response(
                status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
            )
        return web.Response(status=answer.status_code, body=answer.content, content_type="application/json")


@pytest.fixture
async def gateway_sim() -> AsyncIterator[tuple[ObshellSimulator, Gateway]]:
    sim = await simulator("4.5.0.0", stage_seconds=0.5)
    gateway = Gateway(sim.clusters[0].agents[0].address)
    await gateway.start()
    yield sim, gateway
    await gateway.stop()
    await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 1. The DAG history route before 4.3.0.0


@pytest.mark.parametrize("version", ["4.2.6.0", "4.3.0.0"])
async def test_a_lost_answer_is_looked_up_on_agents_with_and_without_dag_history(
    controller: Controller, version: str
) -> None:
    """The stop lands, its answer is lost, and the DAG ends before a restarted controller looks for it. From
    4.3.0.0 the agent's history has it: adopted. Before, the history route answers 400 code 1000 (not 404): the
    lookup must take that as "no history", not as obshell refusing the stop."""
    sim = await simulator(version, stage_seconds=0.05)
    try:
        agent = sim.clusters[0].agents[0]
        status = (await step(controller, request("lost", agent.url, {}))).status
        sim.faults.drop_responses(agent=agent.address, times=1)
        status = (await step(controller, request("lost", agent.url, status))).status
        assert "dag" not in status and status["lastError"]
        [landed] = sim.landed_stops()
        await until(lambda: sim.dag(landed.dag_id or "").terminal)

        restarted = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
        try:
            decision = await step(restarted, request("lost", agent.url, status))
        finally:
            await restarted.aclose()
        if version == "4.3.0.0":
            assert decision.status["dag"]["id"] == landed.dag_id, decision.status
            assert decision.status["phase"] == "Succeeded"
            assert len(sim.landed_stops()) == 1
        else:
            assert "code 1000" not in decision.status.get("message", ""), decision.status
            # Without history the controller cannot see the first stop; the second is refused because the
            # observers are already down, and the status says that the first may have done it.
            assert decision.status["phase"] == "Failed"
            assert decision.status["reason"] == "OutcomeUnknown", decision.status
            assert "4.3.0" in decision.status["message"]
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 2. A changed RSA key, reported three ways


@pytest.mark.parametrize("version", V2_RELEASES)
async def test_a_changed_agent_key_is_fetched_again_on_every_release(version: str) -> None:
    """After the agent's key changes, its refusal is 401 code 10008 (before 4.3.1.0, like a wrong password),
    DecryptFailed without a code (to 4.4.1.x) or with code 1 (4.4.2.0+): the client fetches the key once more
    and the call goes through."""
    sim = await simulator(version)
    try:
        agent = sim.clusters[0].agents[0]
        async with ObshellClient(agent.url, PASSWORD) as client:
            assert await client.agent_unfinished_dags() == []
            sim.rotate_key(agent.address)
            assert await client.agent_unfinished_dags() == []
    finally:
        await sim.stop()


@pytest.mark.parametrize("version", ["4.2.6.0", "4.3.0.0", "4.4.2.0"])
async def test_a_wrong_password_is_still_a_credentials_refusal_after_the_key_check(version: str) -> None:
    sim = await simulator(version)
    try:
        agent = sim.clusters[0].agents[0]
        async with ObshellClient(agent.url, "not-the-password") as client:
            with pytest.raises(ObshellApiError) as caught:
                await client.agent_unfinished_dags()
        assert caught.value.status == 401 and not caught.value.transient
        assert "not-the-password" not in repr(caught.value)
        _, message = answers.permanent_error(caught.value)
        assert "refused the credentials" in message
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 5. 404 on GET DAG


async def test_a_dag_is_gone_only_after_several_record_not_found_answers(controller: Controller) -> None:
    sim = await simulator("4.5.0.0", stage_seconds=5)
    try:
        agent = sim.clusters[0].agents[0]
        status = (await step(controller, request("gone", agent.url, {}))).status
        status = (await step(controller, request("gone", agent.url, status))).status
        dag_id = status["dag"]["id"]
        agent.dags.clear()  # the agent's sqlite lost the record
        seen = []
        for _ in range(answers.DAG_NOT_FOUND_TRIES):
            status = (await step(controller, request("gone", agent.url, status))).status
            seen.append((status["phase"], status["reason"]))
        assert seen[:-1] == [("Submitted", "DagNotFound")] * (answers.DAG_NOT_FOUND_TRIES - 1), seen
        assert seen[-1] == ("Failed", "DagNotFound")
        assert dag_id in status["message"] and "record not found" in status["message"]
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 6. A gateway's 5xx page


async def test_a_gateway_error_page_after_the_post_is_looked_up_before_posting_again(
    controller: Controller, gateway_sim: tuple[ObshellSimulator, Gateway]
) -> None:
    """An ingress forwards the stop, then answers 502 with its own page: nothing says the agent did not create
    the DAG, so the controller looks for it before it sends anything again."""
    sim, gateway = gateway_sim
    status = (await step(controller, request("gw", gateway.url, {}))).status
    gateway.bad_gateway = 1
    decision = await step(controller, request("gw", gateway.url, status))
    assert "dag" not in decision.status and decision.status["reason"] == "HTTP502", decision.status
    assert (decision.delay or 0) >= controller.settings.lookup_grace_seconds
    decision = await step(controller, request("gw", gateway.url, decision.status))
    [landed] = sim.landed_stops()
    assert decision.status["dag"]["id"] == landed.dag_id, decision.status
    assert any("found on the agent" in e.message for e in decision.events), decision.events


# --------------------------------------------------------------------------------------------------------
# 7. One address, one agent


async def test_an_address_that_reaches_another_agent_is_said_and_never_sends_twice(
    controller: Controller, gateway_sim: tuple[ObshellSimulator, Gateway]
) -> None:
    sim, gateway = gateway_sim
    first, second = sim.clusters[0].agents[:2]
    status = (await step(controller, request("lb", gateway.url, {}))).status
    assert status["submission"]["receiver"] == first.address
    sim.faults.drop_responses(agent=first.address, times=1)  # the stop lands on the first agent, unanswered
    status = (await step(controller, request("lb", gateway.url, status))).status
    assert "dag" not in status

    gateway.target = second.address  # the address now reaches another agent, which knows nothing of it
    restarted = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
    try:
        decision = await step(restarted, request("lb", gateway.url, status))
        assert decision.status["reason"] == "AgentChanged", decision.status
        assert first.address in decision.status["message"] and second.address in decision.status["message"]
        assert len(sim.landed_stops()) == 1  # nothing sent again

        gateway.target = first.address  # back: the earlier stop is found
        decision = await step(restarted, request("lb", gateway.url, decision.status))
        assert decision.status["dag"]["id"] == sim.landed_stops()[0].dag_id
        assert len(sim.landed_stops()) == 1
    finally:
        await restarted.aclose()


async def test_a_stop_answered_by_another_agent_than_the_recorded_one_warns(
    controller: Controller, gateway_sim: tuple[ObshellSimulator, Gateway]
) -> None:
    sim, gateway = gateway_sim
    first, second = sim.clusters[0].agents[:2]
    status = (await step(controller, request("moved", gateway.url, {}))).status
    gateway.target = second.address
    decision = await step(controller, request("moved", gateway.url, status))
    assert decision.status["dag"]["id"] == sim.landed_stops()[0].dag_id
    [warning] = [e for e in decision.events if e.reason == "AgentChanged"]
    assert first.address in warning.message and second.address in warning.message


# --------------------------------------------------------------------------------------------------------
# 9. Clock skew


@pytest.mark.parametrize("version", ["4.2.3.0", "4.5.0.0"])
async def test_requests_are_signed_with_the_agents_clock(version: str) -> None:
    """The agent's clock is ten minutes ahead: a header signed with ours would have expired (on 4.2.x the
    refusal says only "unauthorized"). The client learns the agent's time from its answers and signs with it."""
    sim = await simulator(version)
    try:
        sim.set_clock_offset(600)
        agent = sim.clusters[0].agents[0]
        async with ObshellClient(agent.url, PASSWORD) as client:
            assert await client.agent_unfinished_dags() == []
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 10. Adopt only a stop of this request's mode


async def test_a_restarted_controller_does_not_adopt_a_stop_of_another_mode(controller: Controller) -> None:
    """Since the request recorded its submission, someone stopped the cluster with force from the CLI (a
    "Stop OB" DAG too). The restarted controller must not take that DAG for its own terminate stop."""
    sim = await simulator("4.5.0.0", stage_seconds=5)
    try:
        agent = sim.clusters[0].agents[0]
        status = (await step(controller, request("mine", agent.url, {}))).status
        async with ObshellClient(agent.url, PASSWORD) as cli:
            other = await cli.stop(
                StopParams(scope=Scope(type=ScopeType.SERVER, target=[agent.address]), force=True)
            )
        restarted = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
        try:
            decision = await step(restarted, request("mine", agent.url, status))
        finally:
            await restarted.aclose()
        assert decision.status.get("dag", {}).get("id") != other.id, decision.status
        assert len(sim.landed_stops()) == 2
    finally:
        await sim.stop()


async def test_a_restarted_controller_does_not_adopt_a_per_zone_stop(controller: Controller) -> None:
    """Since the request (an immediate ZONE stop, 6 stages) recorded its submission, someone stopped the same zone
    through obshell's per-zone route (4.4.1.0+): a "Stop OB" DAG of 6 stages too, its nodes in another order
    (fact sheet §5). The restarted controller reads its nodes and does not take it for its own."""
    sim = await simulator("4.5.0.0", stage_seconds=5)
    try:
        agent = sim.clusters[0].agents[0]
        mine = request("mine", agent.url, {}, scope="ZONE", targets=("zone2",), force=False)
        status = (await step(controller, mine)).status
        uri = "/api/v1/ob/zone/zone2/stop"
        body = json.dumps({"freeze_server": False, "forcePassDag": {"id": []}}).encode()
        async with httpx.AsyncClient(base_url=agent.url) as http:
            answer = await http.post(
                uri,
                headers={"X-OCS-Header": signed_header(agent, uri=uri, password=PASSWORD)},
                content=crypto.aes_encrypt(bytes(range(32)), body),
            )
        assert answer.status_code == 200, answer.text
        other = answer.json()["data"]
        assert (other["name"], other["max_stage"]) == ("Stop OB", 6)
        restarted = Controller(Settings(), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
        try:
            again = Request(
                mine.namespace, mine.name, mine.uid, 1, mine.spec, RequestStatus.from_wire(status)
            )
            decision = await step(restarted, again)
        finally:
            await restarted.aclose()
        assert decision.status.get("dag", {}).get("id") != other["id"], decision.status
        assert "found on the agent" not in str(decision.events), decision.events
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 11. Agents the controller cannot use


async def test_an_auth_v1_agent_is_refused_before_anything_is_signed(controller: Controller) -> None:
    sim = await simulator("4.2.2.0")
    try:
        agent = sim.clusters[0].agents[0]
        decision = await step(controller, request("v1", agent.url, {}))
        assert decision.status["phase"] == "Failed" and decision.delay is None
        assert decision.status["reason"] == "UnsupportedObshellVersion"
        assert "4.2.2.0" in decision.status["message"] and "4.2.3.0" in decision.status["message"]
        assert sim.stops == []
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 3. 400s that can pass


async def test_a_mysql_error_is_retried_not_failed(controller: Controller) -> None:
    """A query timeout of the observer during the immediate SERVER checks (4.4.1+) is a 400 MySQL.Error that the
    next try passes."""
    sim = await simulator("4.5.0.0")
    try:
        agent = sim.clusters[0].agents[0]
        sim.faults.mysql_error(agent=agent.address, times=2)

        def immediate(status: dict[str, Any]) -> Request:
            return request("mysql", agent.url, status, scope="SERVER", targets=(agent.address,), force=False)

        status = (await step(controller, immediate({}))).status
        for _ in range(2):
            decision = await step(controller, immediate(status))
            status = decision.status
            assert status["phase"] == "Pending" and status["reason"] == "MySQL.Error", status
            assert decision.delay is not None and "retrying" in status["message"]
        status = (await step(controller, immediate(status))).status
        assert status["phase"] in ("Submitted", "Running") and status["dag"]["id"], status
        assert len(sim.landed_stops()) == 1
    finally:
        await sim.stop()


@pytest.mark.parametrize("version", ["4.2.6.0", "4.5.0.0"])
async def test_force_stop_required_while_the_observer_boots_is_retried(
    controller: Controller, version: str
) -> None:
    """obshell asks for force whenever the observer has no usable connection (obState < 3), also while it boots:
    retried while the agent says the process is up, failed at once when it says it is not running."""
    sim = await simulator(version)
    try:
        agent = sim.clusters[0].agents[0]
        sim.set_ob_state(agent.address, 1)
        status = (await step(controller, request("boot", agent.url, {}))).status
        decision = await step(controller, request("boot", agent.url, status))
        assert decision.status["reason"] == "OB.Cluster.ForceStopRequired", decision.status
        assert decision.status["phase"] == "Pending" and decision.delay is not None
        assert "obState 1" in decision.status["message"]
        sim.set_ob_state(agent.address, 3)
        decision = await step(controller, request("boot", agent.url, decision.status))
        assert decision.status["dag"]["id"] == sim.landed_stops()[0].dag_id

        down = sim.clusters[0].agents[1]
        sim.set_ob_state(down.address, 0)
        status = (await step(controller, request("down", down.url, {}))).status
        decision = await step(controller, request("down", down.url, status))
        assert decision.status["phase"] == "Failed" and decision.delay is None, decision.status
        assert "not running" in decision.status["message"]
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 4. Lists without details


async def test_dag_lists_are_asked_for_without_details() -> None:
    sim = await simulator("4.5.0.0", stage_seconds=0.05)
    try:
        agent = sim.clusters[0].agents[0]
        async with ObshellClient(agent.url, PASSWORD) as client:
            dag = await client.stop(StopParams(scope=Scope(type=ScopeType.GLOBAL), force=True))
            await until(lambda: sim.dag(dag.id).terminal)
            history = await client.agent_dags()  # the main DAG, and this agent's own sub-DAG
            assert dag.id in {d.id for d in history} and all(d.nodes is None for d in history)
        # The agent's default is every node, sub-task and log line: what the client saves by asking.
        async with httpx.AsyncClient() as http:
            signed = ObshellClient(agent.url, PASSWORD, http=http)
            full = await signed._call("GET", "/api/v1/task/dags/agent")
        [main] = [d for d in full["contents"] if d["id"] == dag.id]
        assert main["nodes"], main
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 5. A busy agent answers 404 too


async def test_a_failed_lookup_is_retried_not_taken_for_a_missing_dag(controller: Controller) -> None:
    sim = await simulator("4.5.0.0", stage_seconds=0.3)
    try:
        agent = sim.clusters[0].agents[0]
        status = (await step(controller, request("busy", agent.url, {}, force=True))).status
        status = (await step(controller, request("busy", agent.url, status, force=True))).status
        sim.faults.busy_sqlite(agent=agent.address, times=answers.DAG_NOT_FOUND_TRIES + 1)
        for _ in range(answers.DAG_NOT_FOUND_TRIES + 1):
            decision = await step(controller, request("busy", agent.url, status, force=True))
            status = decision.status
            assert status["reason"] == "DagLookupFailed" and decision.delay is not None, status
            assert "database is locked" in status["message"]
        await until(lambda: sim.dag(status["dag"]["id"]).terminal)
        status = (await step(controller, request("busy", agent.url, status, force=True))).status
        assert status["phase"] == "Succeeded", status
    finally:
        await sim.stop()


# --------------------------------------------------------------------------------------------------------
# 8. An agent restart during a stop, and the lock it leaves


async def test_a_stop_interrupted_by_an_agent_restart_names_the_lock_to_pass(controller: Controller) -> None:
    """The receiving agent restarts while node 2 runs: the main DAG fails, its sub-DAGs keep the agents locked.
    The next stop is refused by its pre-check before any POST (obshell would accept it and fail it at node 2,
    naming only the agents): the status names the holder and the id to put in forcePassDag; with it, it runs."""
    sim = await simulator("4.5.0.0", stage_seconds=1.0)
    try:
        agent = sim.clusters[0].agents[0]
        status = (await step(controller, request("first", agent.url, {}, force=True))).status
        status = (await step(controller, request("first", agent.url, status, force=True))).status
        first = status["dag"]["id"]
        await until(lambda: sim.dag(first).stage == 2)
        await sim.restart_agent(agent.address)
        await until(lambda: sim.dag(first).terminal)
        status = (await step(controller, request("first", agent.url, status, force=True))).status
        assert status["phase"] == "Failed" and "interrupted" in status["message"], status

        posts = len(sim.stops)
        status = (await step(controller, request("second", agent.url, {}, force=True))).status
        assert status["phase"] == "Failed" and status["reason"] == "LocksHeld", status
        assert f'forcePassDag: ["{first}"]' in status["message"], status["message"]
        assert "submission" not in status and len(sim.stops) == posts  # nothing was sent
        holders = status["precheck"]["lockHolders"]
        assert {h["agent"] for h in holders} == {a.address for a in sim.clusters[0].agents}, holders
        assert {h["mainDagId"] for h in holders} == {first} and not any(h["forcePassed"] for h in holders)
        assert all(h["owner"] == agent.address and h["mainDagName"] == "Stop OB" for h in holders), holders
        validated = next(c for c in status["conditions"] if c["type"] == "Validated")
        assert validated["status"] == "False" and validated["reason"] == "LocksHeld", validated

        third = request("third", agent.url, {}, force=True)
        third = Request(
            third.namespace, third.name, third.uid, 1, {**third.spec, "forcePassDag": [first]}, third.status
        )
        status = (await step(controller, third)).status
        assert "submission" in status, status
        assert any("already in spec.forcePassDag" in w for w in status["precheck"]["warnings"]), status
        third = Request(
            third.namespace, third.name, third.uid, 1, third.spec, RequestStatus.from_wire(status)
        )
        status = (await step(controller, third)).status
        await until(lambda: sim.dag(status["dag"]["id"]).terminal)
        third = Request(
            third.namespace, third.name, third.uid, 1, third.spec, RequestStatus.from_wire(status)
        )
        status = (await step(controller, third)).status
        assert status["phase"] == "Succeeded", status
    finally:
        await sim.stop()


@pytest.mark.parametrize("version", ["4.3.0.0", "4.3.1.0"])
async def test_an_immediate_stop_whose_observer_went_away_is_explained_by_release(
    controller: Controller, version: str
) -> None:
    """The receiving agent's observer process goes away after the POST of an immediate SERVER stop: before
    4.3.1.0 `Execute stop sql` fails (fact sheet §3.4 node 6, §7) and the request says where and why, with
    the task's last log line; from 4.3.1.0 the node does nothing and the request succeeds."""
    sim = await simulator(version)
    try:
        receiver, target = sim.clusters[0].agents[0], sim.clusters[0].agents[1]

        def make(status: dict[str, Any]) -> Request:
            return request(
                "sql", receiver.url, status, scope="SERVER", targets=(target.address,), force=False
            )

        status = (await step(controller, make({}))).status
        status = (await step(controller, make(status))).status
        assert status["phase"] == "Submitted", status
        sim.set_observer(receiver.address, running=False)
        await until(lambda: sim.dag(status["dag"]["id"]).terminal)
        status = (await step(controller, make(status))).status
        if version == "4.3.1.0":
            assert status["phase"] == "Succeeded", status
            return
        assert status["phase"] == "Failed", status
        assert status["dag"]["failedNode"] == "Execute stop sql", status["dag"]
        assert "check observer process exist: false" in status["message"], status["message"]
    finally:
        await sim.stop()
