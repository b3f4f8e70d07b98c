"""Helpers of the reliability tests: waiting on conditions, reading the simulator's stop record, handing out
clusters of a shared stack."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from obstop.testing.obshell_sim import StopRecord
from obstop.testing.stack import Stack

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; return that. TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout}s")
        time.sleep(0.02)


def stops_on(stack: Stack, cluster: int) -> list[StopRecord]:
    """Every POST /api/v1/ob/stop that cluster's agents received (landed or refused)."""
    name = stack.sim.clusters[cluster].name
    return [r for r in stack.sim.stops() if r.cluster == name]


def landed_on(stack: Stack, cluster: int) -> list[StopRecord]:
    return [r for r in stops_on(stack, cluster) if r.landed]


def rule_taken(stack: Stack, route: str) -> bool:
    """True once no injected request rule for `route` is left: a request hit it (and is being held)."""
    return not any(rule.get("route") == route for rule in stack.sim.faults.describe())


def hold_next(stack: Stack, route: str, agent: str, *, method: str | None = None) -> None:
    """Hold the next matching request at the agent for a long time (it is executed, its answer waits)."""
    stack.sim.faults.delay(60, route=route, agent=agent, method=method, times=1)


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status.get("conditions") or ()}


class Clusters:
    """Hands out the clusters of a shared stack, one per test, so tests never see each other's state."""

    def __init__(self, count: int) -> None:
        self._next: Iterator[int] = iter(range(count))

    def take(self) -> int:
        return next(self._next)
