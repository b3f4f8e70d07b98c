"""The simulated cluster: agents' state, stop validation (fact sheet §3.2) and the stop DAG engine (§3.4, §3.5).

Everything here runs on the simulator's event loop and mutates state synchronously, so no two requests
ever see a half-made change. The only timing is the DAG driver: one stage every `stage_seconds`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from obstop.obshell import ids
from obstop.obshell.errors import InvalidGenericId
from obstop.testing.obshell_sim import clock
from obstop.testing.obshell_sim import dags as d
from obstop.testing.obshell_sim.faults import StopFailure
from obstop.testing.obshell_sim.releases import NEWEST_RELEASE, Release
from obstop.testing.obshell_sim.wire import ApiError, api_error

IDENTITY = "CLUSTER AGENT"
# Identities an agent can be given (meta/agent.go, §5). FOLLOWER is left out: it forwards to its MASTER (§2.3).
SIMULATED_IDENTITIES = (
    IDENTITY,
    "SINGLE",
    "MASTER",
    "TAKE OVER MASTER",
    "TAKE OVER FOLLOWER",
    "SCALING OUT",
    "SCALING IN",
    "UNIDENTIFIED",
)
DEFAULT_AGENT_PORT = 2886
OB_STATE_AVAILABLE = 3
OB_STATE_DOWN = 0


def _now() -> datetime:
    return clock.now()


@dataclass(eq=False)
class SimAgent:
    """One simulated obshell agent and the observer beside it."""

    ip: str
    port: int
    zone: str
    key: rsa.RSAPrivateKey = field(repr=False)
    cluster: SimCluster = field(repr=False)
    observer_running: bool = True
    service_stopped: bool = False  # ALTER SYSTEM STOP SERVER/ZONE ran (immediate mode)
    serving: bool = False  # listening for HTTP
    dags: dict[int, d.Dag] = field(default_factory=dict, repr=False)
    # Load as the agent saw it: arrival times (time.time()) of API calls, and the most served at once.
    request_times: list[float] = field(default_factory=list, repr=False)
    in_flight: int = 0
    peak_in_flight: int = 0
    pid: int = field(default_factory=lambda: 10_000 + int.from_bytes(os.urandom(2), "big"))
    started_at_ns: int = field(default_factory=time.time_ns)
    url: str = ""  # set once listening: http(s)://ip:port
    identity: str = IDENTITY  # meta.OCS_AGENT identity; only CLUSTER AGENT may stop (§3.2 step 3)

    def __post_init__(self) -> None:
        self.ids = d.IdAllocator(self.ip, self.port)

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def ob_state(self) -> int:
        return OB_STATE_AVAILABLE if self.observer_running else OB_STATE_DOWN

    @property
    def lock_holder(self) -> d.Dag | None:
        """The unfinished maintenance DAG (a start/stop sub-DAG) holding this agent's lock, if any."""
        return next(
            (
                dag
                for dag in self.dags.values()
                if dag.maintenance_type == d.MAINTENANCE_GLOBAL and not dag.finished
            ),
            None,
        )

    @property
    def under_maintenance(self) -> bool:
        return self.lock_holder is not None

    def new_dag(self, name: str, node_names: list[str], **kwargs: Any) -> d.Dag:
        dag_id, generic_id = self.ids.allocate("dag")
        nodes = []
        for node_name in node_names:
            node_id, node_generic_id = self.ids.allocate("node")
            nodes.append(d.Node(node_generic_id, node_id, node_name))
        dag = d.Dag(generic_id, dag_id, name, nodes, **kwargs)
        self.dags[dag_id] = dag
        return dag

    def new_task(self, node: d.Node, executor: SimAgent, name: str | None = None) -> d.SubTask:
        task_id, generic_id = self.ids.allocate("task")
        task = d.SubTask(generic_id, task_id, name or node.name, (executor.ip, executor.port))
        node.sub_tasks.append(task)
        return task

    def status_wire(self, release: Release) -> dict[str, Any]:
        return {
            "agent": {"ip": self.ip, "port": self.port, "identity": self.identity},
            "state": 2,
            "version": release.status_version,  # "<version>-<release>" (§7)
            "pid": self.pid,
            "startAt": self.started_at_ns,
            "port": self.port,
            "obState": self.ob_state,
            "sqlPort": 2881,
            "underMaintenance": self.under_maintenance,
        }

    def info_wire(self, release: Release) -> dict[str, Any]:
        # The plain four-part version; later fields only from the release that added them (§5, §7).
        info: dict[str, Any] = {
            "ip": self.ip,
            "port": self.port,
            "zone": self.zone,
            "identity": self.identity,
            "version": release.version,
            "pid": self.pid,
            "state": 2,
            "startAt": self.started_at_ns,
            "homePath": "/home/admin/oceanbase",
        }
        if release.info_ob_version:
            info["obVersion"] = release.version
        if release.info_architecture:
            info["architecture"] = "x86_64"
        if release.info_security:
            info["isObproxyAgent"] = False
            info["security"] = False
        if release.supported_auth:
            info["supportedAuth"] = ["v2"]
        return info


