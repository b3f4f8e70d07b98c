"""The simulator: N*M obshell agents per cluster, K clusters, on loopback; in-process or in a thread."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from obstop.testing.loop import LoopThread
from obstop.testing.obshell_sim import clock, keys, releases
from obstop.testing.obshell_sim.cluster import SIMULATED_IDENTITIES, SimAgent, SimCluster
from obstop.testing.obshell_sim.dags import Dag
from obstop.testing.obshell_sim.faults import Faults
from obstop.testing.obshell_sim.server import AgentServer, bind_socket

_T = TypeVar("_T")
DEFAULT_VERSION = releases.NEWEST


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate. `base_port=0` picks free ports (not necessarily consecutive); otherwise agents
    take consecutive ports from `base_port`, cluster after cluster.

    `version` is the obshell release to behave as (README.md#obshell-releases-the-simulator-reproduces): "4.4.1.0", "4.4.1" or "4.4.1.0-<release>",
    any version from 4.2.2.0 up (`releases.KNOWN_RELEASES` are the named profiles); `release` is its parsed
    behaviour. `key_bits` overrides the release's RSA key size (512 before 4.4.2.0, 1024 from it)."""

    password: str = field(repr=False)
    zones: int = 3
    servers_per_zone: int = 1
    clusters: int = 1
    stage_seconds: float = 1.0
    key_bits: int | None = None
    host: str = "127.0.0.1"
    base_port: int = 0
    ssl_context: ssl.SSLContext | None = None
    agent_password: str | None = field(default=None, repr=False)
    version: str = DEFAULT_VERSION
    # Realistic timing: seconds per node name ("READY" = until the engine picks a new DAG up); names not
    # given take `stage_seconds`. Each step is then stretched by a random factor in [1-jitter, 1+jitter].
    node_seconds: Mapping[str, float] | None = None
    stage_jitter: float = 0.0
    seed: int | None = None
    release: releases.Release = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: the parsed release is set once here (ValueError for an unparseable or too old version).
        object.__setattr__(self, "release", releases.Release.parse(self.version))
        if self.zones < 1 or self.servers_per_zone < 1 or self.clusters < 1:
            raise ValueError("zones, servers_per_zone and clusters must be at least 1")
        if self.stage_seconds < 0 or any(v < 0 for v in (self.node_seconds or {}).values()):
            raise ValueError("stage_seconds and node_seconds must not be negative")
        if not 0 <= self.stage_jitter < 1:
            raise ValueError("stage_jitter must be in [0, 1)")
        if self.key_bits is not None and self.key_bits not in keys.SUPPORTED_KEY_BITS:
            raise ValueError(f"key_bits must be one of {keys.SUPPORTED_KEY_BITS}")

    @property
    def rsa_key_bits(self) -> int:
        """The agents' RSA key size: `key_bits` if given, else the release's (ob/agent/lib/crypto/rsa.go)."""
        return self.key_bits if self.key_bits is not None else self.release.key_bits


@dataclass
class StopRecord:
    """One POST /api/v1/ob/stop as an agent received it. `params` is the decrypted body (no password in it);
    `dag_id` is set when a DAG was created ("the stop landed"), `error` is the errCode otherwise."""

    agent: str
    cluster: str
    time: float
    params: Any = None
    status: int = 200
    dag_id: str | None = None
    error: str | None = None
    dropped: bool = False  # the answer was never sent (fault injection)

    @property
    def landed(self) -> bool:
        return self.dag_id is not None

    def to_wire(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "cluster": self.cluster,
            "time": self.time,
            "params": self.params,
            "status": self.status,
            "dagId": self.dag_id,
            "error": self.error,
            "dropped": self.dropped,
        }


