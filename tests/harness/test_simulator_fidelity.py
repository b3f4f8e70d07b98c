"""The simulator against the fact sheet's §6 failure behaviours (items 8, 10-25), over real HTTP on loopback:
agent restarts mid-stop, which failures release the locks, the real log lines, operators, wire details, list
routes, obState 1/2, force-passing a running holder, lookup errors, per-node time limits, transient MySQL
errors and failing kills. Faults are injected in-process and, where a controller test needs them, through the
/__sim__/faults control route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import httpx
import pytest

from obshell_sim_helpers import PASSWORD, stop_params, wait_finished
from obstop.obshell import DagDetail, DagOperator, DagState, ObshellApiError, ObshellClient
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig
from obstop.testing.waiting import until

INFORM = "Inform all agents to prepare to stop observer"
READY = "Make sure all agents are ready"
FREEZE = "Minor freeze before stop server"
ADVANCE = "Advance agents to execute the task"
WAIT = "Wait for all agents to execute tasks successfully"
STOP_SQL = "Execute stop sql"
END = "Inform all agents to end the task"
INTERRUPTED = (
    "ERROR: [Common.Unexpected]: Unexpected error: task unexpectedly interrupted and cannot continue"
)


async def _simulator(node_seconds: Mapping[str, float] | None = None, **kwargs: Any) -> ObshellSimulator:
    config = SimulatorConfig(
        password=PASSWORD, zones=3, stage_seconds=0.02, node_seconds=node_seconds, **kwargs
    )
    sim = ObshellSimulator(config)
    await sim.start()
    return sim


@pytest.fixture
async def slow_sims() -> AsyncIterator[list[ObshellSimulator]]:
    """Simulators made by a test (with its own node timings), stopped afterwards."""
    made: list[ObshellSimulator] = []
    yield made
    for sim in made:
        await sim.stop()


def _mode(mode: str) -> dict[str, bool]:
    return {"force": mode == "force", "terminate": mode == "terminate"}


def _params(mode: str, sim: ObshellSimulator) -> Any:
    if mode == "immediate":
        return stop_params("SERVER", [sim.agents[2].address])
    return stop_params(**_mode(mode))  # type: ignore[arg-type]


def _subs_of(sim: ObshellSimulator, main_id: str) -> dict[str, Any]:
    return {
        agent.address: dag
        for agent in sim.agents
        for dag in agent.dags.values()
        if dag.name == "Stop observer" and dag.main_dag_id == main_id
    }


def _node(dag: DagDetail, name: str) -> Any:
    return next(node for node in dag.nodes or () if node.name == name)


def _task_logs(dag: DagDetail, name: str) -> list[list[str]]:
    return [list(task.task_logs or ()) for task in _node(dag, name).sub_tasks or ()]


# ------------------------------------------------------------------------------------------------------
# 1. An agent restart during a stop (§6 item 14)


@pytest.mark.parametrize(
    ("mode", "node", "fails"),
    [
        ("force", INFORM, True),
        ("force", READY, True),
        ("force", ADVANCE, True),
        ("force", END, True),
        ("terminate", FREEZE, False),
        ("force", WAIT, False),
        ("immediate", STOP_SQL, False),
    ],
)
async def test_restart_of_the_receiving_agent_fails_cancel_only_nodes_and_keeps_the_locks(
    slow_sims: list[ObshellSimulator], mode: str, node: str, fails: bool
) -> None:
    sim = await _simulator({node: 0.5})
    slow_sims.append(sim)
    owner = sim.agents[0]
    async with ObshellClient(owner.url, PASSWORD) as client:
        created = await client.stop(_params(mode, sim))
        await until(lambda: _running(sim, created.id) and sim.dag(created.id).current.name == node)
        pid = owner.pid
        await sim.restart_agent(owner.address)
        assert owner.pid != pid  # a new process
        done = await wait_finished(client, created.id)
    if not fails:  # Minor freeze, Wait and Execute stop sql continue after a restart
        assert (done.state, done.operator) == (DagState.SUCCEED, DagOperator.RUN)
        assert not any(a.under_maintenance for a in sim.agents)
        return
    assert (done.state, done.operator) == (DagState.FAILED, DagOperator.RUN)
    assert done.failed_node is not None and done.failed_node.name == node
    assert done.failure_log() == INTERRUPTED
    assert all(task.state is DagState.FAILED for task in done.failed_node.sub_tasks or ())
    # No pass ran: every sub-DAG is still parked (FAILED) and holds its agent's lock.
    subs = _subs_of(sim, created.id)
    assert set(subs) == {a.address for a in sim.agents}
    assert all(sub.state.value == "FAILED" for sub in subs.values())
    assert all(a.under_maintenance for a in sim.agents)
    assert created.id not in {d.id for d in await _unfinished(sim)}


def _running(sim: ObshellSimulator, dag_id: str) -> bool:
    dag = sim.dag(dag_id)
    return dag.state.value == "RUNNING" and dag.current.state.value == "RUNNING"


async def _unfinished(sim: ObshellSimulator) -> list[DagDetail]:
    async with ObshellClient(sim.agents[0].url, PASSWORD) as client:
        return await client.unfinished_dags()


async def test_after_a_restart_later_stops_fail_at_node_2_until_force_pass_dag_names_the_old_main(
    slow_sims: list[ObshellSimulator],
) -> None:
    sim = await _simulator({READY: 0.4})
    slow_sims.append(sim)
    owner, second, third = sim.agents
    async with ObshellClient(owner.url, PASSWORD) as client:
        first = await client.stop(stop_params(force=True))
        await until(lambda: _running(sim, first.id) and sim.dag(first.id).current.name == READY)
        await sim.restart_agent(owner.address)
        assert (await wait_finished(client, first.id)).failure_log() == INTERRUPTED

        blocked = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
        assert blocked.failed_node is not None and blocked.failed_node.name == READY
        everyone = " ".join(a.address for a in sim.agents)
        assert blocked.failure_log() == (
            "ERROR: [Task.SubDag.NotAllCreated]: check sub dag created failed: "
            f"Sub DAG of agents: [{everyone}] not created, main DAG failed"
        )
        # The lock holder is named only in node 1's sub-task logs, whose sub-tasks SUCCEED (§3.4).
        inform = _node(blocked, INFORM)
        assert inform.state is DagState.SUCCEED
        assert all(task.state is DagState.SUCCEED for task in inform.sub_tasks or ())
        local, *remote = _task_logs(blocked, INFORM)
        holder = f"is under maintenance by DAG [{first.id}:Stop observer]"
        assert local == [
            f"Inform {owner.address} to create the task",
            f"ERROR: [Agent.UnderMaintenanceDag]: {owner.address} {holder}",
        ]
        for agent, logs in zip((second, third), remote, strict=True):
            assert logs[0] == f"Inform {agent.address} to create the task"
            assert logs[1:] == [
                f"ERROR: [Common.Unexpected]: Unexpected error: {agent.address} failed to create the task due to "
                f"'Request [POST]/rpc/v1/ob/stop to {agent.address} error: {{Code:Agent.UnderMaintenanceDag, "
                f"Message:{agent.address} {holder}}}' and will try again[{i}/3]."
                for i in (1, 2, 3)
            ]
        assert all(holder not in line for logs in _task_logs(blocked, READY) for line in logs)

        freed = await wait_finished(
            client, (await client.stop(stop_params(force=True, force_pass_dag=[first.id]))).id
        )
        assert freed.succeeded
        assert not any(a.under_maintenance for a in sim.agents)


async def test_restart_through_the_control_route(slow_sims: list[ObshellSimulator]) -> None:
    sim = await _simulator({ADVANCE: 0.5})
    slow_sims.append(sim)
    owner = sim.agents[0]
    async with ObshellClient(owner.url, PASSWORD) as client, httpx.AsyncClient(base_url=owner.url) as control:
        created = await client.stop(stop_params(force=True))
        await until(lambda: _running(sim, created.id) and sim.dag(created.id).current.name == ADVANCE)
        answer = await control.post(
            "/__sim__/faults", json={"kind": "agent_restart", "agent": owner.address, "downSeconds": 0.1}
        )
        assert answer.json() == {"ok": True}
        pid = owner.pid
        await until(lambda: owner.pid != pid and owner.serving)  # down 0.1 s, then a new process
        done = await wait_finished(client, created.id)
    assert done.failure_log() == INTERRUPTED and done.failed_node is not None
    assert done.failed_node.name == ADVANCE
    assert all(a.under_maintenance for a in sim.agents)


# ------------------------------------------------------------------------------------------------------
# 2. Which failures release the locks (§6 item 15)


@pytest.mark.parametrize(
    ("mode", "node", "released"),
    [
        ("force", READY, True),
        ("force", ADVANCE, True),
        ("immediate", STOP_SQL, True),
        ("force", END, True),
        ("terminate", FREEZE, False),
        ("force", WAIT, False),
    ],
)
async def test_failures_at_nodes_2_4_6_7_pass_the_sub_dags_others_leave_them_parked(
    sim: ObshellSimulator, client: ObshellClient, mode: str, node: str, released: bool
) -> None:
    sim.faults.fail_stop(node, "Sim.Broken", "broken")
    created = await client.stop(_params(mode, sim))
    done = await wait_finished(client, created.id)
    assert done.failed_node is not None and done.failed_node.name == node
    assert done.failure_log() == "ERROR: [Sim.Broken]: broken"
    subs = _subs_of(sim, created.id)
    assert len(subs) == 3
    if released:
        assert {(s.state.value, s.operator.value) for s in subs.values()} == {("SUCCEED", "PASS")}
        assert not any(a.under_maintenance for a in sim.agents)
        assert [d.name for d in await client.agent_unfinished_dags()] == []
    else:
        assert {s.state.value for s in subs.values()} == {"FAILED"}
        assert all(a.under_maintenance for a in sim.agents)


async def test_cancel_of_the_main_dag_leaves_the_locks(slow_sims: list[ObshellSimulator]) -> None:
    sim = await _simulator({READY: 0.3})
    slow_sims.append(sim)
    async with ObshellClient(sim.agents[0].url, PASSWORD) as client:
        created = await client.stop(stop_params(force=True))
        await until(lambda: _running(sim, created.id) and sim.dag(created.id).current.name == READY)
        await client.cancel_dag(created.id)
        done = await wait_finished(client, created.id)
    assert (done.state, done.operator) == (DagState.FAILED, DagOperator.CANCEL)
    assert all(a.under_maintenance for a in sim.agents)


# ------------------------------------------------------------------------------------------------------
# 4. Operators (§6 items 11, 16)


async def test_retry_keeps_the_dag_operator_run_and_marks_the_node(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    sim.faults.fail_stop(FREEZE, "OB.Cluster.MinorFreezeTimeout", "Minor freeze timeout")
    created = await client.stop(stop_params(terminate=True))
    await wait_finished(client, created.id)
    await client.operate_dag(created.id, DagOperator.RETRY)
    right_after = await client.get_dag(created.id)
    assert right_after.operator is DagOperator.RUN and right_after.state is not DagState.FAILED
    done = await wait_finished(client, created.id)
    assert (done.state, done.operator) == (DagState.SUCCEED, DagOperator.RUN)
    assert _node(done, FREEZE).operator is DagOperator.RETRY


async def test_cancel_of_a_parked_sub_dag_is_refused(sim: ObshellSimulator, client: ObshellClient) -> None:
    sim.faults.fail_stop(WAIT, "Sim.Stuck", "stuck")
    created = await client.stop(stop_params(force=True))
    await wait_finished(client, created.id)
    parked = _subs_of(sim, created.id)[sim.agents[1].address]
    with pytest.raises(ObshellApiError) as caught:
        await client.cancel_dag(parked.generic_id)
    assert (caught.value.status, caught.value.err_code, caught.value.message) == (
        400,
        "Task.Dag.Operator.CancelFinishedDag",
        "Failed to cancel DAG: DAG is finished",
    )
    assert sim.agents[1].under_maintenance  # still parked, still holding the lock
    await client.operate_dag(parked.generic_id, DagOperator.PASS)
    assert not sim.agents[1].under_maintenance


# ------------------------------------------------------------------------------------------------------
# 5-7. Wire details (§6 items 17, 18, 19)


async def test_additional_data_only_at_dag_level(sim: ObshellSimulator, client: ObshellClient) -> None:
    done = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    raw = await client._call("GET", f"/api/v1/task/dag/{done.id}?show_details=true")
    assert set(raw["additional_data"]) == {"sub_dags"}
    assert set(raw["additional_data"]["sub_dags"]) == {a.address for a in sim.agents}
    assert [n["additional_data"] for n in raw["nodes"]] == [None] * 5
    assert {t["additional_data"] for n in raw["nodes"] for t in n["sub_tasks"]} == {None}
    sub_id = raw["additional_data"]["sub_dags"][sim.agents[1].address]
    sub = await client._call("GET", f"/api/v1/task/dag/{sub_id}")
    assert sub["additional_data"] == {"main_dag_id": done.id}
    assert {n["additional_data"] for n in sub["nodes"]} == {None}


async def test_time_data_is_an_rfc3339_string(raw: httpx.AsyncClient, client: ObshellClient) -> None:
    body = (await raw.get("/api/v1/time")).json()
    assert isinstance(body["data"], str)
    moment = datetime.fromisoformat(body["data"])
    assert moment.tzinfo is not None and abs(moment.timestamp() - time.time()) < 5
    assert (await client.server_time()).tzinfo is not None  # the client reads the envelope, unaffected


@pytest.mark.parametrize(
    "route",
    [
        "/api/v1/task/dags/agent",
        "/api/v1/task/dag/agent/unfinish",
        "/api/v1/task/dag/unfinish",
        "/api/v1/task/dag/maintain/agents",
    ],
)
async def test_list_routes_show_details_by_default(
    sim: ObshellSimulator, client: ObshellClient, route: str
) -> None:
    sim.faults.fail_stop(WAIT, "Sim.Stuck", "stuck")  # parked sub-DAGs stay in the unfinished lists
    await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    full = (await client._call("GET", route))["contents"]
    brief = (await client._call("GET", f"{route}?show_details=false"))["contents"]
    assert full and len(full) == len(brief)
    assert all(isinstance(d["nodes"], list) and d["nodes"] for d in full)
    assert all(isinstance(n["sub_tasks"], list) for d in full for n in d["nodes"])
    assert all(d["nodes"] is None for d in brief)


# ------------------------------------------------------------------------------------------------------
# 8. ForceStopRequired while the observer is up but not connected (§6 item 20)


@pytest.mark.parametrize("ob_state", [1, 2])
async def test_observer_up_without_a_usable_connection_needs_force(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient, ob_state: int
) -> None:
    answer = await raw.post(
        "/__sim__/faults", json={"kind": "ob_state", "agent": sim.agents[0].address, "obState": ob_state}
    )
    assert answer.json() == {"ok": True}
    assert (await client.status()).ob_state == ob_state
    for params in (
        stop_params(terminate=True),
        stop_params("SERVER", [sim.agents[1].address]),
        stop_params("ZONE", ["zone2"], force=True),
    ):
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(params)
        assert (caught.value.status, caught.value.err_code) == (400, "OB.Cluster.ForceStopRequired")
    assert (await wait_finished(client, (await client.stop(stop_params(force=True))).id)).succeeded


# ------------------------------------------------------------------------------------------------------
# 9. Force-passing a RUNNING holder, and holders with no main id (§6 item 21)


async def test_force_pass_of_a_running_holder_fails_on_the_receiving_agent(
    slow_sims: list[ObshellSimulator],
) -> None:
    sim = await _simulator()
    slow_sims.append(sim)
    owner, remote, _ = sim.agents
    sim.set_time_scale(0.02)  # the kill timeout (15x5 s) takes 1.5 s
    sim.faults.fail_kill(agent=owner.address)
    sim.faults.fail_kill(agent=remote.address)
    async with ObshellClient(owner.url, PASSWORD) as client:
        first = await client.stop(stop_params(force=True))
        await until(lambda: _subs_of(sim, first.id).get(owner.address) is not None)
        await until(lambda: _subs_of(sim, first.id)[owner.address].state.value == "RUNNING")
        second = await client.stop(stop_params(force=True, force_pass_dag=[first.id]))
        blocked = await wait_finished(client, second.id)
        first_sub = _subs_of(sim, first.id)[owner.address]
        local, from_remote, _ = _task_logs(blocked, INFORM)
        # The holder was cancelled, but the pass used the stale (RUNNING) DAG: PassTimeout at once, no retry here.
        assert (
            local[-1] == f"ERROR: [Task.Dag.PassTimeout]: Pass {first_sub.dag_id} timeout after 300 seconds"
        )
        # A remote agent retries 3 s later, finds its holder FAILED (cancelled) and passes it.
        remote_sub = _subs_of(sim, first.id)[remote.address]
        assert from_remote[1] == (
            f"ERROR: [Common.Unexpected]: Unexpected error: {remote.address} failed to create the task due to "
            f"'Request [POST]/rpc/v1/ob/stop to {remote.address} error: {{Code:Task.Dag.PassTimeout, "
            f"Message:Pass {remote_sub.dag_id} timeout after 300 seconds}}' and will try again[1/3]."
        )
        assert from_remote[2].startswith("create task ") and from_remote[2].endswith(" successfully")
        assert blocked.failure_log() == (
            "ERROR: [Task.SubDag.NotAllCreated]: check sub dag created failed: "
            f"Sub DAG of agents: [{owner.address}] not created, main DAG failed"
        )
        assert (first_sub.state.value, first_sub.operator.value) == ("FAILED", "CANCEL")
        assert owner.under_maintenance  # the cancelled holder still holds it: a later force-pass works
        third = await wait_finished(
            client, (await client.stop(stop_params(force=True, force_pass_dag=[first.id]))).id
        )
        assert third.succeeded, third.failure_log()


async def test_a_holder_without_main_id_can_never_be_force_passed(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient
) -> None:
    agent = sim.agents[1]
    answer = await raw.post(
        "/__sim__/faults", json={"kind": "hold_lock", "agent": agent.address, "name": "Upgrade agent"}
    )
    assert answer.json() == {"ok": True}
    assert agent.under_maintenance
    holder = agent.lock_holder
    assert holder is not None and holder.main_dag_id is None
    done = await wait_finished(
        client, (await client.stop(stop_params(force=True, force_pass_dag=[holder.generic_id]))).id
    )
    assert done.failure_log() == (
        "ERROR: [Task.SubDag.NotAllCreated]: check sub dag created failed: "
        f"Sub DAG of agents: [{agent.address}] not created, main DAG failed"
    )
    assert _task_logs(done, INFORM)[1][1].endswith(
        f"Message:{agent.address} is under maintenance by DAG [:Upgrade agent]}}' and will try again[1/3]."
    )
    await client.operate_dag(holder.generic_id, DagOperator.PASS)  # only passing it by hand frees the agent
    assert (await wait_finished(client, (await client.stop(stop_params(force=True))).id)).succeeded


# ------------------------------------------------------------------------------------------------------
# 10. GET DAG answers 404 for any lookup error (§6 item 22)


async def test_busy_sqlite_answers_404_task_not_found(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient
) -> None:
    created = await client.stop(stop_params(force=True))
    answer = await raw.post(
        "/__sim__/faults", json={"kind": "busy_sqlite", "agent": sim.agents[0].address, "times": 2}
    )
    assert answer.json() == {"ok": True}
    async with ObshellClient(sim.agents[1].url, PASSWORD) as other:
        for asker in (client, other):  # the owner's sqlite is busy, wherever the request lands
            with pytest.raises(ObshellApiError) as caught:
                await asker.get_dag(created.id)
            assert (caught.value.status, caught.value.err_code, caught.value.message) == (
                404,
                "Task.NotFound",
                "Task not found: database is locked",
            )
    assert (await client.get_dag(created.id)).id == created.id  # used up
    missing = created.id[:-1] + str(int(created.id[-1]) + 5)
    with pytest.raises(ObshellApiError) as caught:
        await client.get_dag(missing)
    assert (caught.value.status, caught.value.message) == (404, "Task not found: record not found")


async def test_an_id_of_a_moved_agent_is_forwarded_to_its_old_address(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    owner, other = sim.agents[:2]
    created = await client.stop(stop_params(force=True))
    await wait_finished(client, created.id)
    old = owner.address
    await sim.move_agent(old, port=0)
    assert owner.address != old
    async with ObshellClient(owner.url, PASSWORD) as moved, ObshellClient(other.url, PASSWORD) as asker:
        for who in (moved, asker):
            with pytest.raises(ObshellApiError) as caught:
                await who.get_dag(created.id)
            assert caught.value.status == 500 and caught.value.err_code == "Common.Unexpected"
            assert old in caught.value.message
        renamed = (await moved.agent_dags())[0].id
        assert renamed != created.id and renamed.endswith(f"{owner.port:05d}{sim.dag(renamed).dag_id}")
        assert (await asker.get_dag(renamed)).id == renamed


# ------------------------------------------------------------------------------------------------------
# 11. Per-node time limits, scaled (§6 item 23)


async def test_node_2_gives_up_on_a_sub_dag_that_never_parks(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient
) -> None:
    stuck = sim.agents[2]
    await raw.post("/__sim__/faults", json={"kind": "time_scale", "scale": 0.001})
    await raw.post("/__sim__/faults", json={"kind": "stall", "agent": stuck.address, "stalled": True})
    started = time.monotonic()
    done = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    assert time.monotonic() - started >= 0.9  # 900 x 1 s, scaled by 0.001
    assert done.failed_node is not None and done.failed_node.name == READY
    assert done.failure_log() == (
        "ERROR: [Task.SubDag.NotAllReady]: check can advance sub dag failed: "
        f"Sub DAG of agents: {stuck.address} not ready, cannot advance main DAG"
    )
    # Node 2 passed what it could: the parked sub-DAGs; the stuck one (never FAILED) cannot be passed.
    assert [a.under_maintenance for a in sim.agents] == [False, False, True]


async def test_wait_gives_up_on_a_stalled_agent_then_the_end_reports_it(
    slow_sims: list[ObshellSimulator],
) -> None:
    sim = await _simulator({ADVANCE: 0.3})
    slow_sims.append(sim)
    sim.set_time_scale(0.001)
    owner, _, stalled = sim.agents
    async with ObshellClient(owner.url, PASSWORD) as client:
        created = await client.stop(stop_params(force=True))
        await until(lambda: _running(sim, created.id) and sim.dag(created.id).current.name == ADVANCE)
        sim.stall_agent(stalled.address)  # answers HTTP (the RETRY lands) but its task engine runs nothing
        started = time.monotonic()
        done = await wait_finished(client, created.id)
    assert time.monotonic() - started >= 1.3  # Wait: 900 x 1 s, cancel, ~450 s more (scaled)
    assert _node(done, WAIT).state is DagState.SUCCEED  # Wait always "succeeds"
    wait_logs = [line for logs in _task_logs(done, WAIT) for line in logs]
    sub = _subs_of(sim, created.id)[stalled.address]
    assert f"WARN: since {sub.generic_id} is timeout, try to cancel it" in wait_logs
    assert done.failed_node is not None and done.failed_node.name == END
    assert done.failure_log() == (
        "ERROR: [Task.SubDag.NotAllSucceed]: check sub dag succeed failed: "
        f"Sub DAG of agents: [{stalled.address}] failed, main DAG failed"
    )
    assert [a.ob_state for a in sim.agents] == [0, 0, 3]
    assert [a.under_maintenance for a in sim.agents] == [
        False,
        False,
        True,
    ]  # a DAG not FAILED cannot be passed


# ------------------------------------------------------------------------------------------------------
# 12. Transient MySQL.Error in the immediate checks, and a kill that fails (§6 items 24, 25)


async def test_mysql_error_is_a_transient_400_of_the_immediate_checks(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient
) -> None:
    message = "Error 4012 (HY000): Timeout, query has reached the maximum query timeout"
    answer = await raw.post("/__sim__/faults", json={"kind": "mysql_error", "times": 2, "message": message})
    assert answer.json() == {"ok": True}
    forced = await client.stop(stop_params(force=True, scope="SERVER", targets=[sim.agents[2].address]))
    assert forced.id  # a kill mode runs no immediate checks
    await wait_finished(client, forced.id)
    immediate = stop_params("SERVER", [sim.agents[1].address])
    for _ in range(2):
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(immediate)
        assert (caught.value.status, caught.value.err_code, caught.value.message) == (
            400,
            "MySQL.Error",
            message,
        )
    assert (await wait_finished(client, (await client.stop(immediate)).id)).succeeded


async def test_a_kill_that_fails_parks_its_sub_dag_and_the_stop_ends_not_all_succeed(
    sim: ObshellSimulator, client: ObshellClient, raw: httpx.AsyncClient
) -> None:
    stubborn = sim.agents[1]
    await raw.post("/__sim__/faults", json={"kind": "time_scale", "scale": 0.01})
    await raw.post("/__sim__/faults", json={"kind": "fail_kill", "agent": stubborn.address})
    started = time.monotonic()
    done = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    assert time.monotonic() - started >= 0.75  # 15 x 5 s, scaled by 0.01
    assert done.failed_node is not None and done.failed_node.name == END
    assert done.failure_log() == (
        "ERROR: [Task.SubDag.NotAllSucceed]: check sub dag succeed failed: "
        f"Sub DAG of agents: [{stubborn.address}] failed, main DAG failed"
    )
    assert [a.ob_state for a in sim.agents] == [0, 3, 0]  # part of the stop happened
    sub = _subs_of(sim, done.id)[stubborn.address]
    kill = sub.nodes[1]
    assert (kill.name, kill.state.value) == ("Stop observer", "FAILED")
    assert (
        kill.sub_tasks[0].logs[-1]
        == "ERROR: [OB.Cluster.AsyncOperationTimeout]: kill observer process timeout"
    )
    # Wait saw it parked at the wrong stage (2 of 3): not counted as succeeded, unlike the others.
    wait_logs = [line for logs in _task_logs(done, WAIT) for line in logs]
    others = [s for a, s in _subs_of(sim, done.id).items() if a != stubborn.address]
    assert [f"{s.generic_id} succeed" in wait_logs for s in [sub, *others]] == [False, True, True]
    assert (sub.state.value, sub.operator.value) == ("SUCCEED", "PASS")  # node 7 passed it anyway
    assert not any(a.under_maintenance for a in sim.agents)


async def test_fault_specs_are_listed(sim: ObshellSimulator) -> None:
    sim.faults.busy_sqlite(times=1)
    sim.faults.mysql_error(times=2)
    sim.faults.fail_kill(agent=sim.agents[0].address)
    kinds = [f["kind"] for f in sim.faults.describe()]
    assert kinds == ["busy_sqlite", "mysql_error", "fail_kill"]
    sim.faults.clear()
    assert sim.faults.describe() == []
    await asyncio.sleep(0)


def test_simulator_thread_offers_the_new_actions() -> None:
    from obstop.testing.obshell_sim import SimulatorThread

    config = SimulatorConfig(password=PASSWORD, zones=2, stage_seconds=0.02)
    with SimulatorThread(config) as sim:
        first, second = sim.agents
        sim.set_ob_state(first.address, 1)
        assert httpx.get(f"{first.url}/api/v1/status").json()["data"]["obState"] == 1
        sim.stall_agent(first.address)
        assert first.stalled and not first.runs_tasks
        holder = sim.hold_lock(second.address, "Upgrade agent")
        assert sim.dag_wire(holder)["name"] == "Upgrade agent" and second.under_maintenance
        sim.set_time_scale(0.5)
        assert sim.clusters[0].time_scale == 0.5
        pid = second.pid
        sim.restart_agent(second.address, down_seconds=0.01)
        assert second.pid != pid and second.serving
        old = second.address
        sim.move_agent(old)
        assert (
            second.address != old
            and httpx.get(f"{second.url}/api/v1/info").json()["data"]["port"] == second.port
        )
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{old}/api/v1/info")
        sim.reset()
        assert (first.ob_state, first.stalled, sim.clusters[0].time_scale) == (3, False, 1.0)


async def test_move_agent_through_the_control_route(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    agent = sim.agents[0]
    old = agent.address
    assert (await raw.post("/__sim__/faults", json={"kind": "move_agent", "agent": old})).json() == {
        "ok": True
    }
    await until(lambda: agent.address != old and agent.serving)
    async with ObshellClient(agent.url, PASSWORD) as client:
        assert (await client.info()).port == agent.port
