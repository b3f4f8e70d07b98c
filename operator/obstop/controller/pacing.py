"""When to look at a stop DAG again: one algorithm, pure, fed with what the controller learned of DAGs' pace.

Polling at a fixed period wastes calls while nothing can have happened and detects the end late. Instead the
next poll aims one `fine` step before the moment the DAG is expected to end, and once that is due polls every
`fine` seconds, so the end is seen within about `fine` seconds for a handful of calls. The expected end comes
from the best estimate there is:
1. the typical duration of each node, by name, learned from the agent's own node times in earlier DAGs;
2. else this DAG's own pace so far (the mean time between the stage changes seen);
3. else nothing: look again in a second.
Polls never come further apart than poll_max_seconds, so the status a person reads stays fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from obstop.controller.settings import Settings
from obstop.controller.status import parse_time
from obstop.obshell import DagDetail

_UNKNOWN_PACE_SECONDS = 1.0
_K = TypeVar("_K")


@dataclass
class StageClock:
    """How fast one request's DAG moves, as seen from here (monotonic time)."""

    stage: int
    since: float
    durations: list[float] = field(default_factory=list)
    learned: set[str] = field(default_factory=set)  # ids of finished nodes already folded into NodeTimes

    def observe(self, stage: int, now: float) -> None:
        if stage != self.stage:
            steps = max(1, stage - self.stage)
            self.durations.append((now - self.since) / steps)
            del self.durations[:-8]
            self.stage, self.since = stage, now

    @property
    def mean(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None


class NodeTimes:
    """Typical duration of each DAG node by name, and of whole stop DAGs by max_stage, learned from the DAGs this
    controller followed (the agent's own times: no clock skew). Shared by every request of the process."""

    def __init__(self) -> None:
        self.nodes: dict[str, float] = {}
        self.dags: dict[int, float] = {}

    def learn(self, dag: DagDetail, clock: StageClock) -> None:
        """Fold the durations of the DAG's newly finished nodes (and of the DAG, once it succeeded) in."""
        for node in dag.nodes or ():
            if node.state.value != "SUCCEED" or node.id in clock.learned:
                continue
            clock.learned.add(node.id)
            seconds = _seconds_between(node.start_time, node.end_time)
            if seconds is not None:
                _fold(self.nodes, node.name, seconds)
        if dag.succeeded:
            seconds = _seconds_between(dag.start_time, dag.end_time)
            if seconds is not None:
                _fold(self.dags, dag.max_stage, seconds)

    def expected_dag_seconds(self, max_stage: int) -> float | None:
        """A new DAG's expected duration (its nodes are not known yet): as long as earlier ones with as many
        stages, else that many nodes of typical length."""
        known = self.dags.get(max_stage)
        if known is None and self.nodes:
            known = max_stage * sum(self.nodes.values()) / len(self.nodes)
        return known

    def fine_seconds(self, dag: DagDetail | None, settings: Settings) -> float:
        """The spacing of polls once a DAG's end is due: a quarter of its last node's typical time, at most 1 s."""
        last = dag.nodes[-1].name if dag is not None and dag.nodes else None
        typical = self.nodes.get(last) if last else None
        if typical is None and self.nodes:
            typical = min(self.nodes.values())
        return fine_poll_seconds(typical, settings)


def expected_remaining(
    dag: DagDetail, seconds_in_node: float | None, node_seconds: Mapping[str, float]
) -> float | None:
    """Seconds until `dag` should finish: what is left of its current node plus the typical durations of the
    nodes after it. None when the DAG's nodes are unknown or nothing has been learned yet; a node never seen
    takes the mean of those that were."""
    nodes = dag.nodes or []
    if not nodes or not node_seconds:
        return None
    fallback = sum(node_seconds.values()) / len(node_seconds)

    def typical(name: str) -> float:
        return node_seconds.get(name, fallback)

    index = max(1, min(dag.stage, len(nodes)))
    current = nodes[index - 1]
    left = typical(current.name) - (seconds_in_node or 0.0) if current.state.value == "RUNNING" else 0.0
    if current.state.value in ("PENDING", "READY"):
        left = typical(current.name)
    return max(0.0, left) + sum(typical(node.name) for node in nodes[index:])


def remaining_seconds(
    dag: DagDetail,
    times: NodeTimes,
    clock: StageClock | None,
    *,
    seconds_in_node: float | None,
    seconds_in_stage: float,
) -> float | None:
    """The best estimate of the seconds until `dag` ends (see the module's docstring), or None."""
    learned = expected_remaining(dag, seconds_in_node, times.nodes)
    if learned is not None:
        return learned
    pace = clock.mean if clock is not None else None
    if pace is None:
        return None
    stages_after = max(0, dag.max_stage - dag.stage)
    return max(0.0, pace - seconds_in_stage) + pace * stages_after


def next_poll_seconds(remaining: float | None, fine: float, settings: Settings) -> float:
    """Aim one `fine` step before the DAG's expected end; once it is due, poll every `fine`; unknown: 1 s."""
    low, high = settings.poll_min_seconds, settings.poll_max_seconds
    if remaining is None:
        wanted = _UNKNOWN_PACE_SECONDS
    else:
        wanted = remaining - fine if remaining > 2 * fine else fine
    return min(high, max(low, wanted))


def fine_poll_seconds(last_node_seconds: float | None, settings: Settings) -> float:
    """A quarter of the last node's typical time, within [poll_min_seconds, 1 s]."""
    if last_node_seconds is None:
        return min(1.0, settings.poll_max_seconds)
    return min(1.0, settings.poll_max_seconds, max(settings.poll_min_seconds, last_node_seconds / 4))


def seconds_in_node(dag: DagDetail, agent_now: datetime | None) -> float | None:
    """How long the current node has been running, by the agent's own clock (no skew with ours)."""
    node = dag.current_node
    started = parse_time(node.start_time) if node is not None else None
    if agent_now is None or started is None or started.tzinfo is None or agent_now.tzinfo is None:
        return None
    return max(0.0, (agent_now - started).total_seconds())


def _seconds_between(start: str, end: str) -> float | None:
    started, ended = parse_time(start), parse_time(end)
    if started is None or ended is None or ended < started:
        return None
    return (ended - started).total_seconds()


def _fold(typical: dict[_K, float], key: _K, seconds: float, weight: float = 0.3) -> None:
    """Exponentially weighted mean: recent DAGs count most, one odd DAG does not swing it."""
    old = typical.get(key)
    typical[key] = seconds if old is None else old + weight * (seconds - old)