@dataclass
class StopRequest:
    """A validated POST /api/v1/ob/stop body."""

    scope_type: str
    targets: list[str]
    force: bool
    terminate: bool
    force_pass_dag: list[str]
    target_agents: list[SimAgent] = field(repr=False, default_factory=list)

    @property
    def kills(self) -> bool:
        return self.force or self.terminate

    def to_wire(self) -> dict[str, Any]:
        return {
            "scope": {"type": self.scope_type, "target": list(self.targets)},
            "force": self.force,
            "terminate": self.terminate,
            "forcePassDag": {"id": list(self.force_pass_dag)},
        }


class _NodeFailed(Exception):
    def __init__(self, err_code: str, message: str) -> None:
        super().__init__(err_code)
        self.err_code = err_code
        self.message = message


@dataclass(eq=False)
class _StopRun:
    """Bookkeeping of one main stop DAG: what it was asked, where it runs, its sub-DAGs, its driver."""

    dag: d.Dag
    owner: SimAgent
    request: StopRequest
    failure: StopFailure | None
    sub_dags: dict[str, d.Dag] = field(default_factory=dict)  # agent address → sub-DAG
    driver: asyncio.Task[None] | None = None


class SimCluster:
    """One OceanBase cluster: its agents (zone1..zoneN, M agents each), password and running stop DAGs."""

    def __init__(
        self,
        name: str,
        password: str,
        stage_seconds: float,
        *,
        node_seconds: Mapping[str, float] | None = None,
        stage_jitter: float = 0.0,
        rng: random.Random | None = None,
        release: Release = NEWEST_RELEASE,
    ) -> None:
        self.name = name
        self.release = release
        self.agents: list[SimAgent] = []
        self._password = password
        self.stage_seconds = stage_seconds
        self.node_seconds = dict(node_seconds or {})
        self.stage_jitter = stage_jitter
        self._rng = rng or random.Random()
        self._runs: dict[str, _StopRun] = {}

    def __repr__(self) -> str:
        return f"SimCluster({self.name!r}, agents={[a.address for a in self.agents]})"

    def password_matches(self, candidate: str) -> bool:
        return candidate == self._password

    @property
    def zones(self) -> list[str]:
        return list(dict.fromkeys(agent.zone for agent in self.agents))

    def agent_at(self, ip: str, port: int) -> SimAgent | None:
        try:
            wanted = ipaddress.ip_address(ip)
        except ValueError:
            return None
        return next(
            (a for a in self.agents if ipaddress.ip_address(a.ip) == wanted and a.port == port),
            None,
        )

    # ----------------------------------------------------------------------------------------------
    # Stop: validation, in the server's order (§3.2)

    def validate_stop(self, body: Any, receiver: SimAgent) -> StopRequest:
        request = _bind_stop(body)
        kind = request.scope_type
        if kind not in ("GLOBAL", "ZONE", "SERVER"):
            raise api_error("OB.Cluster.Scope.Invalid", kind)
        if kind != "GLOBAL" and not request.targets:
            raise api_error(
                "Common.IllegalArgument",
                "target",
                "target is empty",
                legacy=f"{kind.lower()} scope must have target",  # before 4.3.1.0 (info.go IsValidScope)
            )
        if kind == "ZONE":
            for zone in request.targets:
                if zone not in self.zones:
                    raise api_error("OB.Zone.NotExist", zone)
            request.target_agents = [a for a in self.agents if a.zone in request.targets]
        elif kind == "SERVER":
            for target in request.targets:
                ip, port = _parse_agent_address(target)
                agent = self.agent_at(ip, port)
                if agent is None:
                    raise api_error("Agent.NotExist", target)
                if agent not in request.target_agents:
                    request.target_agents.append(agent)
        else:
            request.target_agents = list(self.agents)
        if receiver.identity != IDENTITY:
            raise api_error(
                "Agent.Identify.NotSupportOperation", receiver.address, receiver.identity, IDENTITY
            )
        if kind == "GLOBAL" and not request.kills:
            raise api_error("OB.Cluster.ForceStopOrTerminateRequired")
        if request.force and request.terminate:
            raise api_error("OB.Cluster.StopModeConflict")
        # ZONE even with force, and the immediate checks, only from 4.4.1.0 (§3.2, §7 row "stop checks").
        strict = self.release.strict_stop_checks
        if (not request.force or (strict and kind == "ZONE")) and not receiver.observer_running:
            raise api_error("OB.Cluster.ForceStopRequired")
        if strict and not request.kills:
            self._check_immediate(request)
        return request

    def _check_immediate(self, request: StopRequest) -> None:
        zones = {agent.zone for agent in request.target_agents}
        stopped_elsewhere = any(a.service_stopped and a.zone not in zones for a in self.agents)
        if len(zones) > 1 or stopped_elsewhere:
            raise api_error("OB.Server.StoppedInMultiZone")
        # Stopping a whole zone must leave a majority of zones (of every log stream's replicas).
        if request.scope_type == "ZONE" and 2 * (len(self.zones) - 1) <= len(self.zones):
            raise api_error("OB.Cluster.Tenant.Replica.Invalid")

    # ----------------------------------------------------------------------------------------------
    # Stop: the DAG

    def create_stop(
        self,
        receiver: SimAgent,
        request: StopRequest,
        failure_for: Callable[[list[str]], StopFailure | None],
    ) -> d.Dag:
        names = d.stop_node_names(force=request.force, terminate=request.terminate)
        dag = receiver.new_dag(d.STOP_DAG, names, maintenance_type=d.MAINTENANCE_NONE)
        dag.params = request.to_wire()
        run = _StopRun(dag, receiver, request, failure_for(names))
        self._runs[dag.generic_id] = run
        self._start_driver(run)
        return dag

    def _start_driver(self, run: _StopRun) -> None:
        run.driver = asyncio.get_running_loop().create_task(
            self._drive(run), name=f"sim-dag-{run.dag.generic_id}"
        )

    def stage_duration(self, dag: d.Dag) -> float:
        """How long the DAG's next step takes: its current node's time (or `stage_seconds`), with jitter.

        A READY DAG waits `node_seconds["READY"]` (default `stage_seconds`) for the engine to pick it up.
        """
        key = "READY" if dag.state is d.State.READY else dag.current.name
        base = self.node_seconds.get(key, self.stage_seconds)
        if self.stage_jitter:
            base *= self._rng.uniform(1 - self.stage_jitter, 1 + self.stage_jitter)
        return max(0.0, base)

    async def _drive(self, run: _StopRun) -> None:
        while not run.dag.terminal:
            await asyncio.sleep(self.stage_duration(run.dag))
            if run.owner.serving:  # a stopped agent does not run its DAGs; they resume when it is back
                self.tick(run)

    def tick(self, run: _StopRun) -> None:
        """Advance one main stop DAG by one step."""
        dag = run.dag
        if dag.terminal:
            return
        if dag.operator is d.Operator.CANCEL:
            node = dag.current
            node.state, node.operator, node.end_time = d.State.FAILED, d.Operator.CANCEL, _now()
            self._finish(dag, d.State.FAILED)
            return
        if dag.state is d.State.READY:
            dag.state = d.State.RUNNING
            self._begin_node(run)
            return
        node = dag.current
        try:
            if run.failure is not None and run.failure.hits(dag.stage, node.name):
                failure, run.failure = run.failure, None
                raise _NodeFailed(failure.err_code, failure.message)
            self._execute(run, node)
        except _NodeFailed as exc:
            task = node.sub_tasks[-1] if node.sub_tasks else run.owner.new_task(node, run.owner)
            for other in node.sub_tasks:
                other.state, other.end_time = d.State.SUCCEED, _now()
            task.state = d.State.FAILED
            task.log(self.release.error_line(exc.err_code, exc.message))
            node.state, node.end_time = d.State.FAILED, _now()
            self._finish(dag, d.State.FAILED)
            return
        for task in node.sub_tasks:
            task.state, task.end_time = d.State.SUCCEED, _now()
        node.state, node.end_time = d.State.SUCCEED, _now()
        if dag.stage >= dag.max_stage:
            self._finish(dag, d.State.SUCCEED)
            return
        dag.stage += 1
        self._begin_node(run)

    def _begin_node(self, run: _StopRun) -> None:
        node = run.dag.current
        node.state, node.operator, node.start_time = d.State.RUNNING, run.dag.operator, _now()
        executors = self.agents if node.name in (d.NODE_INFORM, d.NODE_WAIT) else [run.owner]
        if not node.sub_tasks:
            for agent in executors:
                run.owner.new_task(node, run.owner, node.name).additional_data = (
                    {"agent": agent.address} if len(executors) > 1 else None
                )
        for task in node.sub_tasks:
            task.state, task.start_time, task.execute_times = d.State.RUNNING, _now(), task.execute_times + 1

    @staticmethod
    def _finish(dag: d.Dag, state: d.State) -> None:
        dag.state, dag.end_time, dag.finished = state, _now(), True
        dag.terminal_at = time.time()

    def _execute(self, run: _StopRun, node: d.Node) -> None:
        step = {
            d.NODE_INFORM: self._inform,
            d.NODE_READY: self._ensure_ready,
            d.NODE_MINOR_FREEZE: self._minor_freeze,
            d.NODE_ADVANCE: self._advance,
            d.NODE_WAIT: self._wait,
            d.NODE_STOP_SQL: self._stop_sql,
            d.NODE_END: self._end,
        }[node.name]
        step(run, node)

    def _tasks_by_agent(self, node: d.Node) -> list[tuple[SimAgent, d.SubTask]]:
        return list(zip(self.agents, node.sub_tasks, strict=False))

    def _inform(self, run: _StopRun, node: d.Node) -> None:
        for agent, task in self._tasks_by_agent(node):
            task.log(f"create sub dag on {agent.address}")
            try:
                sub = self._create_sub_dag(run, agent)
            except ApiError as exc:
                # Creating a sub-DAG is retried and only logged; node 2 notices what is missing.
                task.log(f"WARN: create sub dag on {agent.address} failed: [{exc.err_code}]: {exc.message}")
                continue
            run.sub_dags[agent.address] = sub
            task.additional_data = {"sub_dags": {agent.address: sub.generic_id}}
            task.log(f"sub dag {sub.generic_id} created on {agent.address}")
        node.additional_data = {"sub_dags": {addr: sub.generic_id for addr, sub in run.sub_dags.items()}}

    def _create_sub_dag(self, run: _StopRun, agent: SimAgent) -> d.Dag:
        if not agent.serving:
            raise api_error("Common.Unexpected", f"dial tcp {agent.address}: connect: connection refused")
        holder = agent.lock_holder
        if holder is not None:
            main_id = holder.main_dag_id or ""
            if main_id and main_id in run.request.force_pass_dag:
                self.pass_sub_dag(holder)
            else:
                raise ApiError(
                    500,
                    "Agent.UnderMaintenanceDag",
                    f"{agent.address} is under maintenance by DAG [{main_id}:{holder.name}]",
                )
        kill = agent in run.request.target_agents and run.request.kills
        names = [d.SUB_NODE_PREPARE, *([d.SUB_NODE_KILL] if kill else []), d.SUB_NODE_WAIT_END]
        sub = agent.new_dag(
            d.SUB_STOP_DAG,
            names,
            maintenance_type=d.MAINTENANCE_GLOBAL,
            additional_data={"main_dag_id": run.dag.generic_id},
        )
        self._park(agent, sub, "wait operator to advance")
        return sub

    def _park(self, agent: SimAgent, sub: d.Dag, line: str) -> None:
        """A sub-DAG waits for the main DAG by failing its current node on purpose (logged as info)."""
        node = sub.current
        for earlier in sub.nodes[: sub.stage - 1]:
            if earlier.state is not d.State.SUCCEED:
                earlier.state, earlier.end_time = d.State.SUCCEED, _now()
        task = node.sub_tasks[0] if node.sub_tasks else agent.new_task(node, agent)
        task.state, task.end_time = d.State.FAILED, _now()
        task.execute_times += 1
        task.log(line)
        node.state, node.end_time = d.State.FAILED, _now()
        sub.state, sub.end_time = d.State.FAILED, _now()

    def _ensure_ready(self, run: _StopRun, node: d.Node) -> None:
        missing = [a for a in self.agents if a.address not in run.sub_dags]
        task = node.sub_tasks[0]
        task.log("check all sub dags are ready")
        if not missing:
            return
        reasons = []
        for agent in missing:
            holder = agent.lock_holder if agent.serving else None
            if holder is not None:
                reasons.append(
                    f"{agent.address} is under maintenance by DAG [{holder.main_dag_id or ''}:{holder.name}]"
                )
            else:
                reasons.append(f"{agent.address} is unreachable")
        for sub in run.sub_dags.values():
            self.pass_sub_dag(sub)
        addresses = ", ".join(a.address for a in missing)
        raise _NodeFailed(
            "Task.SubDag.NotAllCreated",
            f"Sub DAG of agents: [{addresses}] not created ({'; '.join(reasons)}), main DAG failed",
        )

    def _minor_freeze(self, run: _StopRun, node: d.Node) -> None:
        node.sub_tasks[0].log("ALTER SYSTEM MINOR FREEZE")
        node.sub_tasks[0].log("minor freeze finished")

    def _advance(self, run: _StopRun, node: d.Node) -> None:
        for address, sub in run.sub_dags.items():
            node.sub_tasks[0].log(f"advance sub dag {sub.generic_id} on {address}")
            sub.state, sub.operator, sub.stage = d.State.RUNNING, d.Operator.RETRY, 2
            sub.current.state = d.State.RUNNING

    def _wait(self, run: _StopRun, node: d.Node) -> None:
        for agent, task in self._tasks_by_agent(node):
            sub = run.sub_dags.get(agent.address)
            if sub is None:
                continue
            if sub.current.name == d.SUB_NODE_KILL:
                kill_task = agent.new_task(sub.current, agent)
                if agent.observer_running:
                    kill_task.log(f"kill observer process {agent.pid + 1}")
                    agent.observer_running = False
                else:
                    kill_task.log("Observer is not running")
                kill_task.state, kill_task.execute_times = d.State.SUCCEED, 1
                sub.current.state, sub.current.end_time = d.State.SUCCEED, _now()
                sub.stage += 1
            self._park(agent, sub, "wait for the main DAG to end the task")
            task.log(f"sub dag {sub.generic_id} on {agent.address} reached stage {sub.stage}")

    def _stop_sql(self, run: _StopRun, node: d.Node) -> None:
        task = node.sub_tasks[0]
        if not run.owner.observer_running:
            task.log("observer is not running, skip")
            return
        if run.request.scope_type == "ZONE":
            for zone in run.request.targets:
                task.log(f"ALTER SYSTEM STOP ZONE {zone}")
        else:
            for agent in run.request.target_agents:
                task.log(f"alter system stop server '{agent.ip}:2882'")
        for agent in run.request.target_agents:
            agent.service_stopped = True

    def _end(self, run: _StopRun, node: d.Node) -> None:
        for address, sub in run.sub_dags.items():
            node.sub_tasks[0].log(f"pass sub dag {sub.generic_id} on {address}")
            self.pass_sub_dag(sub)

    @staticmethod
    def pass_sub_dag(sub: d.Dag) -> None:
        sub.state, sub.operator, sub.end_time, sub.finished = d.State.SUCCEED, d.Operator.PASS, _now(), True
        sub.stage = sub.max_stage
        sub.terminal_at = time.time()

    # ----------------------------------------------------------------------------------------------
    # DAG lookup and operators (§4.3, §4.5)

    def resolve(self, text: str, receiver: SimAgent) -> tuple[SimAgent, d.Dag]:
        """Find the DAG a generic id names, as `receiver` would (forwarding to its owner)."""
        try:
            generic = ids.decode(text)
        except InvalidGenericId:
            raise api_error("Task.GenericID.Invalid", text) from None
        if generic.kind not in (ids.IdKind.AGENT_V4, ids.IdKind.AGENT_V6) or generic.ip is None:
            raise api_error("Task.NotFound", "record not found")
        owner = self.agent_at(generic.ip, generic.port or 0)
        if owner is None or (owner is not receiver and not owner.serving):
            raise api_error(
                "Common.Unexpected",
                f"forward request to {generic.agent} failed: dial tcp {generic.agent}: connect: connection refused",
            )
        dag = owner.dags.get(generic.local_id)
        if dag is None:
            raise api_error("Task.NotFound", "record not found")
        if dag.generic_id != text:
            raise api_error("Task.NotFound", "dag id not match")
        return owner, dag

    def operate(self, dag: d.Dag, operator_text: Any) -> None:
        operator = str(operator_text).upper() if isinstance(operator_text, str) else ""
        if operator not in ("RETRY", "ROLLBACK", "CANCEL", "PASS"):
            raise api_error("Task.Dag.Operator.NotSupport", operator_text)
        run = self._runs.get(dag.generic_id)
        if operator == "CANCEL":
            if dag.terminal and (run is not None or dag.state is d.State.SUCCEED):
                raise api_error("Task.Dag.Operator.CancelFinishedDag")
            dag.operator = d.Operator.CANCEL
            dag.reset_times()
            if run is None:  # a parked sub-DAG: cancelled at once, still holding its lock
                dag.state = d.State.FAILED
            else:
                dag.state = d.State.READY
            return
        if dag.state is not d.State.FAILED:
            raise api_error(f"Task.Dag.Operator.{operator.capitalize()}NotFailedDag")
        failed = next((node for node in dag.nodes if node.state is d.State.FAILED), dag.current)
        if run is None:
            if operator == "PASS":
                self.pass_sub_dag(dag)
                return
            raise api_error(f"Task.Dag.Operator.{operator.capitalize()}NotAllowed", failed.name)
        # Main stop DAGs: only the minor freeze can be retried; nothing can be rolled back or passed.
        if operator != "RETRY" or failed.name != d.NODE_MINOR_FREEZE or dag.operator is d.Operator.CANCEL:
            raise api_error(f"Task.Dag.Operator.{operator.capitalize()}NotAllowed", failed.name)
        failed.state = d.State.PENDING
        dag.state, dag.operator, dag.finished = d.State.READY, d.Operator.RETRY, False
        dag.reset_times()
        self._start_driver(run)

    def unfinished(self, agent: SimAgent) -> list[d.Dag]:
        return [dag for dag in agent.dags.values() if not dag.finished]

    # ----------------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a running cluster with no DAGs (keys and ports stay)."""
        for run in self._runs.values():
            if run.driver is not None:
                run.driver.cancel()
        self._runs.clear()
        for agent in self.agents:
            agent.observer_running, agent.service_stopped = True, False
            agent.identity = IDENTITY
            agent.dags.clear()
            agent.request_times.clear()
            agent.peak_in_flight = agent.in_flight

    async def aclose(self) -> None:
        drivers = [run.driver for run in self._runs.values() if run.driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)


