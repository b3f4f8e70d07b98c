"""Property-based: whatever an "agent" answers (malformed, truncated, oversized or wrongly-typed JSON, any
HTTP status), the obshell client raises a typed ObshellError or returns a typed value, and one controller
step (Controller.step) ends in a clear status: a transient fault with lastError and a next check, a permanent
failure with reason and message, or real progress. Never an unexpected exception, never a silent stall.

The agent is a tiny real aiohttp server on loopback (in a thread) that answers what hypothesis generates on
one route and valid obshell answers elsewhere; it does not check auth. The Secret is read through a fake
SecretReader (the only stand-in: reading Kubernetes is not what is tested here).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller_helpers import StaticSecrets
from obstop.controller.decisions import next_step
from obstop.controller.settings import Settings
from obstop.controller.status import RequestStatus
from obstop.controller.stop import Controller, Request
from obstop.obshell import ObshellClient, ObshellError, StopParams, crypto
from obstop.obshell.client import MAX_RESPONSE_BYTES
from obstop.testing.obshell_sim import dags, keys
from obstop.testing.obshell_sim.wire import go_time

PASSWORD = "fuzz-root-password-8d2f"
ROUTES = {
    "time": "/api/v1/time",
    "info": "/api/v1/info",
    "lookup": "/api/v1/task/dag/agent/unfinish",
    "history": "/api/v1/task/dags/agent",
    "stop": "/api/v1/ob/stop",
    "dag": "/api/v1/task/dag/2",  # GET of a local DAG (prefix)
}


def valid_dag(ip: str, port: int, *, state: str = "RUNNING") -> dict[str, Any]:
    ids = dags.IdAllocator(ip, port)
    dag_id, generic_id = ids.allocate("dag")
    nodes = [
        dags.Node(ids.allocate("node")[1], 0, name)
        for name in dags.stop_node_names(force=True, terminate=False)
    ]
    dag = dags.Dag(generic_id, dag_id, dags.STOP_DAG, nodes, state=dags.State(state))
    return dag.to_wire(details=True)


def envelope(data: Any = None, *, status: int = 200) -> bytes:
    body: dict[str, Any] = {"successful": status < 400, "timestamp": go_time(datetime.now().astimezone()),
                            "duration": 1, "status": status, "traceId": "fuzz"}  # fmt: skip
    if data is not None:
        body["data"] = data
    return json.dumps(body).encode()


@dataclass
class FakeAgent:
    """Answers `answer` (status, body) on `route`; valid obshell answers on every other route."""

    url: str = ""
    route: str = ""
    answer: tuple[int, bytes] = (200, b"")
    hits: int = 0
    _key: Any = field(default_factory=lambda: keys.generate_private_key(1024))

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if (
            self.route
            and path.startswith(self.route)
            and not (self.route == ROUTES["dag"] and "agent" in path)
        ):
            self.hits += 1
            status, body = self.answer
            return web.Response(status=status, body=body, content_type="application/json")
        if path == "/api/v1/secret":
            data: Any = {"public_key": crypto.dump_public_key(self._key.public_key())}
        elif path == ROUTES["time"]:
            data = 0
        elif path == ROUTES["info"]:
            host, port = request.host.rsplit(":", 1)
            data = {"ip": host, "port": int(port), "identity": "CLUSTER AGENT", "version": "4.5.0.0",
                    "supportedAuth": ["v2"]}  # fmt: skip
        elif path in (ROUTES["lookup"], ROUTES["history"]):
            data = {"contents": []}
        else:
            host, port = request.host.rsplit(":", 1)
            data = valid_dag(host, int(port))
        return web.Response(status=200, body=envelope(data), content_type="application/json")


@pytest.fixture(scope="module")
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(web.Application(), access_log=None)

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        nonlocal runner
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fake.url = f"http://127.0.0.1:{port}"
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    ready.wait(10)
    yield fake
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


# ------------------------------------------------------------------------------------------------------
# What a broken agent may answer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.sampled_from([200, 201, 204, 301, 400, 401, 404, 409, 429, 500, 502, 503])


@st.composite
def wrongly_typed_dag(draw: st.DrawFn) -> bytes:
    dag = valid_dag("127.0.0.1", 2886)
    key = draw(st.sampled_from(sorted(dag)))
    dag[key] = draw(json_values)
    return envelope(dag)


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    whole = envelope(valid_dag("127.0.0.1", 2886))
    return whole[: draw(st.integers(0, len(whole) - 1))]


@st.composite
def odd_envelope(draw: st.DrawFn) -> bytes:
    body = {
        key: draw(json_values)
        for key in draw(
            st.sets(st.sampled_from(["successful", "status", "data", "error", "timestamp", "traceId"]))
        )
    }
    if draw(st.booleans()):
        body["successful"] = draw(st.booleans())
    return json.dumps(body).encode()


bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda value: json.dumps(value).encode()),
    odd_envelope(),
    wrongly_typed_dag(),
    truncated(),
    json_values.map(lambda data: envelope(data)),
    st.just(b"[" * 100_000),  # absurdly nested
)


# ------------------------------------------------------------------------------------------------------
# The client


async def _call(agent: FakeAgent, what: str) -> Any:
    async with ObshellClient(agent.url, PASSWORD, timeout=5) as client:
        if what == "time":
            return await client.server_time()
        if what == "info":
            return await client.info()
        if what == "lookup":
            return await client.agent_unfinished_dags()
        if what == "history":
            return await client.agent_dags()
        if what == "stop":
            return await client.stop(StopParams.model_validate({"scope": {"type": "GLOBAL"}, "force": True}))
        return await client.get_dag("22130706433028869")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(what=st.sampled_from(sorted(ROUTES)), status=statuses, body=bodies)
def test_the_client_raises_only_typed_errors(agent: FakeAgent, what: str, status: int, body: bytes) -> None:
    agent.route, agent.answer, agent.hits = ROUTES[what], (status, body), 0
    try:
        result = asyncio.run(_call(agent, what))
    except ObshellError as exc:
        assert agent.hits == 1
        assert str(exc) and PASSWORD not in repr(exc) + str(exc)
        assert isinstance(exc.transient, bool)
        return
    assert status < 300  # an error status never passes as a result
    assert result is not None


def test_an_oversized_answer_is_refused(agent: FakeAgent) -> None:
    agent.route = ROUTES["dag"]
    agent.answer = (200, envelope({"filler": "x" * (MAX_RESPONSE_BYTES + 1)}))
    with pytest.raises(ObshellError) as caught:
        asyncio.run(_call(agent, "dag"))
    assert caught.value.transient and "larger than" in str(caught.value)


# ------------------------------------------------------------------------------------------------------
# One controller step


def _status_for(step: str, agent: FakeAgent) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if step == "record":
        return {}
    submission = {"agent": agent.url, "requestedAt": now, "notBefore": "2000-01-01T00:00:00+00:00"}
    base = {"phase": "Pending", "startTime": now, "submission": submission}
    if step == "submit":
        return base
    return {**base, "phase": "Running", "dag": {"id": "22130706433028869", "stage": 1, "maxStage": 5}}


STEP_ROUTES = {"record": ["info"], "submit": ["lookup", "history", "stop"], "poll": ["dag"]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step_and_route=st.sampled_from([(s, r) for s, routes in STEP_ROUTES.items() for r in routes]),
    status=statuses,
    body=bodies,
)
def test_one_step_always_leaves_a_clear_status(
    agent: FakeAgent, step_and_route: tuple[str, str], status: int, body: bytes
) -> None:
    step, route = step_and_route
    agent.route, agent.answer, agent.hits = ROUTES[route], (status, body), 0
    old = _status_for(step, agent)
    spec = {
        "obshell": {"address": agent.url, "passwordSecretRef": {"name": "root"}},
        "scope": {"type": "GLOBAL"},
        "force": True,
    }
    request = Request("default", "fuzz", "uid-fuzz", 1, spec, RequestStatus.from_wire(old))

    async def run() -> Any:
        controller = Controller(Settings(obshell_timeout_seconds=5, health_port=0), StaticSecrets(PASSWORD))  # type: ignore[arg-type]
        try:
            return await controller.step(request, logging.getLogger("fuzz"))
        finally:
            await controller.aclose()

    decision = asyncio.run(run())
    assert agent.hits >= 1, "the generated answer was never requested"
    new = decision.status.to_wire()
    assert PASSWORD not in json.dumps(new) + json.dumps([e.__dict__ for e in decision.events])
    if decision.done:  # terminal: it says why
        assert new["phase"] in ("Succeeded", "Failed")
        assert new.get("reason") and new.get("message")
        return
    assert new.get("phase") not in ("Succeeded", "Failed")
    if agent.hits and "lastError" not in new:
        # The odd answer was good enough to act on: the request visibly moved on (or the DAG was re-read).
        assert next_step(decision.status) != next_step(request.status) or (
            step == "poll" and new.get("message")
        )
    if "lastError" in new:
        assert new.get("nextCheckTime") and new.get("reason") and new["attempts"] >= 1
