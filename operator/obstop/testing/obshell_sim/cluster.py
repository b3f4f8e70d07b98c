"""The simulated cluster: agents' state, stop validation (ob/agent/executor/ob/stop.go CheckStopObParam) and the stop DAG engine (ob/agent/executor/ob/sub_dag.go).

Everything here runs on the simulator's event loop and mutates state synchronously, so no two requests
ever see a half-made change. The only timing is the DAG driver: one stage every `stage_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from obstop.testing.obshell_sim.faults import Faults, StopFailure
from obstop.testing.obshell_sim.releases import NEWEST_RELEASE, Release
from obstop.testing.obshell_sim.wire import ApiError, api_error

IDENTITY = "CLUSTER AGENT"
# Identities an agent can be given (ob/agent/meta/agent.go). FOLLOWER is left out: it forwards to its MASTER (ob/agent/api/common/middleware.go Verify).
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
OB_BUILD_VERSION = "4.3.5.1_101000042025011617"  # the observers' build_version in /api/v1/ob/info

# obshell's time limits, in obshell seconds (ob/agent/executor/ob/sub_dag.go); the engine waits them times `time_scale`.
READY_WAIT_PER_AGENT = 900 * 1  # node 2, per agent, one after another (maxQueryDagDetailTimes x 1 s)
WAIT_LIMIT = 900 * 1  # node 5, per agent in parallel
WAIT_AFTER_CANCEL = 450  # node 5 after cancelling a sub-DAG still RUNNING (i = 900/2)
KILL_LIMIT = 15 * 5  # "Stop observer": AsyncOperationTimeout
SUB_TASK_LIMIT = 3600  # engine/task/task.go DEFAULT_TIMEOUT
CANCEL_WAIT = PASS_WAIT = 300  # force-passing a holder (stop_obsvr.go)
CREATE_TRIES = 3  # node 1, remote creation (3 s apart)
# Main-DAG nodes that are cancel-only (no SetCanContinue): a restart fails them (ob/agent/executor/ob/sub_dag.go).
CANCEL_ONLY_NODES = frozenset({d.NODE_INFORM, d.NODE_READY, d.NODE_ADVANCE, d.NODE_END})
# Nodes whose failure PASSes the created sub-DAGs (deferred t.pass(), ob/agent/executor/ob/sub_dag.go).
PASSING_NODES = frozenset({d.NODE_READY, d.NODE_ADVANCE, d.NODE_STOP_SQL, d.NODE_END})
INTERRUPTED_LINE = (
    "ERROR: [Common.Unexpected]: Unexpected error: task unexpectedly interrupted and cannot continue"
)


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
    # obState while the process runs: 1 no connection yet (booting), 2 restricted, 3 available (ob/agent/meta/agent.go).
    ob_connection: int = OB_STATE_AVAILABLE
    stalled: bool = False  # answers HTTP, but its task engine runs nothing (fault injection)
    service_stopped: bool = False  # ALTER SYSTEM STOP SERVER/ZONE ran (immediate mode)
    serving: bool = False  # listening for HTTP
    dags: dict[int, d.Dag] = field(default_factory=dict, repr=False)
    # Load as the agent saw it: arrival times (time.time()) of API calls, and the most served at once.
    request_times: list[float] = field(default_factory=list, repr=False)
    request_paths: list[str] = field(default_factory=list, repr=False)  # "GET /api/v1/...", in the same order
    in_flight: int = 0
    peak_in_flight: int = 0
    pid: int = field(default_factory=lambda: 10_000 + int.from_bytes(os.urandom(2), "big"))
    started_at_ns: int = field(default_factory=time.time_ns)
    url: str = ""  # set once listening: http(s)://ip:port
    identity: str = IDENTITY  # meta.OCS_AGENT identity; only CLUSTER AGENT may stop (ob/agent/executor/ob/stop.go CheckStopObParam step 3)

    def __post_init__(self) -> None:
        self.ids = d.IdAllocator(self.ip, self.port)

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def ob_state(self) -> int:
        return self.ob_connection if self.observer_running else OB_STATE_DOWN

    @property
    def runs_tasks(self) -> bool:
        """Its task engine is working: the process is up (serving) and not stalled."""
        return self.serving and not self.stalled

    def new_process(self) -> None:
        """A restart: another pid and start time; key and sqlite state are kept."""
        self.pid = 10_000 + int.from_bytes(os.urandom(2), "big")
        self.started_at_ns = time.time_ns()

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
            "version": release.status_version,  # "<version>-<release>" (README.md#obshell-releases-the-simulator-reproduces)
            "pid": self.pid,
            "startAt": self.started_at_ns,
            "port": self.port,
            "obState": self.ob_state,
            "sqlPort": 2881,
            "underMaintenance": self.under_maintenance,
        }

    def info_wire(self, release: Release) -> dict[str, Any]:
        # The plain four-part version; later fields only from the release that added them (ob/agent/meta/agent.go, README.md#obshell-releases-the-simulator-reproduces).
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
    def __init__(self, err_code: str, message: str, *, passed: bool = False) -> None:
        super().__init__(err_code)
        self.err_code = err_code
        self.message = message
        self.passed = passed  # the node already ran its deferred pass


class _Unreachable(ApiError):
    """A request to an agent that does not answer (connection refused)."""

    def __init__(self) -> None:
        super().__init__(500, "Common.Unexpected", "connect: connection refused")


def _is_failed(dag: d.Dag) -> bool:
    return dag.state is d.State.FAILED


def _rpc_error(agent: SimAgent, uri: str, exc: ApiError) -> str:
    """How an agent-to-agent request error reads in a task log (err.agent.rpc.request.error, ob/agent/executor/ob/sub_dag.go)."""
    if isinstance(exc, _Unreachable):
        detail = f'Post "http://{agent.address}{uri}": dial tcp {agent.address}: connect: connection refused'
    else:
        detail = f"{{Code:{exc.err_code}, Message:{exc.message}}}"
    return f"Request [POST]{uri} to {agent.address} error: {detail}"


@dataclass(eq=False)
class _StopRun:
    """Bookkeeping of one main stop DAG: what it was asked, where it runs, its sub-DAGs, its driver."""

    dag: d.Dag
    owner: SimAgent
    request: StopRequest
    failure: StopFailure | None
    sub_dags: dict[str, d.Dag] = field(default_factory=dict)  # agent address → sub-DAG
    driver: asyncio.Task[None] | None = None
    waiting: bool = False  # the current node waits for something: poll instead of a stage
    node_started: float = 0.0  # time.monotonic() when the current node began
    ready_checked: bool = False  # node 2: all sub-DAGs were created
    ready_index: int = 0  # node 2: agents found ready so far (one after another)
    ready_since: float = 0.0
    wait_cancelled_at: float | None = None  # node 5: when it cancelled the sub-DAGs still running
    wait_done: set[str] = field(default_factory=set)  # node 5: agents whose sub-DAG is FAILED
    succeeded: set[str] = field(default_factory=set)  # node 5: ... at its expected stage


@dataclass(eq=False)
class _SubRun:
    """A sub-DAG "Stop observer" on its agent, and what its engine is doing with it."""

    dag: d.Dag
    agent: SimAgent
    worker: asyncio.Task[None] | None = None  # waiting for the engine, or a kill that does not take


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
        self._runs: dict[int, _StopRun] = {}  # id(main Dag) → run (ids change when an agent moves)
        self._subs: dict[int, _SubRun] = {}  # id(sub Dag) → its engine's view
        # Real seconds per obshell second for the engine's time limits (READY_WAIT_PER_AGENT etc.).
        self.time_scale = 1.0
        self.faults: Faults | None = None  # the simulator's, for the faults the engine consults

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
    # Stop: validation, in the server's order (ob/agent/executor/ob/stop.go CheckStopObParam)

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
        # ZONE even with force, and the immediate checks, only from 4.4.1.0 (ob/agent/executor/ob/stop.go CheckStopObParam, README.md#obshell-releases-the-simulator-reproduces).
        strict = self.release.strict_stop_checks
        if (not request.force or (strict and kind == "ZONE")) and receiver.ob_state != OB_STATE_AVAILABLE:
            raise api_error(
                "OB.Cluster.ForceStopRequired"
            )  # GetState() != 3, booting included (ob/agent/repository/db/oceanbase/status.go)
        if strict and not request.kills:
            self._immediate_queries(receiver)
            self._check_immediate(request)
        return request

    def _immediate_queries(self, receiver: SimAgent) -> None:
        """The OB queries of the immediate checks can fail with a (transient) 400 MySQL.Error (ob/agent/errors/errorcode.go)."""
        fault = self.faults.take("mysql_error", receiver.address) if self.faults is not None else None
        if fault is not None:
            raise ApiError(400, "MySQL.Error", fault.message)

    def _check_immediate(self, request: StopRequest) -> None:
        zones = {agent.zone for agent in request.target_agents}
        stopped_elsewhere = any(a.service_stopped and a.zone not in zones for a in self.agents)
        if len(zones) > 1 or stopped_elsewhere:
            raise api_error("OB.Server.StoppedInMultiZone")
        # Stopping a whole zone must leave a majority of zones (of every log stream's replicas).
        if request.scope_type == "ZONE" and 2 * (len(self.zones) - 1) <= len(self.zones):
            raise api_error("OB.Cluster.Tenant.Replica.Invalid")

    # ----------------------------------------------------------------------------------------------
    # What an agent knows of its cluster (§5)

    def ob_info_wire(self, receiver: SimAgent) -> dict[str, Any]:
        """GET /api/v1/ob/info (executor/ob/info.go): the agent table always; the observers' topology only
        when the receiver's OB connection is available (else only the cluster's id and name)."""
        agents = [
            {
                "ip": a.ip,
                "port": a.port,
                "zone": a.zone,
                "identity": a.identity,
                "version": self.release.version,
            }
            for a in self.agents
        ]
        info: dict[str, Any] = {"id": 1, "name": self.name}
        if receiver.ob_state == OB_STATE_AVAILABLE:
            topology: dict[str, list[dict[str, Any]]] = {}
            for index, agent in enumerate(self.agents):
                topology.setdefault(agent.zone, []).append(
                    {
                        "svr_ip": agent.ip,
                        "svr_port": 2882,
                        "sql_port": 2881,
                        "agent_port": agent.port,
                        "with_rootserver": index == 0,
                        # status is STOPPED once stop_time is set (ALTER SYSTEM STOP); a dead observer is
                        # INACTIVE in __all_server (param/obcluster.go).
                        "status": "STOPPED"
                        if agent.service_stopped
                        else "ACTIVE"
                        if agent.observer_running
                        else "INACTIVE",
                        "build_version": f"{OB_BUILD_VERSION}",
                    }
                )
            info.update(version=OB_BUILD_VERSION.split("_")[0], topology=topology, is_shared_storage=False)
        return {"agent_info": agents, "obcluster_info": info}

    def check_zone_stop(self, zone: str, receiver: SimAgent) -> None:
        """POST /api/v1/ob/zone/{zone}/stop/check, 4.4.1.0+ (executor/ob/stop_zone.go CheckZoneStopValidate):
        identity, then the zone in OB, no other stop, a majority after the stop. Run by an agent whose OB is
        available (getAgentWithAvailableOB)."""
        if receiver.identity != IDENTITY:
            raise api_error(
                "Agent.Identify.NotSupportOperation", receiver.address, receiver.identity, IDENTITY
            )
        if not any(a.ob_state == OB_STATE_AVAILABLE and (a.serving or a is receiver) for a in self.agents):
            # The source's wording for "no agent with an available OB" is not in the fact sheet: a guess.
            raise api_error("Common.Unexpected", "no agent with available observer")
        if zone not in self.zones:
            raise api_error("OB.Zone.NotExist", zone)
        if any(a.service_stopped and a.zone != zone for a in self.agents):
            raise api_error("OB.Server.StoppedInMultiZone")
        if 2 * (len(self.zones) - 1) <= len(self.zones):
            raise api_error("OB.Cluster.Tenant.Replica.Invalid")

    def validate_zone_stop(self, zone: str, body: Any, receiver: SimAgent) -> StopRequest:
        """POST /api/v1/ob/zone/{zone}/stop, 4.4.1.0+ (executor/ob/stop_zone.go, fact sheet §5): the checks of
        /stop/check, then a stop of the zone whose sub-DAGs kill every observer in it (after a minor freeze with
        `freeze_server`)."""
        freeze, pass_ids = _bind_zone_stop(body)
        self.check_zone_stop(zone, receiver)
        request = StopRequest("ZONE", [zone], not freeze, freeze, pass_ids)
        request.target_agents = [a for a in self.agents if a.zone == zone]
        return request

    # ----------------------------------------------------------------------------------------------
    # Stop: the DAG (ob/agent/executor/ob/sub_dag.go). The main DAG steps once per `stage_duration`; a node that waits for its
    # sub-DAGs (2 and 5) then polls every `poll_seconds` until they are where it wants them or its
    # time limit (obshell's constants times `time_scale`) runs out. Sub-DAGs run on their own agents'
    # engines (`_step_sub`), which only work while the agent serves and is not stalled.

    @property
    def poll_seconds(self) -> float:
        """obshell polls sub-DAGs every 1 s; scaled, and never slower than a stage."""
        return max(0.001, min(self.stage_seconds or 0.001, self.time_scale))

    def _limit(self, obshell_seconds: float) -> float:
        return obshell_seconds * self.time_scale

    def create_stop(
        self,
        receiver: SimAgent,
        request: StopRequest,
        failure_for: Callable[[list[str]], StopFailure | None],
        names: list[str] | None = None,
    ) -> d.Dag:
        """The main DAG of a stop, with the nodes of its mode (or `names`: the per-zone stop's)."""
        names = names or d.stop_node_names(force=request.force, terminate=request.terminate)
        dag = receiver.new_dag(d.STOP_DAG, names, maintenance_type=d.MAINTENANCE_NONE)
        dag.params = request.to_wire()
        run = _StopRun(dag, receiver, request, failure_for(names))
        self._runs[id(dag)] = run
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
            await asyncio.sleep(self.poll_seconds if run.waiting else self.stage_duration(run.dag))
            # A stopped or stalled agent does not run its DAGs; they go on when it is back (unless a
            # restart interrupted them, see agent_restarted).
            if run.owner.runs_tasks:
                self.tick(run)

    def tick(self, run: _StopRun) -> None:
        """Advance one main stop DAG by one step (or one poll of a waiting node)."""
        dag = run.dag
        if dag.terminal:
            return
        run.waiting = False
        if dag.operator is d.Operator.CANCEL:
            # No stop task has a Cancel hook and no deferred pass runs: the sub-DAGs keep their locks (ob/agent/executor/ob/sub_dag.go).
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
            if not self._execute(run, node):
                task = node.sub_tasks[0]
                if time.monotonic() - run.node_started > self._limit(SUB_TASK_LIMIT):
                    raise _NodeFailed("Task.Dag.ExecuteTimeout", f"task {task.task_id} timeout")
                run.waiting = True
                return
        except _NodeFailed as exc:
            task = node.sub_tasks[-1] if node.sub_tasks else run.owner.new_task(node, run.owner)
            if node.name in PASSING_NODES and not exc.passed:
                # Deferred t.pass() in CheckSubDagReadyTask/RetrySubDagTask/ExecStopSqlTask/PassSubDagTask.
                self._pass_all(run, task, cancel_first=node.name == d.NODE_END)
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
        node.state, node.start_time = d.State.RUNNING, _now()
        if (
            node.operator is not d.Operator.RETRY
        ):  # a retried node keeps RETRY; the DAG stays RUN (ob/agent/engine/task/task.go)
            node.operator = d.Operator.RUN
        run.node_started = time.monotonic()
        run.ready_index, run.ready_since, run.wait_cancelled_at = 0, run.node_started, None
        if not node.sub_tasks:
            if node.name in (d.NODE_INFORM, d.NODE_WAIT):  # one sub-task per agent, named by it
                for agent in self.agents:
                    run.owner.new_task(node, agent, node.name)
            else:
                run.owner.new_task(node, run.owner, node.name)
        for task in node.sub_tasks:
            task.state, task.start_time, task.execute_times = d.State.RUNNING, _now(), task.execute_times + 1

    @staticmethod
    def _finish(dag: d.Dag, state: d.State) -> None:
        dag.state, dag.end_time, dag.finished = state, _now(), True
        dag.terminal_at = time.time()

    def _execute(self, run: _StopRun, node: d.Node) -> bool:
        """Run the node's step; False = still waiting (poll again), _NodeFailed = it failed."""
        step: dict[str, Callable[[_StopRun, d.Node], bool]] = {
            d.NODE_INFORM: self._inform,
            d.NODE_READY: self._ensure_ready,
            d.NODE_MINOR_FREEZE: self._minor_freeze,
            d.NODE_ADVANCE: self._advance,
            d.NODE_WAIT: self._wait,
            d.NODE_STOP_SQL: self._stop_sql,
            d.NODE_END: self._end,
        }
        return step[node.name](run, node)

    def _tasks_by_agent(self, node: d.Node) -> list[tuple[SimAgent, d.SubTask]]:
        return list(zip(self.agents, node.sub_tasks, strict=False))

    # Node 1 ---------------------------------------------------------------------------------------

    def _inform(self, run: _StopRun, node: d.Node) -> bool:
        """sub_dag.go CreateSubDagTask: local creation once, remote 3 tries; failures only logged, the
        sub-task SUCCEEDs either way (node 2 notices). The 3 s between tries are not waited here."""
        for agent, task in self._tasks_by_agent(node):
            task.log(f"Inform {agent.address} to create the task")
            local = agent is run.owner
            tries = 1 if local else CREATE_TRIES
            for attempt in range(1, tries + 1):
                try:
                    sub = self._create_sub_dag(run, agent)
                except ApiError as exc:
                    if local:
                        task.log(f"ERROR: [{exc.err_code}]: {exc.message}")
                    else:
                        task.log(
                            f"ERROR: [Common.Unexpected]: Unexpected error: {agent.address} failed to create the "
                            f"task due to '{_rpc_error(agent, '/rpc/v1/ob/stop', exc)}' and will try again"
                            f"[{attempt}/{tries}]."
                        )
                    continue
                run.sub_dags[agent.address] = sub
                task.additional_data = {"sub_dags": {agent.address: sub.generic_id}}
                task.log(f"create task {sub.generic_id} successfully")
                break
        return True

    def _create_sub_dag(self, run: _StopRun, agent: SimAgent) -> d.Dag:
        if not agent.serving:
            raise _Unreachable()
        holder = agent.lock_holder
        if holder is not None:
            main_id = holder.main_dag_id or ""  # empty for a holder that is not a start/stop sub-DAG
            if not (main_id and main_id in run.request.force_pass_dag):
                raise ApiError(
                    500,
                    "Agent.UnderMaintenanceDag",
                    f"{agent.address} is under maintenance by DAG [{main_id}:{holder.name}]",
                )
            if holder.state is not d.State.FAILED:
                # stop_obsvr.go cancelAndPassSubDag: the cancel takes, but the pass then uses the stale
                # (RUNNING) DAG object, is refused, and PassTimeout comes back at once (ob/agent/executor/ob/sub_dag.go).
                self._cancel_sub(holder)
                if not _is_failed(holder):  # its engine did not get to the cancel (stalled)
                    raise ApiError(
                        500,
                        "Task.Dag.CancelTimeout",
                        f"Cancel {holder.dag_id} timeout after {CANCEL_WAIT} seconds",
                    )
                raise ApiError(
                    500, "Task.Dag.PassTimeout", f"Pass {holder.dag_id} timeout after {PASS_WAIT} seconds"
                )
            self.pass_sub_dag(holder)
        kill = agent in run.request.target_agents and run.request.kills
        names = [d.SUB_NODE_PREPARE, *([d.SUB_NODE_KILL] if kill else []), d.SUB_NODE_WAIT_END]
        sub = agent.new_dag(
            d.SUB_STOP_DAG,
            names,
            maintenance_type=d.MAINTENANCE_GLOBAL,
            additional_data={"main_dag_id": run.dag.generic_id},
        )
        sub_run = _SubRun(sub, agent)
        self._subs[id(sub)] = sub_run
        self._step_sub(sub_run)
        return sub

    # The sub-DAG "Stop observer" on its own agent (stop_obsvr.go) --------------------------------

    def _step_sub(self, sub_run: _SubRun) -> None:
        """Take a sub-DAG as far as its agent's engine can now; wait for the engine if it cannot run."""
        sub, agent = sub_run.dag, sub_run.agent
        if sub.terminal and (sub.state is d.State.SUCCEED or sub.current.state is d.State.FAILED):
            return  # passed, or parked where it waits for the main DAG
        if sub_run.worker is not None and not sub_run.worker.done():
            return
        if not agent.runs_tasks:
            sub_run.worker = asyncio.get_running_loop().create_task(self._resume_sub(sub_run))
            return
        if sub.operator is d.Operator.CANCEL:
            node = sub.current
            node.state, node.operator, node.end_time = d.State.FAILED, d.Operator.CANCEL, _now()
            sub.state, sub.end_time = d.State.FAILED, _now()
            return
        if sub.state is d.State.READY:
            # Start preparations: the main DAG is not at stage 3 yet, so it parks on purpose.
            self._park(agent, sub, "wait operator to advance")
            return
        node = sub.current
        if node.name == d.SUB_NODE_KILL:
            task = node.sub_tasks[-1] if node.sub_tasks else agent.new_task(node, agent)
            task.state, task.start_time, task.execute_times = d.State.RUNNING, _now(), task.execute_times + 1
            if self.faults is not None and self.faults.take("fail_kill", agent.address) is not None:
                task.log(f"kill observer process {agent.pid + 1}")
                sub_run.worker = asyncio.get_running_loop().create_task(self._kill_times_out(sub_run, task))
                return
            if agent.observer_running:
                task.log(f"kill observer process {agent.pid + 1}")
                agent.observer_running = False
            else:
                task.log("Observer is not running")  # counts as success
            task.state, task.end_time = d.State.SUCCEED, _now()
            node.state, node.end_time = d.State.SUCCEED, _now()
            sub.stage += 1
        self._park(agent, sub, "wait for the main DAG to end the task")

    async def _resume_sub(self, sub_run: _SubRun) -> None:
        while not sub_run.agent.runs_tasks:  # noqa: ASYNC110 - the engine polls, as obshell's does
            await asyncio.sleep(self.poll_seconds)
        sub_run.worker = None
        self._step_sub(sub_run)

    async def _kill_times_out(self, sub_run: _SubRun, task: d.SubTask) -> None:
        """The kill does not take within 15x5 s: the sub-DAG parks at the wrong stage (ob/agent/executor/ob/sub_dag.go)."""
        await asyncio.sleep(self._limit(KILL_LIMIT))
        sub, node = sub_run.dag, sub_run.dag.current
        task.state, task.end_time = d.State.FAILED, _now()
        task.log("ERROR: [OB.Cluster.AsyncOperationTimeout]: kill observer process timeout")
        node.state, node.end_time = d.State.FAILED, _now()
        sub.state, sub.end_time = d.State.FAILED, _now()
        sub_run.worker = None

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

    def _cancel_sub(self, sub: d.Dag) -> None:
        """CANCEL of an unfinished sub-DAG: FAILED+CANCEL once its agent's engine gets to it."""
        sub.operator = d.Operator.CANCEL
        sub_run = self._subs.get(id(sub))
        if sub_run is None:
            return
        if sub_run.worker is not None and not sub_run.worker.done() and sub_run.agent.runs_tasks:
            sub_run.worker.cancel()  # e.g. a kill still trying: cancelled at its next check
            sub_run.worker = None
        self._step_sub(sub_run)

    def _retry_sub(self, agent: SimAgent, sub: d.Dag) -> ApiError | None:
        """Node 4's RETRY of a parked sub-DAG: Start preparations runs again and passes (main stage >= 3)."""
        if not agent.serving:
            return _Unreachable()
        if sub.state is not d.State.FAILED:
            return api_error("Task.Dag.Operator.RetryNotFailedDag")
        prepare = sub.nodes[0]
        prepare.operator, prepare.state, prepare.end_time = d.Operator.RETRY, d.State.SUCCEED, _now()
        for task in prepare.sub_tasks:
            task.state, task.execute_times = d.State.SUCCEED, task.execute_times + 1
        sub.stage = 2
        sub.state, sub.operator = (
            d.State.RUNNING,
            d.Operator.RUN,
        )  # RETRY leaves the DAG operator RUN (ob/agent/engine/task/task.go)
        sub.current.state, sub.current.start_time = d.State.RUNNING, _now()
        sub_run = self._subs.get(id(sub))
        if sub_run is not None:
            self._step_sub(sub_run)
        return None

    def _pass_all(self, run: _StopRun, task: d.SubTask, *, cancel_first: bool) -> bool:
        """PassSubDagTask.pass (node 7: cancel the running ones first); False if any pass failed."""
        if cancel_first:
            for address, sub in run.sub_dags.items():
                agent = self._agent_by_address(address)
                if agent.serving and sub.state is d.State.RUNNING:
                    self._cancel_sub(sub)
        succeeded = True
        for address, sub in run.sub_dags.items():
            agent = self._agent_by_address(address)
            if sub.state is not d.State.SUCCEED:
                error: ApiError | None = _Unreachable() if not agent.serving else None
                if error is None and sub.state is not d.State.FAILED:
                    error = api_error("Task.Dag.Operator.PassNotFailedDag")
                if error is not None:
                    detail = _rpc_error(agent, f"/api/v1/task/dag/{sub.generic_id}", error)
                    task.log(
                        f"ERROR: [Common.Unexpected]: Unexpected error: {address} failed to end the task : {detail}"
                    )
                    succeeded = False
                else:
                    self.pass_sub_dag(sub)
            task.log(f"{address} end the task")
        return succeeded

    def _agent_by_address(self, address: str) -> SimAgent:
        return next(agent for agent in self.agents if agent.address == address)

    # Nodes 2-7 ------------------------------------------------------------------------------------

    def _ensure_ready(self, run: _StopRun, node: d.Node) -> bool:
        """sub_dag.go CheckSubDagReadyTask: every sub-DAG created, then each parked (FAILED), waiting up
        to 900x1 s per agent, one agent after the other."""
        task = node.sub_tasks[0]
        if not run.ready_checked:
            missing = [a.address for a in self.agents if a.address not in run.sub_dags]
            if (
                missing
            ):  # lists the agents without a sub-DAG, never the lock holder (ob/agent/executor/ob/sub_dag.go)
                raise _NodeFailed(
                    "Task.SubDag.NotAllCreated",
                    f"check sub dag created failed: Sub DAG of agents: [{' '.join(missing)}] not created, "
                    "main DAG failed",
                )
            task.log("All agents have created the tasks successfully")
            task.log("Check if all agents can be advanced")
            run.ready_checked, run.ready_since = True, time.monotonic()
        pending = list(run.sub_dags.items())
        while run.ready_index < len(pending):
            address, sub = pending[run.ready_index]
            if sub.state is d.State.FAILED and self._agent_by_address(address).serving:
                task.log(f"{address} is ready")
                run.ready_index, run.ready_since = run.ready_index + 1, time.monotonic()
                continue
            if time.monotonic() - run.ready_since >= self._limit(READY_WAIT_PER_AGENT):
                raise _NodeFailed(
                    "Task.SubDag.NotAllReady",
                    f"check can advance sub dag failed: Sub DAG of agents: {address} not ready, "
                    "cannot advance main DAG",
                )
            return False
        return True

    def _minor_freeze(self, run: _StopRun, node: d.Node) -> bool:
        node.sub_tasks[0].log("ALTER SYSTEM MINOR FREEZE")
        node.sub_tasks[0].log("minor freeze finished")
        return True

    def _advance(self, run: _StopRun, node: d.Node) -> bool:
        """sub_dag.go RetrySubDagTask: RETRY every sub-DAG; any refusal → NotAllAdvanced (then pass all)."""
        task = node.sub_tasks[0]
        failed = []
        for address, sub in run.sub_dags.items():
            task.log(f"advance {address} to execute the task")
            error = self._retry_sub(self._agent_by_address(address), sub)
            if error is not None:
                task.log(f"ERROR: [{error.err_code}]: {error.message}")
                failed.append(address)
        if failed:
            raise _NodeFailed(
                "Task.SubDag.NotAllAdvanced",
                f"Sub DAG of agents: [{' '.join(failed)}] not advanced, main DAG failed",
            )
        return True

    def _wait(self, run: _StopRun, node: d.Node) -> bool:
        """sub_dag.go WaitSubDagFinishTask, per agent in parallel: poll up to 900x1 s until the sub-DAG is
        FAILED (parked); one still RUNNING then is cancelled and polled ~450 s more. Always "succeeds";
        a sub-DAG parked at its last stage counts as succeeded for node 7."""
        now = time.monotonic()
        pending = []
        for agent, task in self._tasks_by_agent(node):
            sub = run.sub_dags.get(agent.address)
            if sub is None or agent.address in run.wait_done:
                continue
            if agent.serving and sub.state is d.State.FAILED:
                task.log("Wait for task to succeed")
                for sub_node in sub.nodes:
                    for sub_task in sub_node.sub_tasks:
                        for line in sub_task.logs or ():
                            task.log(f"{sub_task.name}: {line}")
                if sub.stage == sub.max_stage:
                    task.log(f"{sub.generic_id} succeed")
                    run.succeeded.add(agent.address)
                run.wait_done.add(agent.address)
                continue
            pending.append((agent, task, sub))
        if not pending:
            return True
        if run.wait_cancelled_at is None and now - run.node_started >= self._limit(WAIT_LIMIT):
            run.wait_cancelled_at = now
            cancelled = False
            for agent, task, sub in pending:
                if agent.serving and sub.state is d.State.RUNNING:
                    task.log(f"WARN: since {sub.generic_id} is timeout, try to cancel it")
                    self._cancel_sub(sub)
                    task.log(f"wait {sub.generic_id} to be finished")
                    cancelled = True
            return not cancelled
        cancelled_at = run.wait_cancelled_at
        return cancelled_at is not None and now - cancelled_at >= self._limit(WAIT_AFTER_CANCEL)

    def _stop_sql(self, run: _StopRun, node: d.Node) -> bool:
        task = node.sub_tasks[0]
        if not run.owner.observer_running:
            if not self.release.stop_sql_skips_missing_observer:
                # A plain Go error (fmt.Errorf), so no errCode; the node's deferred pass releases the sub-DAGs.
                raise _NodeFailed("Common.Unexpected", "check observer process exist: false, <nil>,")
            task.log("observer is not running, skip")
            return True
        if run.request.scope_type == "ZONE":
            for zone in run.request.targets:
                task.log(f"ALTER SYSTEM STOP ZONE {zone}")
        else:
            for agent in run.request.target_agents:
                task.log(f"alter system stop server '{agent.ip}:2882'")
        for agent in run.request.target_agents:
            agent.service_stopped = True
        return True

    def _end(self, run: _StopRun, node: d.Node) -> bool:
        """sub_dag.go PassSubDagTask: every agent must have succeeded (node 5); then, always, cancel the
        running sub-DAGs and pass all of them (the tick's failure path does that on NotAllSucceed)."""
        task = node.sub_tasks[0]
        failed = [agent.address for agent in self.agents if agent.address not in run.succeeded]
        for address in failed:
            task.log(f"ERROR: [Common.Unexpected]: Unexpected error: agent {address} not succeed")
        if failed:
            raise _NodeFailed(
                "Task.SubDag.NotAllSucceed",
                f"check sub dag succeed failed: Sub DAG of agents: [{' '.join(failed)}] failed, main DAG failed",
            )
        task.log("Check the final result: SUCCEED!")
        task.log("End all tasks")
        if not self._pass_all(run, task, cancel_first=True):
            raise _NodeFailed(
                "Task.SubDag.NotAllPassed", "Not all sub DAGs passed, main DAG failed", passed=True
            )
        return True

    def pass_sub_dag(self, sub: d.Dag) -> None:
        sub_run = self._subs.get(id(sub))
        if sub_run is not None and sub_run.worker is not None:
            sub_run.worker.cancel()
            sub_run.worker = None
        sub.state, sub.operator, sub.end_time, sub.finished = d.State.SUCCEED, d.Operator.PASS, _now(), True
        sub.stage = sub.max_stage
        sub.terminal_at = time.time()

    # ----------------------------------------------------------------------------------------------
    # Agent restarts (ob/agent/executor/ob/sub_dag.go "Agent restart", ob/agent/engine/executor/executor.go)

    def agent_restarted(self, agent: SimAgent) -> None:
        """The agent's process started again: a RUNNING sub-task that cannot continue fails and fails its
        DAG (nodes 1, 2, 4, 7 of the main stop DAG, no pass runs); nodes 3, 5, 6 and every sub-DAG task
        are executed again from their start."""
        agent.new_process()
        for run in list(self._runs.values()):
            dag = run.dag
            if run.owner is not agent or dag.state is not d.State.RUNNING:
                continue
            node = dag.current
            if node.state is not d.State.RUNNING:
                continue
            if node.name not in CANCEL_ONLY_NODES:
                run.node_started = time.monotonic()
                run.ready_since, run.wait_cancelled_at = run.node_started, None
                for task in node.sub_tasks:
                    if task.state is d.State.RUNNING:
                        task.execute_times += 1
                continue
            if node.name == d.NODE_INFORM:
                # The creation requests had landed but their answers died with the process: the
                # sub-DAGs exist (and hold their locks) though the main DAG never recorded them.
                for other in self.agents:
                    if other.address not in run.sub_dags:
                        with contextlib.suppress(ApiError):
                            self._create_sub_dag(run, other)
            for task in node.sub_tasks:
                if task.state is d.State.RUNNING:
                    task.state, task.end_time = d.State.FAILED, _now()
                    task.log(INTERRUPTED_LINE)
            node.state, node.end_time = d.State.FAILED, _now()
            self._finish(dag, d.State.FAILED)
        for sub_run in self._subs.values():
            if sub_run.agent is agent and not sub_run.dag.terminal:
                self._step_sub(sub_run)

    def hold_lock(self, agent: SimAgent, name: str) -> d.Dag:
        """A parked maintenance DAG that is not a start/stop sub-DAG (e.g. an agent upgrade): it has no
        main id, so no forcePassDag can pass it (ob/agent/executor/ob/sub_dag.go); only a PASS of it by hand frees the agent."""
        dag = agent.new_dag(name, [name], maintenance_type=d.MAINTENANCE_GLOBAL)
        self._park(agent, dag, f"{name} is waiting")
        return dag

    def rename_ids(self, agent: SimAgent) -> None:
        """The agent now has another ip:port: its DAGs' ids are encoded from the new address (ob/agent/engine/task/task_dto.go ConvertToGenericID)."""
        agent.ids.ip, agent.ids.port = agent.ip, agent.port
        for dag in agent.dags.values():
            dag.generic_id = ids.agent_dag_id(agent.ip, agent.port, dag.dag_id).encode()
            for node in dag.nodes:
                node.generic_id = ids.agent_dag_id(agent.ip, agent.port, node.node_id).encode()
                for task in node.sub_tasks:
                    task.generic_id = ids.agent_dag_id(agent.ip, agent.port, task.task_id).encode()

    # ----------------------------------------------------------------------------------------------
    # DAG lookup and operators (ob/agent/engine/task/task.go, ob/agent/engine/task/task_dto.go ConvertToGenericID)

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
        busy = self.faults.take("busy_sqlite", owner.address) if self.faults is not None else None
        if busy is not None:
            # Any GetDagInstance error is a 404 (WrapRetain(ErrTaskNotFound, err), ob/agent/engine/task/task_dto.go ConvertToGenericID).
            raise api_error("Task.NotFound", busy.message)
        dag = owner.dags.get(generic.local_id)
        if dag is None:
            raise api_error("Task.NotFound", "record not found")
        if dag.generic_id != text and self.release.dag_id_must_round_trip:
            raise api_error("Task.NotFound", "dag id not match")
        return owner, dag

    def operate(self, dag: d.Dag, operator_text: Any) -> None:
        operator = str(operator_text).upper() if isinstance(operator_text, str) else ""
        if operator not in ("RETRY", "ROLLBACK", "CANCEL", "PASS"):
            raise api_error("Task.Dag.Operator.NotSupport", operator_text)
        run = self._runs.get(id(dag))
        if operator == "CANCEL":
            # getNodeCanCancel → IsFinished(): a state test, so any FAILED or SUCCEED DAG (a parked
            # sub-DAG included) is refused (ob/agent/engine/task/task.go).
            if dag.terminal:
                raise api_error("Task.Dag.Operator.CancelFinishedDag")
            if run is None:
                self._cancel_sub(dag)
                return
            dag.operator = d.Operator.CANCEL
            dag.reset_times()
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
        # txForRetryAndReadyDag: RETRY on the node only; the DAG operator is written RUN (ob/agent/engine/task/task.go).
        failed.state, failed.operator = d.State.PENDING, d.Operator.RETRY
        dag.state, dag.operator, dag.finished = d.State.READY, d.Operator.RUN, False
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
        for sub_run in self._subs.values():
            if sub_run.worker is not None:
                sub_run.worker.cancel()
        self._runs.clear()
        self._subs.clear()
        self.time_scale = 1.0
        for agent in self.agents:
            agent.observer_running, agent.service_stopped = True, False
            agent.ob_connection, agent.stalled = OB_STATE_AVAILABLE, False
            agent.identity = IDENTITY
            agent.dags.clear()
            agent.request_times.clear()
            agent.request_paths.clear()
            agent.peak_in_flight = agent.in_flight

    async def aclose(self) -> None:
        drivers = [run.driver for run in self._runs.values() if run.driver is not None]
        drivers += [sub.worker for sub in self._subs.values() if sub.worker is not None]
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
    pass_ids = _bind_force_pass_dag(body, "ObStopParam")
    return StopRequest(scope_type.upper(), list(dict.fromkeys(targets)), force, terminate, pass_ids)


def _bind_zone_stop(body: Any) -> tuple[bool, list[str]]:
    """Go's JSON binding of ObZoneStopParam (ob/param/ob.go): `freeze_server`, `forcePassDag.id`."""
    if not isinstance(body, dict):
        raise _bind_error(
            f"json: cannot unmarshal {_go_type(body)} into Go value of type param.ObZoneStopParam"
        )
    freeze = _field(body, "freeze_server", bool, "ObZoneStopParam.freeze_server", False)
    return freeze, _bind_force_pass_dag(body, "ObZoneStopParam")


def _bind_force_pass_dag(body: dict[str, Any], param: str) -> list[str]:
    """The `forcePassDag.id` list of a stop's parameters (ForcePassDagParam in both)."""
    pass_dag = _field(body, "forcepassdag", dict, f"{param}.forcePassDag", {})
    pass_ids = _field(pass_dag, "id", list, f"{param}.forcePassDag.id", [])
    for item in pass_ids:
        if not isinstance(item, str):
            raise _bind_error(
                f"json: cannot unmarshal {_go_type(item)} into Go struct field ForcePassDagParam.forcePassDag.id of type string"
            )
    return list(pass_ids)


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