class ObshellSimulator:
    """Simulated obshell agents over real HTTP on loopback. Use `async with ObshellSimulator(cfg) as sim:`."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.faults = Faults()
        self.stops: list[StopRecord] = []
        self.clusters: list[SimCluster] = []
        self._servers: dict[str, AgentServer] = {}

    def __repr__(self) -> str:
        return f"ObshellSimulator({self.config!r})"

    async def __aenter__(self) -> ObshellSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        cfg = self.config
        port = cfg.base_port
        rng = random.Random(cfg.seed)
        try:
            for index in range(cfg.clusters):
                cluster = SimCluster(
                    f"cluster{index}",
                    cfg.password,
                    cfg.stage_seconds,
                    node_seconds=cfg.node_seconds,
                    stage_jitter=cfg.stage_jitter,
                    rng=rng,
                    release=cfg.release,
                )
                cluster.faults = self.faults
                self.clusters.append(cluster)
                for zone in range(1, cfg.zones + 1):
                    for _ in range(cfg.servers_per_zone):
                        sock = bind_socket(cfg.host, port)
                        bound = sock.getsockname()[1]
                        port = port + 1 if port else 0
                        agent = SimAgent(
                            cfg.host,
                            bound,
                            f"zone{zone}",
                            keys.generate_private_key(cfg.rsa_key_bits),
                            cluster,
                        )
                        cluster.agents.append(agent)
                        server = AgentServer(agent, self, cfg.ssl_context)
                        self._servers[agent.address] = server
                        await server.start(sock)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        clock.set_offset(0)
        for cluster in self.clusters:
            await cluster.aclose()
        await asyncio.gather(*(server.stop() for server in self._servers.values()), return_exceptions=True)

    # ----------------------------------------------------------------------------------------------
    # Looking things up

    @property
    def agents(self) -> list[SimAgent]:
        return [agent for cluster in self.clusters for agent in cluster.agents]

    def agent(self, address: str) -> SimAgent:
        for agent in self.agents:
            if agent.address == address:
                return agent
        raise KeyError(f"no simulated agent at {address}")

    def cluster_for(self, address: str) -> SimCluster:
        return self.agent(address).cluster

    def dag(self, generic_id: str) -> Dag:
        """A DAG by generic id, wherever it lives (sub-DAGs included)."""
        for agent in self.agents:
            for dag in agent.dags.values():
                if dag.generic_id == generic_id:
                    return dag
        raise KeyError(f"no DAG {generic_id}")

    @property
    def release(self) -> releases.Release:
        """The obshell release every agent behaves as (SimulatorConfig.version)."""
        return self.config.release

    def landed_stops(self, cluster: str | None = None) -> list[StopRecord]:
        return [r for r in self.stops if r.landed and (cluster is None or r.cluster == cluster)]

    # ----------------------------------------------------------------------------------------------
    # Actions (fault injection that is not a rule)

    def rotate_key(self, address: str | None = None) -> None:
        """New RSA key pair(s): headers made with the old public key now get 401 code 1."""
        for agent in [self.agent(address)] if address else self.agents:
            agent.key = keys.generate_private_key(self.config.rsa_key_bits)

    async def agent_down(self, address: str) -> None:
        """Stop listening (connection refused); state and key are kept, as in the agent's sqlite."""
        await self._servers[address].stop()

    async def agent_up(self, address: str, *, restarted: bool = False) -> None:
        """Listen again. `restarted`: it comes back as a new process (see restart_agent), not from a
        network outage (then its DAGs simply go on)."""
        server = self._servers[address]
        if not server.agent.serving:
            await server.start()
        if restarted:
            server.agent.cluster.agent_restarted(server.agent)

    async def restart_agent(self, address: str, *, down_seconds: float = 0.0) -> None:
        """The agent process restarts (ob/agent/engine/executor/executor.go): down for `down_seconds`, then up as a new process. Its
        main stop DAG fails if it was at node 1, 2, 4 or 7 (the sub-DAGs keep their locks); at 3, 5 or 6
        it goes on. Not a pause: the interrupted sub-task fails."""
        await self.agent_down(address)
        await asyncio.sleep(down_seconds)
        await self.agent_up(address, restarted=True)

    def set_observer(self, address: str, *, running: bool) -> None:
        """Start or kill the observer beside an agent (obState 3 or 0), e.g. to prepare ForceStopRequired."""
        agent = self.agent(address)
        agent.observer_running = running
        if running:
            agent.ob_connection = 3

    def set_ob_state(self, address: str, ob_state: int) -> None:
        """obState 0 (process down), 1 (up, no connection: booting), 2 (restricted connection) or 3."""
        if ob_state not in (0, 1, 2, 3):
            raise ValueError("obState must be 0, 1, 2 or 3")
        agent = self.agent(address)
        agent.observer_running = ob_state != 0
        agent.ob_connection = ob_state or 3

    def stall_agent(self, address: str, stalled: bool = True) -> None:
        """The agent keeps answering HTTP but its task engine runs nothing (sub-DAGs never park or finish,
        its own DAGs do not step): what makes node 2 and Wait reach their time limits."""
        self.agent(address).stalled = stalled

    def hold_lock(self, address: str, name: str = "Upgrade agent") -> Dag:
        """A parked maintenance DAG without main id holds the agent's lock (never force-passed, ob/agent/executor/ob/sub_dag.go)."""
        agent = self.agent(address)
        return agent.cluster.hold_lock(agent, name)

    def set_time_scale(self, scale: float) -> None:
        """Real seconds per obshell second for the engine's time limits (900 s waits etc.), every cluster."""
        if scale <= 0:
            raise ValueError("scale must be positive")
        for cluster in self.clusters:
            cluster.time_scale = float(scale)

    async def move_agent(self, address: str, *, port: int = 0) -> None:
        """The agent now listens on another port (0 = a free one); its DAG ids follow its new address,
        old ids are forwarded to the old address, where nothing answers (ob/agent/engine/task/task_dto.go ConvertToGenericID)."""
        server = self._servers.pop(address)
        agent = server.agent
        await server.stop()
        sock = bind_socket(agent.ip, port)
        agent.port = sock.getsockname()[1]
        agent.cluster.rename_ids(agent)
        self._servers[agent.address] = server
        await server.start(sock)

    def set_identity(self, address: str, identity: str) -> None:
        """Give an agent another identity (`/api/v1/info` `identity`), e.g. "SINGLE": stop and start then refuse
        with the identity error of the release (ob/agent/executor/ob/stop.go CheckStopObParam, README.md#obshell-releases-the-simulator-reproduces). FOLLOWER is not simulated (it forwards to a MASTER)."""
        if identity not in SIMULATED_IDENTITIES:
            raise ValueError(f"identity must be one of {', '.join(SIMULATED_IDENTITIES)}, not {identity!r}")
        self.agent(address).identity = identity

    def set_clock_offset(self, seconds: float) -> None:
        """Skew the agents' clock (auth expiry, /api/v1/time, envelope and DAG times) by `seconds` from ours.

        Process-wide: every simulated agent in this process shares the clock (see clock.py)."""
        clock.set_offset(seconds)

    def reset(self) -> None:
        """Clear faults, clock skew and the stop record, and bring every cluster back to running with no DAGs."""
        clock.set_offset(0)
        self.faults.clear()
        self.stops.clear()
        for cluster in self.clusters:
            cluster.reset()

    # ----------------------------------------------------------------------------------------------
    # Hooks used by the agents' servers

    @property
    def has_agent_password(self) -> bool:
        return self.config.agent_password is not None

    def agent_password_matches(self, candidate: str) -> bool:
        return self.config.agent_password is not None and candidate == self.config.agent_password

    def new_stop_record(self, agent: SimAgent, dropped: bool) -> StopRecord:
        record = StopRecord(agent.address, agent.cluster.name, time.time(), dropped=dropped)
        self.stops.append(record)
        return record

    def snapshot(self) -> dict[str, Any]:
        """The state of every cluster, as GET /__sim__/state shows it."""
        return {
            "clusters": [
                {
                    "name": cluster.name,
                    "agents": [
                        {
                            "address": agent.address,
                            "zone": agent.zone,
                            "identity": agent.identity,
                            "serving": agent.serving,
                            "obState": agent.ob_state,
                            "serviceStopped": agent.service_stopped,
                            "underMaintenance": agent.under_maintenance,
                            "requests": len(agent.request_times),
                            "peakInFlight": agent.peak_in_flight,
                            "dags": [
                                {
                                    **dag.to_wire(details=False),
                                    "terminalAt": dag.terminal_at,
                                    # Each node's name and times, as the agent's clock had them (Unix s).
                                    "nodeTimes": [
                                        [n.name, n.start_time.timestamp(), n.end_time.timestamp()]
                                        for n in dag.nodes
                                    ],
                                }
                                for dag in agent.dags.values()
                            ],
                        }
                        for agent in cluster.agents
                    ],
                }
                for cluster in self.clusters
            ]
        }

    def load(self) -> dict[str, Any]:
        """Per agent: arrival times of its API calls, their methods and paths, and the most it served at once
        (GET /__sim__/load)."""
        return {
            agent.address: {
                "times": list(agent.request_times),
                "paths": list(agent.request_paths),
                "peakInFlight": agent.peak_in_flight,
            }
            for agent in self.agents
        }

    async def control(self, request: web.Request) -> web.StreamResponse:
        """/__sim__/...: GET stops|state|faults|load, POST faults|reset. Plain JSON, no auth (loopback only).

        POST faults also takes actions: {"kind": "rotate_key"|"agent_down"|"agent_up"|"clock_offset"|"observer"|
        "identity", ...}, e.g. {"kind": "identity", "agent": "127.0.0.1:2886", "identity": "SINGLE"}."""
        action = request.path.removeprefix("/__sim__/").strip("/")
        try:
            if request.method == "GET" and action == "stops":
                return web.json_response({"stops": [r.to_wire() for r in self.stops]})
            if request.method == "GET" and action == "state":
                return web.json_response(self.snapshot())
            if request.method == "GET" and action == "load":
                return web.json_response(self.load())
            if request.method == "GET" and action == "faults":
                return web.json_response({"faults": self.faults.describe()})
            if request.method == "POST" and action == "reset":
                self.reset()
                return web.json_response({"ok": True})
            if request.method == "POST" and action == "faults":
                spec = json.loads(await request.read() or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("expected a JSON object")
                await self._apply_action(spec)
                return web.json_response({"ok": True})
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"ok": False, "error": f"no such control route {request.path}"}, status=404)

    async def _apply_action(self, spec: dict[str, Any]) -> None:
        kind = spec.get("kind")
        if kind == "rotate_key":
            self.rotate_key(spec.get("agent"))
        elif kind == "agent_down":
            # Let this answer leave first: the agent taken down may be the one serving this request.
            address = str(spec["agent"])
            self.agent(address)
            asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.agent_down(address))
            )
        elif kind == "agent_up":
            await self.agent_up(str(spec["agent"]), restarted=bool(spec.get("restarted", False)))
        elif kind == "agent_restart":
            # After this answer: the agent restarted may be the one serving this request.
            address = str(spec["agent"])
            self.agent(address)
            down = float(spec.get("downSeconds", 0.0))
            asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.restart_agent(address, down_seconds=down))
            )
        elif kind == "ob_state":
            self.set_ob_state(str(spec["agent"]), int(spec["obState"]))
        elif kind == "stall":
            self.stall_agent(str(spec["agent"]), bool(spec.get("stalled", True)))
        elif kind == "hold_lock":
            self.hold_lock(str(spec["agent"]), str(spec.get("name", "Upgrade agent")))
        elif kind == "time_scale":
            self.set_time_scale(float(spec["scale"]))
        elif kind == "move_agent":
            address = str(spec["agent"])
            self.agent(address)
            port = int(spec.get("port", 0))
            asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.move_agent(address, port=port))
            )
        elif kind == "clock_offset":
            self.set_clock_offset(float(spec["seconds"]))
        elif kind == "identity":
            self.set_identity(str(spec["agent"]), str(spec["identity"]))
        elif kind == "observer":
            self.set_observer(str(spec["agent"]), running=bool(spec["running"]))
        else:
            self.faults.add_from_wire(spec)


