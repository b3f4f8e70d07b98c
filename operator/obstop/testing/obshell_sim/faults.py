"""Fault injection rules for the simulated agents.

The rules are plain data behind a lock, so tests may add them from any thread (SimulatorThread) or from
another process (POST /__sim__/faults). Rules with a count are consumed by the requests they hit.
Key rotation and agents going down are actions on the simulator, not rules: see ObshellSimulator.
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

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._stop_failures.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules] + [
                {"kind": "fail_stop", **asdict(failure)} for failure in self._stop_failures
            ]

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

    def _add(self, rule: RequestRule) -> None:
        with self._lock:
            self._rules.append(rule)
