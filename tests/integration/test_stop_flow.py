"""ObshellClient against the simulator over real HTTP: stops in every scope and mode, validation errors,
locks and forcePassDag, failures, operators, listings and DAG lookups (fact sheet §3, §4, §6)."""

from __future__ import annotations

import re

import pytest

from obshell_sim_helpers import PASSWORD, V2_RELEASES, stop_params, wait_finished
from obstop.obshell import DagOperator, DagState, ObshellApiError, ObshellClient, StopParams
from obstop.testing.obshell_sim import ObshellSimulator
from obstop.testing.waiting import until

FORCE_NODES = [
    "Inform all agents to prepare to stop observer",
    "Make sure all agents are ready",
    "Advance agents to execute the task",
    "Wait for all agents to execute tasks successfully",
    "Inform all agents to end the task",
]
TERMINATE_NODES = [*FORCE_NODES[:2], "Minor freeze before stop server", *FORCE_NODES[2:]]
IMMEDIATE_NODES = [*FORCE_NODES[:4], "Execute stop sql", FORCE_NODES[4]]


def _targets(sim: ObshellSimulator, scope: str) -> list[str]:
    agents = sim.clusters[0].agents
    return {"GLOBAL": [], "ZONE": ["zone3"], "SERVER": [agents[2].address]}[scope]


@pytest.mark.parametrize("obshell_version", V2_RELEASES)  # every release ObshellClient speaks to (§7)
@pytest.mark.parametrize(
    ("scope", "mode", "nodes"),
    [
        ("GLOBAL", "force", FORCE_NODES),
        ("GLOBAL", "terminate", TERMINATE_NODES),
        ("ZONE", "force", FORCE_NODES),
        ("ZONE", "terminate", TERMINATE_NODES),
        ("ZONE", "immediate", IMMEDIATE_NODES),
        ("SERVER", "force", FORCE_NODES),
        ("SERVER", "terminate", TERMINATE_NODES),
        ("SERVER", "immediate", IMMEDIATE_NODES),
    ],
)
async def test_every_scope_and_mode_runs_to_succeed(
    sim: ObshellSimulator, client: ObshellClient, scope: str, mode: str, nodes: list[str]
) -> None:
    params = stop_params(scope, _targets(sim, scope), force=mode == "force", terminate=mode == "terminate")
    created = await client.stop(params)
    agent = sim.clusters[0].agents[0]
    assert created.name == "Stop OB" and created.nodes is None
    assert (created.state, created.operator, created.stage) == (DagState.READY, DagOperator.RUN, 1)
    assert created.max_stage == len(nodes) and created.id.startswith("2")
    assert created.id == f"2{2130706433:010d}{agent.port:05d}{created.dag_id}"

    done = await wait_finished(client, created.id)
    assert (done.state, done.operator, done.stage) == (DagState.SUCCEED, DagOperator.RUN, len(nodes))
    assert [node.name for node in done.nodes or ()] == nodes
    assert all(node.state is DagState.SUCCEED for node in done.nodes or ())
    sub_dags = (done.additional_data or {})["sub_dags"]
    assert set(sub_dags) == {a.address for a in sim.clusters[0].agents}  # every agent, not just targets

    killed = {a.address for a in sim.clusters[0].agents if a.ob_state == 0}
    expected = {"GLOBAL": set(sub_dags), "ZONE": {sim.clusters[0].agents[2].address}}.get(
        scope, {sim.clusters[0].agents[2].address}
    )
    assert killed == (set() if mode == "immediate" else expected)
    assert not any(a.under_maintenance for a in sim.clusters[0].agents)  # sub-DAGs passed at the end
    for sub_id in sub_dags.values():
        sub = await client.get_dag(sub_id)
        assert (sub.name, sub.state, sub.operator) == ("Stop observer", DagState.SUCCEED, DagOperator.PASS)
        assert sub.additional_data == {"main_dag_id": created.id}


async def test_show_details_false_gives_no_nodes(client: ObshellClient) -> None:
    created = await client.stop(stop_params(force=True))
    brief = await client.get_dag(created.id, details=False)
    assert brief.nodes is None
    assert (await client.get_dag(created.id)).nodes is not None


async def test_status_reflects_lock_while_sub_dags_wait(sim: ObshellSimulator, client: ObshellClient) -> None:
    created = await client.stop(stop_params(force=True))
    await until(lambda: sim.dag(created.id).stage >= 2)
    status = await client.status()
    assert status.under_maintenance is True and status.ob_state == 3
    await wait_finished(client, created.id)
    status = await client.status()
    assert status.under_maintenance is False and status.ob_state == 0


