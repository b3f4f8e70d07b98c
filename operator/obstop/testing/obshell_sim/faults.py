"""Fault injection rules for the simulated agents.

The rules are plain data behind a lock, so tests may add them from any thread (SimulatorThread) or from
another process (POST /__sim__/faults). Rules with a count are consumed by the requests they hit.
Key rotation and agents going down are actions on the simulator, not rules: see ObshellSimulator.

Every fault as the control route takes it (POST /__sim__/faults, plain JSON; "agent" is "ip:port" and
may be left out to mean every agent unless said otherwise):
- {"kind": "fail_stop", "node": <name or 1-based stage>, "errCode": "...", "message": "...", "times": 1}
  the next stop DAG(s) fail at that node (nodes 2, 4, 6 and 7 then pass their sub-DAGs, ob/agent/executor/ob/sub_dag.go).
- {"kind": "delay", "seconds": 1.5, "route": "/api/v1/ob/stop", "method": "POST", "times": 1}
- {"kind": "drop", "route": "/api/v1/ob/stop", "method": "POST", "times": 1}
- {"kind": "error", "route": "...", "method": "...", "times": 2}   500 Common.Unexpected, not executed
- {"kind": "busy_sqlite", "agent": "...", "times": 2, "message": "database is locked"}
  DAG lookups of DAGs that agent owns (GET/POST /api/v1/task/dag/{id}, wherever asked) answer 404
  Task.NotFound "Task not found: <message>" (ob/agent/engine/task/task_dto.go ConvertToGenericID: any lookup error is a 404). `times` absent = until cleared.
- {"kind": "mysql_error", "agent": "...", "times": 1, "message": "Error 4012 (HY000): Timeout, ..."}
  an immediate SERVER/ZONE stop received by that agent answers 400 MySQL.Error <message> from the OB
  queries of the immediate checks (ob/agent/executor/ob/stop.go CheckStopObParam steps 7-8, ob/agent/errors/errorcode.go); transient: the next one may pass.
- {"kind": "fail_kill", "agent": "...", "times": 1}
  the next kill on that agent does not take: "Stop observer" fails after 15x5 s (scaled) with
  OB.Cluster.AsyncOperationTimeout, the sub-DAG parks at the wrong stage, the main DAG ends
  Task.SubDag.NotAllSucceed (ob/agent/executor/ob/sub_dag.go).
Actions on the simulator (same route, see ObshellSimulator._apply_action):
- {"kind": "agent_down", "agent": "..."} / {"kind": "agent_up", "agent": "...", "restarted": false}
  unreachable (connection refused) and back; its DAGs do not progress meanwhile. "restarted": true
  comes back as a new process (the restart semantics below).
- {"kind": "agent_restart", "agent": "...", "downSeconds": 0.0}  the agent process restarts (ob/agent/engine/executor/executor.go):
  its main stop DAG fails if it was at node 1, 2, 4 or 7 (sub-DAGs stay parked holding their locks);
  at node 3, 5 or 6 it resumes. The pid and startAt change.
- {"kind": "ob_state", "agent": "...", "obState": 0|1|2|3}  0 observer down, 1 up without connection
  (booting), 2 restricted connection, 3 available; anything but 3 refuses non-force stops (ob/agent/repository/db/oceanbase/status.go).
- {"kind": "observer", "agent": "...", "running": true|false}  obState 3 or 0.
- {"kind": "stall", "agent": "...", "stalled": true}  the agent answers HTTP but its task engine runs
  nothing (sub-DAGs created there never park, advanced ones never finish): node 2 and Wait time out.
- {"kind": "hold_lock", "agent": "...", "name": "Upgrade agent"}  a parked maintenance DAG that is not a
  start/stop sub-DAG holds the agent's lock (no main id: never force-passed, ob/agent/executor/ob/sub_dag.go); PASS it by hand.
- {"kind": "time_scale", "scale": 0.001}  real seconds per obshell second for the engine's time limits
  (node 2 900x1 s per agent, Wait 900x1 s + ~450 s, kill 15x5 s, every sub-task 3600 s); default 1.
- {"kind": "move_agent", "agent": "...", "port": 0}  the agent now listens on another port (0 = any free
  one); ids naming the old address are forwarded there (ob/agent/engine/task/task_dto.go ConvertToGenericID).
- {"kind": "clock_offset", "seconds": 30}, {"kind": "rotate_key", "agent": "..."}
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

STOP_ROUTE = "/api/v1/ob/stop"


@dataclass
class RequestRule:
    kind: str  # "error" (answer 500 Common.Unexpected without executing), "delay" or "drop"
    route: str | None = None  # a path prefix; None = every obshell route
    agent: str | None = None  # "ip:port"; None = every agent
    method: str | None = None
    remaining: int | None = None  # None = until cleared
    seconds: float = 0.0

    def matches(self, agent: str, method: str, path: str) -> bool:
        return (
            (self.agent is None or self.agent == agent)
            and (self.method is None or self.method.upper() == method.upper())
            and (self.route is None or path.startswith(self.route))
        )


@dataclass
class StopFailure:
    """The next matching stop DAG fails at `node` (a node name or a 1-based stage) with this error."""

    node: str | int
    err_code: str = "Sim.Injected.Failure"
    message: str = "injected failure"
    agent: str | None = None
    remaining: int = 1

    def applies_to(self, agent: str, node_names: list[str]) -> bool:
        if self.agent is not None and self.agent != agent:
            return False
        if isinstance(self.node, int):
            return 1 <= self.node <= len(node_names)
        return self.node in node_names

    def hits(self, stage: int, node_name: str) -> bool:
        return self.node == stage if isinstance(self.node, int) else self.node == node_name


@dataclass
class CountedFault:
    """A fault consumed by the events it hits: `remaining` None = until cleared."""

    kind: str  # "busy_sqlite", "mysql_error" or "fail_kill"
    agent: str | None = None
    remaining: int | None = 1
    message: str = ""


BUSY_SQLITE_MESSAGE = "database is locked"
MYSQL_TIMEOUT_MESSAGE = (
    "Error 4012 (HY000): Timeout, query has reached the maximum query timeout: 60000000(us), "
    "maybe you should increase the ob_query_timeout"
)


@dataclass
class RequestFaults:
    """What the rules decided for one request."""

    error: bool = False
    delay: float = 0.0
    drop: bool = False


@dataclass
class Faults:
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rules: list[RequestRule] = field(default_factory=list)
    _stop_failures: list[StopFailure] = field(default_factory=list)
    _counted: list[CountedFault] = field(default_factory=list)

    # ----------------------------------------------------------------------------------------------
    # Adding rules

    def fail_stop(
        self,
        node: str | int,
        err_code: str = "Sim.Injected.Failure",
        message: str = "injected failure",
        *,
        agent: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` stop DAGs (received by `agent`, or any) fail at `node` (name or 1-based stage),
        with a last log line `ERROR: [<err_code>]: <message>`. A DAG without that node is not affected."""
        with self._lock:
            self._stop_failures.append(StopFailure(node, err_code, message, agent, times))

    def delay(
        self,
        seconds: float,
        *,
        route: str | None = None,
        agent: str | None = None,
        method: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching requests `seconds` late (the request is executed first, then the answer waits)."""
        self._add(RequestRule("delay", route, agent, method, times, seconds))

    def drop_responses(
        self,
        *,
        route: str | None = STOP_ROUTE,
        agent: str | None = None,
        method: str | None = "POST",
        times: int = 1,
    ) -> None:
        """Execute matching requests, then close the connection without an answer ("did the stop land?")."""
        self._add(RequestRule("drop", route, agent, method, times))

    def error_burst(
        self, times: int, *, route: str | None = None, agent: str | None = None, method: str | None = None
    ) -> None:
        """The next `times` matching requests answer 500 Common.Unexpected without being executed."""
        self._add(RequestRule("error", route, agent, method, times))

    def busy_sqlite(
        self, *, agent: str | None = None, times: int | None = None, message: str = BUSY_SQLITE_MESSAGE
    ) -> None:
        """Lookups of DAGs owned by `agent` fail like a busy sqlite: 404 Task.NotFound "Task not found: <message>"."""
        self._count(CountedFault("busy_sqlite", agent, times, message))

    def mysql_error(
        self, *, agent: str | None = None, times: int = 1, message: str = MYSQL_TIMEOUT_MESSAGE
    ) -> None:
        """The next `times` immediate SERVER/ZONE stops (received by `agent`) answer 400 MySQL.Error."""
        self._count(CountedFault("mysql_error", agent, times, message))

    def fail_kill(self, *, agent: str | None = None, times: int = 1) -> None:
        """The next `times` kills (on `agent`) time out: OB.Cluster.AsyncOperationTimeout after 15x5 s (scaled)."""
        self._count(CountedFault("fail_kill", agent, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._stop_failures.clear()
            self._counted.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return (
                [asdict(rule) for rule in self._rules]
                + [{"kind": "fail_stop", **asdict(failure)} for failure in self._stop_failures]
                + [asdict(fault) for fault in self._counted]
            )

    def add_from_wire(self, spec: dict[str, Any]) -> None:
        """A rule as POST /__sim__/faults sends it: {"kind": "fail_stop"|"delay"|"drop"|"error", ...}."""
        kind = spec.get("kind")
        where = {key: spec[key] for key in ("route", "agent", "method") if key in spec}
        if kind == "fail_stop":
            self.fail_stop(
                spec["node"],
                spec.get("errCode", "Sim.Injected.Failure"),
                spec.get("message", "injected failure"),
                agent=spec.get("agent"),
                times=int(spec.get("times", 1)),
            )
        elif kind == "delay":
            self.delay(float(spec["seconds"]), times=spec.get("times"), **where)
        elif kind == "drop":
            self.drop_responses(times=int(spec.get("times", 1)), **where)
        elif kind == "error":
            self.error_burst(int(spec.get("times", 1)), **where)
        elif kind == "busy_sqlite":
            times = spec.get("times")
            self.busy_sqlite(
                agent=spec.get("agent"),
                times=None if times is None else int(times),
                message=str(spec.get("message", BUSY_SQLITE_MESSAGE)),
            )
        elif kind == "mysql_error":
            self.mysql_error(
                agent=spec.get("agent"),
                times=int(spec.get("times", 1)),
                message=str(spec.get("message", MYSQL_TIMEOUT_MESSAGE)),
            )
        elif kind == "fail_kill":
            self.fail_kill(agent=spec.get("agent"), times=int(spec.get("times", 1)))
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    # ----------------------------------------------------------------------------------------------
    # Consuming rules (the simulated agents call these)

    def take_request_faults(self, agent: str, method: str, path: str) -> RequestFaults:
        result = RequestFaults()
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(agent, method, path):
                    continue
                if rule.kind == "error":
                    result.error = True
                elif rule.kind == "delay":
                    result.delay = max(result.delay, rule.seconds)
                elif rule.kind == "drop":
                    result.drop = True
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
        return result

    def take_stop_failure(self, agent: str, node_names: list[str]) -> StopFailure | None:
        with self._lock:
            for failure in self._stop_failures:
                if failure.applies_to(agent, node_names):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._stop_failures.remove(failure)
                    return StopFailure(failure.node, failure.err_code, failure.message, failure.agent, 1)
        return None

    def take(self, kind: str, agent: str) -> CountedFault | None:
        """Consume one matching counted fault (busy_sqlite / mysql_error / fail_kill) for `agent`."""
        with self._lock:
            for fault in self._counted:
                if fault.kind == kind and (fault.agent is None or fault.agent == agent):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._counted.remove(fault)
                    return fault
        return None

    def _count(self, fault: CountedFault) -> None:
        with self._lock:
            self._counted.append(fault)

    def _add(self, rule: RequestRule) -> None:
        with self._lock:
            self._rules.append(rule)