def _bind_stop(body: Any) -> StopRequest:
    """Go's JSON binding of ObStopParam: case-insensitive keys, null = zero value, type errors → 400."""
    if not isinstance(body, dict):
        raise _bind_error(f"json: cannot unmarshal {_go_type(body)} into Go value of type param.ObStopParam")
    scope = _field(body, "scope", dict, "ObStopParam.scope", {})
    scope_type = _field(scope, "type", str, "ObStopParam.scope.type", "")
    targets = _field(scope, "target", list, "ObStopParam.scope.target", [])
    for item in targets:
        if not isinstance(item, str):
            raise _bind_error(
                f"json: cannot unmarshal {_go_type(item)} into Go struct field Scope.scope.target of type string"
            )
    force = _field(body, "force", bool, "ObStopParam.force", False)
    terminate = _field(body, "terminate", bool, "ObStopParam.terminate", False)
    pass_dag = _field(body, "forcepassdag", dict, "ObStopParam.forcePassDag", {})
    pass_ids = _field(pass_dag, "id", list, "ObStopParam.forcePassDag.id", [])
    for item in pass_ids:
        if not isinstance(item, str):
            raise _bind_error(
                f"json: cannot unmarshal {_go_type(item)} into Go struct field ForcePassDagParam.forcePassDag.id of type string"
            )
    return StopRequest(scope_type.upper(), list(dict.fromkeys(targets)), force, terminate, list(pass_ids))


def _field(obj: dict[str, Any], name: str, kind: type, where: str, default: Any) -> Any:
    value = next((v for k, v in obj.items() if k.lower() == name.lower()), None)
    if value is None:
        return default
    if not isinstance(value, kind):
        go = {dict: "struct", list: "[]string", str: "string", bool: "bool"}[kind]
        raise _bind_error(
            f"json: cannot unmarshal {_go_type(value)} into Go struct field {where} of type {go}"
        )
    return value


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _bind_error(detail: str) -> ApiError:
    return api_error("Common.BindJsonFailed", detail)


def _parse_agent_address(text: str) -> tuple[str, int]:
    """`ip[:port]` / `[v6][:port]` / bare IPv6, as obshell's ConvertAddressToAgentInfo reads SERVER targets."""
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise api_error("Common.InvalidAddress", text)
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        host = text
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise api_error("Common.InvalidIp", host) from None
    if port_text is None:
        return host, DEFAULT_AGENT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise api_error("Common.InvalidPort", port_text)
    return host, int(port_text)