@pytest.mark.parametrize(
    ("body", "err_code"),
    [
        (stop_params("ZONE"), "Common.IllegalArgument"),
        (stop_params("ZONE", ["zone9"], force=True), "OB.Zone.NotExist"),
        (stop_params("SERVER", ["10.0.0.1:2886"], force=True), "Agent.NotExist"),
        (stop_params("SERVER", ["not-an-ip:2886"], force=True), "Common.InvalidIp"),
        (stop_params("SERVER", ["127.0.0.1:99999"], force=True), "Common.InvalidPort"),
        (stop_params("GLOBAL"), "OB.Cluster.ForceStopOrTerminateRequired"),
        (stop_params("GLOBAL", force=True, terminate=True), "OB.Cluster.StopModeConflict"),
        (stop_params("ZONE", ["zone1", "zone2"]), "OB.Server.StoppedInMultiZone"),
    ],
)
async def test_validation_errors(client: ObshellClient, body: StopParams, err_code: str) -> None:
    with pytest.raises(ObshellApiError) as caught:
        await client.stop(body)
    assert (caught.value.status, caught.value.err_code) == (400, err_code)
    assert not caught.value.transient


async def test_validation_runs_in_the_servers_order(sim: ObshellSimulator, client: ObshellClient) -> None:
    """A bad scope wins over a mode conflict; a mode conflict wins over the local observer being down."""
    sim.set_observer(sim.clusters[0].agents[0].address, running=False)
    with pytest.raises(ObshellApiError, match=re.escape("OB.Zone.NotExist")):
        await client.stop(stop_params("ZONE", ["nope"], force=True, terminate=True))
    with pytest.raises(ObshellApiError, match=re.escape("OB.Cluster.StopModeConflict")):
        await client.stop(
            stop_params("SERVER", [sim.clusters[0].agents[1].address], force=True, terminate=True)
        )
    assert [r.error for r in sim.stops] == ["OB.Zone.NotExist", "OB.Cluster.StopModeConflict"]
    assert sim.landed_stops() == []


async def test_immediate_zone_stop_needs_a_majority_of_zones() -> None:
    from obstop.testing.obshell_sim import SimulatorConfig

    config = SimulatorConfig(password=PASSWORD, zones=2, stage_seconds=0.02)
    async with (
        ObshellSimulator(config) as two_zones,
        ObshellClient(two_zones.agents[0].url, PASSWORD) as client,
    ):
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(stop_params("ZONE", ["zone2"]))
    assert caught.value.err_code == "OB.Cluster.Tenant.Replica.Invalid"
    assert caught.value.message == "err.ob.cluster.tenant.replica.invalid"


async def test_bad_json_types_are_bind_errors(sim: ObshellSimulator, client: ObshellClient) -> None:
    with pytest.raises(ObshellApiError) as caught:
        await client._call("POST", "/api/v1/ob/stop", body={"scope": {"type": "GLOBAL"}, "force": "yes"})
    assert (caught.value.status, caught.value.err_code) == (400, "Common.BindJsonFailed")
    with pytest.raises(ObshellApiError) as caught:
        await client._call("POST", "/api/v1/ob/stop", body={"force": True})  # no scope: type ""
    assert caught.value.err_code == "OB.Cluster.Scope.Invalid"
    assert caught.value.message == "Scope '' is invalid"


