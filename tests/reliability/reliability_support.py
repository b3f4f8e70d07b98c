"""Helpers of the reliability tests (waiting is obstop.testing.waiting): reading the simulator's stop record, handing out
clusters of a shared stack, and reading what the controller did at the real API server (through the fault
proxy's record or the server's own audit log)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from obstop.testing.apiproxy import FaultProxy
from obstop.testing.controlplane import AuditEvent, ControlPlane
from obstop.testing.obshell_sim import StopRecord
from obstop.testing.stack import Stack

# The controller's two API clients: its own (Secret reads, the waker) and Kopf's (watches, status patches).
CONTROLLER_AGENTS = ("obstop/", "kopf/")


def stops_on(stack: Stack, cluster: int) -> list[StopRecord]:
    """Every POST /api/v1/ob/stop that cluster's agents received (landed or refused)."""
    name = stack.sim.clusters[cluster].name
    return [r for r in stack.sim.stops() if r.cluster == name]


def landed_on(stack: Stack, cluster: int) -> list[StopRecord]:
    return [r for r in stops_on(stack, cluster) if r.landed]


def assert_one_stop(stack: Stack, cluster: int, status: dict[str, Any]) -> None:
    """Exactly one stop reached the cluster's agents (not even a refused second one), and it is the DAG that
    the status reports."""
    landed = landed_on(stack, cluster)
    assert len(landed) == 1, [r.to_wire() for r in stops_on(stack, cluster)]
    assert landed[0].dag_id == status["dag"]["id"], (landed[0].to_wire(), status["dag"])
    assert len(stops_on(stack, cluster)) == 1, "a second stop was sent (even if refused)"


def rule_taken(stack: Stack, route: str) -> bool:
    """True once no injected request rule for `route` is left: a request hit it (and is being held)."""
    return not any(rule.get("route") == route for rule in stack.sim.faults.describe())


def hold_next(stack: Stack, route: str, agent: str, *, method: str | None = None) -> None:
    """Hold the next matching request at the agent for a long time (it is executed, its answer waits)."""
    stack.sim.faults.delay(60, route=route, agent=agent, method=method, times=1)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions") or ()}


def submitted(status: dict[str, Any]) -> bool:
    """The controller knows the DAG (Submitted or Running; it may not poll again before the DAG should end)."""
    return bool((status.get("dag") or {}).get("id"))


def dag_running(stack: Stack, dag_id: str) -> bool:
    """The DAG has not finished on the agent (so a fault injected now hits a running request)."""
    return stack.sim.dag_wire(dag_id, details=False)["state"] not in ("SUCCEED", "FAILED")


def proxy_of(stack: Stack) -> FaultProxy:
    """The fault proxy between the stack's controller and the API server (Stack(..., proxy=True))."""
    assert stack.proxy is not None, "this test needs Stack(proxy=True)"
    return stack.proxy


def control_plane_of(stack: Stack) -> ControlPlane:
    assert stack.control_plane is not None, "this test needs a local control plane"
    return stack.control_plane


def controller_audit(cp: ControlPlane, *, since: int = 0, **criteria: Any) -> list[AuditEvent]:
    """The controller's calls in the real API server's audit log (told apart by user agent), from the
    `since`-th audit event on, that match every criterion (AuditEvent fields, e.g. resource="secrets")."""
    return [
        e
        for e in cp.audit_events()[since:]
        if e.user_agent.startswith(CONTROLLER_AGENTS) and all(getattr(e, k) == v for k, v in criteria.items())
    ]


class Clusters:
    """Hands out the clusters of a shared stack, one per test, so tests never see each other's state."""

    def __init__(self, count: int) -> None:
        self._next: Iterator[int] = iter(range(count))

    def take(self) -> int:
        return next(self._next)