class SimulatorThread:
    """The simulator on its own event loop in a daemon thread, for synchronous code and Kopf processes.

    `with SimulatorThread(cfg) as sim:` starts it and stops it. Reading (`stops`, `agents`, `dag(...)`)
    and injecting (`faults`, which is thread-safe, `rotate_key`, `agent_down`, ...) are synchronous and
    hop into the simulator's loop where they touch its state.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.simulator = ObshellSimulator(config)
        self._loop = LoopThread("obshell-sim")

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._loop.start(self.simulator.start)

    def stop(self) -> None:
        self._loop.stop(self.simulator.stop)

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        """Run a coroutine on the simulator's loop and wait for its result."""
        return self._loop.call(coro, timeout)

    def _sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kwargs)

        return self.call(run())

    # Reading
    @property
    def faults(self) -> Faults:
        return self.simulator.faults

    @property
    def clusters(self) -> list[SimCluster]:
        return self.simulator.clusters

    @property
    def agents(self) -> list[SimAgent]:
        return self.simulator.agents

    def stops(self) -> list[StopRecord]:
        """A copy of the stop record, taken on the loop."""
        result: list[StopRecord] = self._sync(lambda: list(self.simulator.stops))
        return result

    @property
    def release(self) -> releases.Release:
        """The obshell release every agent behaves as (SimulatorConfig.version)."""
        return self.config.release

    def landed_stops(self, cluster: str | None = None) -> list[StopRecord]:
        result: list[StopRecord] = self._sync(self.simulator.landed_stops, cluster)
        return result

    def cluster_for(self, address: str) -> SimCluster:
        return self.simulator.cluster_for(address)

    def dag_wire(self, generic_id: str, *, details: bool = True) -> dict[str, Any]:
        """A DAG's wire form (a consistent snapshot, unlike the live Dag object)."""
        result: dict[str, Any] = self._sync(lambda: self.simulator.dag(generic_id).to_wire(details=details))
        return result

    def snapshot(self) -> dict[str, Any]:
        result: dict[str, Any] = self._sync(self.simulator.snapshot)
        return result

    # Injecting
    def load(self) -> dict[str, Any]:
        """Per agent: arrival times of its API calls and the most it served at once."""
        result: dict[str, Any] = self._sync(self.simulator.load)
        return result

    def rotate_key(self, address: str | None = None) -> None:
        self._sync(self.simulator.rotate_key, address)

    def agent_down(self, address: str) -> None:
        self.call(self.simulator.agent_down(address))

    def agent_up(self, address: str, *, restarted: bool = False) -> None:
        self.call(self.simulator.agent_up(address, restarted=restarted))

    def restart_agent(self, address: str, *, down_seconds: float = 0.0) -> None:
        self.call(self.simulator.restart_agent(address, down_seconds=down_seconds))

    def set_ob_state(self, address: str, ob_state: int) -> None:
        self._sync(self.simulator.set_ob_state, address, ob_state)

    def stall_agent(self, address: str, stalled: bool = True) -> None:
        self._sync(self.simulator.stall_agent, address, stalled)

    def hold_lock(self, address: str, name: str = "Upgrade agent") -> str:
        """Returns the holder's generic id."""
        result: str = self._sync(lambda: self.simulator.hold_lock(address, name).generic_id)
        return result

    def set_time_scale(self, scale: float) -> None:
        self._sync(self.simulator.set_time_scale, scale)

    def move_agent(self, address: str, *, port: int = 0) -> None:
        self.call(self.simulator.move_agent(address, port=port))

    def set_observer(self, address: str, *, running: bool) -> None:
        self._sync(self.simulator.set_observer, address, running=running)

    def set_clock_offset(self, seconds: float) -> None:
        self._sync(self.simulator.set_clock_offset, seconds)

    def set_identity(self, address: str, identity: str) -> None:
        self._sync(self.simulator.set_identity, address, identity)

    def reset(self) -> None:
        self._sync(self.simulator.reset)

    def iter_agent_addresses(self) -> Iterator[str]:
        return (agent.address for agent in self.simulator.agents)