async def test_force_stop_of_a_stopped_cluster_succeeds_but_other_modes_are_refused(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    first = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    assert first.succeeded and all(a.ob_state == 0 for a in sim.agents)

    again = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    assert again.succeeded
    wait_node = next(n for n in again.nodes or () if n.name.startswith("Wait for all agents"))
    assert wait_node.state is DagState.SUCCEED
    kill_logs = [
        line
        for agent in sim.agents
        for dag in agent.dags.values()
        if dag.name == "Stop observer" and dag.main_dag_id == again.id
        for node in dag.nodes
        for task in node.sub_tasks
        for line in task.logs or ()
    ]
    assert "Observer is not running" in kill_logs

    for params in (stop_params(terminate=True), stop_params("ZONE", ["zone1"], force=True)):
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(params)
        assert (caught.value.status, caught.value.err_code) == (400, "OB.Cluster.ForceStopRequired")
    # Auth still works with the observers down (the password is cached by the agent).
    assert (await client.status()).ob_state == 0


async def test_concurrent_stop_fails_at_node_2_and_force_pass_dag_clears_the_locks(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    agents = sim.clusters[0].agents
    sim.faults.fail_stop("Wait for all agents to execute tasks successfully", "Sim.Stuck", "agent stuck")
    first = await client.stop(stop_params(force=True))
    failed_first = await wait_finished(client, first.id)
    assert failed_first.state is DagState.FAILED
    assert failed_first.failure_log() == "ERROR: [Sim.Stuck]: agent stuck"
    assert all(a.under_maintenance for a in agents)  # its sub-DAGs are stranded, holding the locks

    second = await client.stop(stop_params(force=True))  # HTTP 200 even though every agent is locked
    failed = await wait_finished(client, second.id)
    assert failed.state is DagState.FAILED and failed.operator is DagOperator.RUN
    assert failed.failed_node is not None and failed.failed_node.name == "Make sure all agents are ready"
    everyone = " ".join(a.address for a in agents)
    assert failed.failure_log() == (
        "ERROR: [Task.SubDag.NotAllCreated]: check sub dag created failed: "
        f"Sub DAG of agents: [{everyone}] not created, main DAG failed"
    )
    # The holder is named only in node 1's sub-task logs (§3.4), the receiving agent's first.
    inform = next(n for n in failed.nodes or () if n.name == FORCE_NODES[0])
    assert (inform.sub_tasks or [])[0].task_logs == [
        f"Inform {agents[0].address} to create the task",
        f"ERROR: [Agent.UnderMaintenanceDag]: {agents[0].address} is under maintenance by DAG "
        f"[{first.id}:Stop observer]",
    ]

    third = await client.stop(stop_params(force=True, force_pass_dag=[first.id]))
    done = await wait_finished(client, third.id)
    assert done.succeeded
    assert not any(a.under_maintenance for a in agents)
    assert len(sim.landed_stops()) == 3


async def test_second_stop_while_the_first_runs(sim: ObshellSimulator, client: ObshellClient) -> None:
    first = await client.stop(stop_params(force=True))
    await until(lambda: sim.dag(first.id).stage >= 2)
    second = await client.stop(stop_params(force=True))
    assert (await wait_finished(client, second.id)).failure_log() is not None
    assert (await wait_finished(client, first.id)).succeeded


async def test_injected_failure_reports_node_and_last_log_line(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    sim.faults.fail_stop(4, "OB.Something.Broke", "it broke")
    created = await client.stop(stop_params(force=True))
    dag = await wait_finished(client, created.id)
    assert (dag.state, dag.stage) == (DagState.FAILED, 4)
    # Wait does not pass the sub-DAGs when it fails (only nodes 2, 4, 6 and 7 do, §3.4).
    assert dag.failed_node is not None and dag.failed_node.name == FORCE_NODES[3]
    assert dag.failure_log() == "ERROR: [OB.Something.Broke]: it broke"
    # A failed main DAG is finished: gone from the unfinished lists, while its parked sub-DAGs stay.
    assert created.id not in {d.id for d in await client.unfinished_dags()}
    listed = await client.agent_unfinished_dags()
    assert [d.name for d in listed] == ["Stop observer"]
    assert listed[0].state is DagState.FAILED


async def test_running_main_dag_is_listed_as_unfinished(sim: ObshellSimulator) -> None:
    agents = sim.clusters[0].agents
    async with (
        ObshellClient(agents[0].url, PASSWORD) as first,
        ObshellClient(agents[1].url, PASSWORD) as other,
    ):
        created = await first.stop(stop_params(force=True))
        assert created.id in {d.id for d in await first.agent_unfinished_dags()}
        assert created.id in {d.id for d in await other.unfinished_dags()}  # cluster-wide, from any agent
        assert created.id not in {d.id for d in await other.agent_unfinished_dags()}
        await wait_finished(first, created.id)
        assert await first.unfinished_dags() == []


async def test_cancel_running_dag_then_operators_are_refused(client: ObshellClient) -> None:
    created = await client.stop(stop_params(force=True))
    await client.cancel_dag(created.id)
    dag = await wait_finished(client, created.id)
    assert (dag.state, dag.operator) == (DagState.FAILED, DagOperator.CANCEL)
    with pytest.raises(ObshellApiError, match=re.escape("Task.Dag.Operator.CancelFinishedDag")):
        await client.cancel_dag(created.id)
    for operator, code in [
        (DagOperator.RETRY, "Task.Dag.Operator.RetryNotAllowed"),
        (DagOperator.ROLLBACK, "Task.Dag.Operator.RollbackNotAllowed"),
        (DagOperator.PASS, "Task.Dag.Operator.PassNotAllowed"),
    ]:
        with pytest.raises(ObshellApiError) as caught:
            await client.operate_dag(created.id, operator)
        assert (caught.value.status, caught.value.err_code) == (400, code)


async def test_operators_on_a_succeeded_dag(client: ObshellClient) -> None:
    done = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    with pytest.raises(ObshellApiError, match=re.escape("CancelFinishedDag")):
        await client.cancel_dag(done.id)
    with pytest.raises(ObshellApiError, match=re.escape("Task.Dag.Operator.RetryNotFailedDag")):
        await client.operate_dag(done.id, DagOperator.RETRY)
    with pytest.raises(ObshellApiError, match=re.escape("Task.Dag.Operator.NotSupport")):
        await client._call("POST", f"/api/v1/task/dag/{done.id}", body={"operator": "JUMP"})


async def test_failed_minor_freeze_can_be_retried(sim: ObshellSimulator, client: ObshellClient) -> None:
    sim.faults.fail_stop("Minor freeze before stop server", "OB.MinorFreeze.Timeout", "freeze timed out")
    created = await client.stop(stop_params(terminate=True))
    failed = await wait_finished(client, created.id)
    assert failed.failed_node is not None and failed.failed_node.name == "Minor freeze before stop server"
    await client._call("POST", f"/api/v1/task/dag/{created.id}", body={"operator": "retry"})  # any case
    done = await wait_finished(client, created.id)
    # RETRY is written on the node only; the DAG operator stays RUN (§4.3).
    assert (done.state, done.operator) == (DagState.SUCCEED, DagOperator.RUN)


@pytest.mark.parametrize(
    ("generic_id", "status", "err_code"),
    [
        ("2213070643302886", 400, "Task.GenericID.Invalid"),  # too short for a `2` id
        ("9123", 400, "Task.GenericID.Invalid"),
        ("11", 404, "Task.NotFound"),  # a cluster DAG: the simulator has none
        ("22130706433{port}999", 404, "Task.NotFound"),
        ("22130706433{port}0001", 404, "Task.NotFound"),  # re-encodes differently: "dag id not match"
    ],
)
async def test_dag_id_validation(
    sim: ObshellSimulator, client: ObshellClient, generic_id: str, status: int, err_code: str
) -> None:
    generic_id = generic_id.format(port=f"{sim.agents[0].port:05d}")
    with pytest.raises(ObshellApiError) as caught:
        await client._call("GET", f"/api/v1/task/dag/{generic_id}?show_details=true")
    assert (caught.value.status, caught.value.err_code) == (status, err_code)


async def test_any_agent_answers_for_another_agents_dag_unless_the_owner_is_down(
    sim: ObshellSimulator,
) -> None:
    owner, other = sim.clusters[0].agents[:2]
    async with (
        ObshellClient(owner.url, PASSWORD) as owner_client,
        ObshellClient(other.url, PASSWORD) as client,
    ):
        created = await owner_client.stop(stop_params(force=True))
        assert (await client.get_dag(created.id)).id == created.id
        await sim.agent_down(owner.address)
        with pytest.raises(ObshellApiError) as caught:
            await client.get_dag(created.id)
        assert caught.value.status == 500 and caught.value.transient


async def test_agent_restart_keeps_key_and_state(sim: ObshellSimulator, client: ObshellClient) -> None:
    from obstop.obshell import ObshellTransportError

    agent = sim.clusters[0].agents[0]
    created = await client.stop(stop_params(force=True))
    await sim.agent_down(agent.address)
    with pytest.raises(ObshellTransportError) as caught:
        await client.get_dag(created.id)
    assert caught.value.maybe_delivered is False
    stage_while_down = sim.dag(created.id).stage
    await sim.agent_up(agent.address)
    # Same key: the client's cached key still works, and the DAG resumes where it was.
    dag = await wait_finished(client, created.id)
    assert dag.succeeded and dag.stage >= stage_while_down


async def test_agent_history_lists_finished_dags_and_server_time_is_the_agents_clock(
    sim: ObshellSimulator, client: ObshellClient
) -> None:
    before = await client.server_time()
    done = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
    history = await client.agent_dags()
    assert done.id in {d.id for d in history}
    assert {d.name for d in history} == {"Stop OB", "Stop observer"}
    assert await client.agent_unfinished_dags() == []
    assert before.tzinfo is not None and before <= await client.server_time()
