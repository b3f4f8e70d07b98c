"""When to look at a stop DAG again: one algorithm, pure, fed with the node times of the DAGs already followed.

A fixed poll period either wastes calls while nothing can have happened or sees the end late. What obshell tells
makes better: every node of a DAG has its start and end time on the agent's own clock (no skew with ours, since
the answer's envelope carries that clock too), and a stop DAG's nodes have the same names every time
(obshell agent/executor/ob/stop_obsvr.go). From the DAGs followed so far the controller knows how long each node
took, at least and at most. So:

1. While the DAG is before its last node, the next poll aims at the last node: at its expected start plus its
   shortest time, and never later than one end step past the earliest time the whole DAG can end, the same
   lateness the polls in the last node allow (rule 2). That earliest end is the latest of three lower bounds:
   every node left at its shortest at once; their mean sum less SIGMAS standard deviations (the times of
   separate nodes partly cancel out, so this one is the tighter); and, once DAGs with as many stages were seen
   whole, the shortest of those less a margin. Landing in the last node tells exactly when it began (its
   `start_time`); landing early only sharpens the aim.
2. In the last node, the end lies between its start plus its shortest and its longest time: the first poll comes
   one end step after the shortest, then one every end step (END_STEP_SECONDS, or a quarter of the window when
   that node's time varies a lot), so the end is seen within about one step, for a poll or two.
3. A node that overruns everything seen before is looked at less and less often (a quarter of its overrun).
4. A node never seen yet counts as a typical node that takes at least as long as the shortest node seen; as the
   last node, after that shortest time it is looked at every end step (a quarter of its age once that is
   longer); before the last, less and less often (half its age). Nothing learned at all (the first DAG of a
   process): again in a second, then at half the DAG's age.
5. What one DAG teaches moves the others' aims: while a request waits for its next poll, each thing learned that
   still shapes a node's spread (its first NEWS_SAMPLES durations, or a whole DAG's) makes it aim again from
   the view it last had, by that view's clock (`NodeTimes.generation` counts them; follow.py wakes the
   waiting requests). So of many first DAGs run side by side, the ones ahead teach those behind before they
   spend polls of their own on what is already known.

Polls never come further apart than poll_max_seconds, so a long DAG's status stays fresh.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from obstop.controller.settings import Settings
from obstop.controller.status import parse_time
from obstop.obshell import DagDetail

# The spacing of polls where the end may come: sees it within half a second, one round trip included.
END_STEP_SECONDS = 0.4
# How many standard deviations below the mean sum of several nodes' times the soonest end of them is taken to be
# (rule 1; a quarter of the range is 0.87 of a uniform time's deviation, so about 1.5 % of sums of such times fall
# below it, and a poll aimed there comes one end step later).
SIGMAS = 2.5
# Nothing learned at all yet (the first DAG of this process): look again this soon.
_UNKNOWN_SECONDS = 1.0
# How many recent durations of one node are kept: the window follows a cluster that gets faster or slower.
_KEEP = 32
# How much wider than what was seen a node's times are taken to be, as a fraction of its mean, with one sample;
# it shrinks as 1/sqrt(samples).
_PRIOR_SPREAD = 0.3
# What is learned is bounded, whatever an agent answers: obshell's DAGs have a dozen node names and two or
# three stage counts; beyond this many names (or stage counts) the oldest is forgotten, and at most this many
# node-name sequences are kept per stage count.
_NAMES = 64
_SHAPES = 8
# A node's (or a whole DAG's) first this many durations still move its spread: each one is news to the requests
# waiting for their next poll (rule 5). Later ones hardly do, so they wake nobody.
NEWS_SAMPLES = 8
# The pseudo-node of a DAG's wait between its creation and its first node (obshell's engine picks it up).
QUEUED = "(queued)"
# What one request has learned of its DAG, in `learned`: the wait, each node, the whole DAG, keyed apart. obshell
# numbers DAGs and nodes separately and encodes both the same way (../shared/obshell-api.md §4.5: "node and
# sub-task ids use the same scheme"), so DAG n and node n of one agent have one generic id: keyed by id alone,
# an agent's first DAG was never learned whole once its first node was.
_NODE = "node "
_DAG = "dag "

_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True)
class Spread:
    """A node's duration as learned: its mean and the range its times fall in (seconds)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        mean = sum(samples) / len(samples)
        pad = mean * _PRIOR_SPREAD / math.sqrt(len(samples))
        return cls(mean, max(0.0, min(samples) - pad), max(samples) + pad)


class NodeTimes:
    """The durations of DAG nodes by name, and of whole stop DAGs by max_stage, from the DAGs this controller
    followed (the agent's own times). Shared by every request of the process; bounded (_NAMES, _SHAPES, _KEEP)
    whatever the agents answer."""

    def __init__(self) -> None:
        self.nodes: dict[str, deque[float]] = {}
        self.dags: dict[int, deque[float]] = {}
        self.shapes: dict[int, set[tuple[str, ...]]] = {}  # the node names of DAGs by max_stage
        self.at_least: dict[str, float] = {}  # nodes never seen finishing: the longest seen running
        self.generation = 0  # how many times something was learned that may move an aim (rule 5)

    def learn(self, dag: DagDetail, learned: set[str], agent_now: datetime | None = None) -> None:
        """Fold in the durations of the DAG's nodes that finished since (their keys go into `learned`, the set of
        one request), and of the DAG once it succeeded. A node still running for the first time anywhere tells
        at least how long it takes (by `agent_now`, the agent's clock of the answer)."""
        nodes = dag.nodes or ()
        current = dag.current_node
        if current is not None and current.state.value == "RUNNING" and current.name not in self.nodes:
            age = _age(current.start_time, agent_now)
            if age is not None and age > self.at_least.get(current.name, 0.0):
                _put(self.at_least, current.name, age)
        if nodes:
            shapes = self.shapes.get(dag.max_stage)
            if shapes is None:
                shapes = _put(self.shapes, dag.max_stage, set())
            if len(shapes) < _SHAPES:
                shapes.add(_names(*(node.name for node in nodes)))
            if QUEUED not in learned and nodes[0].state.value != "PENDING":
                seconds = _seconds_between(dag.start_time, nodes[0].start_time)
                if seconds is not None:
                    learned.add(QUEUED)
                    self._keep(self.nodes, QUEUED, seconds)
        for node in nodes:
            key = _NODE + node.id
            if node.state.value != "SUCCEED" or key in learned:
                continue
            learned.add(key)
            seconds = _seconds_between(node.start_time, node.end_time)
            if seconds is not None:
                self._keep(self.nodes, node.name, seconds)
        if dag.succeeded and _DAG + dag.id not in learned:
            learned.add(_DAG + dag.id)
            seconds = _seconds_between(dag.start_time, dag.end_time)
            if seconds is not None:
                self._keep(self.dags, dag.max_stage, seconds)

    def _keep(self, samples: dict[_K, deque[float]], key: _K, seconds: float) -> None:
        kept = samples.get(key)
        if kept is None:
            kept = _put(samples, key, deque(maxlen=_KEEP))
        kept.append(seconds)
        if len(kept) <= NEWS_SAMPLES:
            self.generation += 1

    def spread(self, name: str) -> Spread | None:
        samples = self.nodes.get(name)
        return Spread.of(samples) if samples else None

    def whole_dag(self, max_stage: int) -> Spread | None:
        """A new DAG's duration, before its nodes are known: as earlier DAGs with as many stages took, else the
        sum over the node names such DAGs had (its low end the soonest end of rule 1; of several name sequences,
        the one that may end soonest)."""
        samples = self.dags.get(max_stage)
        if samples:
            return Spread.of(samples)
        guesses = [self._sum((QUEUED, *shape)) for shape in self.shapes.get(max_stage, ())]
        known = [g for g in guesses if g is not None]
        return min(known, key=lambda s: s.low) if known else None

    def _sum(self, names: Iterable[str]) -> Spread | None:
        names = list(names)
        spreads = [self.spread(name) for name in names]
        if not any(spreads):
            return None
        parts = [s or self.unseen(name) for s, name in zip(spreads, names, strict=True)]
        return Spread(sum(p.mean for p in parts), soonest_end(parts), sum(p.high for p in parts))

    def unseen(self, name: str = "") -> Spread:
        """A node never seen finishing: of typical length, and at least as long as the shortest node seen, or as
        it was seen running in another DAG."""
        spreads = [Spread.of(s) for s in self.nodes.values()]
        at_least = self.at_least.get(name, 0.0)
        if not spreads:
            return Spread(max(_UNKNOWN_SECONDS, at_least), at_least, 4 * max(_UNKNOWN_SECONDS, at_least))
        mean = max(at_least, sum(s.mean for s in spreads) / len(spreads))
        return Spread(mean, max(at_least, min(s.low for s in spreads)), 4 * mean)


def next_poll_seconds(
    dag: DagDetail, times: NodeTimes, settings: Settings, *, agent_now: datetime | None
) -> float:
    """Seconds from now (the agent's `agent_now`, when its answer gave it) until the DAG should be read again."""
    return View.of(dag, agent_now).next_poll_seconds(times, settings)


@dataclass(frozen=True, slots=True)
class View:
    """What a poll's timing depends on in one answer about a DAG, small enough for every waiting request to keep
    (rule 5 aims again from it): the names of the nodes still to finish (None: no nodes shown yet), how long the
    first of them has been running, and the DAG's stage count and age, all by the clock of that answer."""

    rest: tuple[str, ...] | None
    elapsed: float
    max_stage: int
    age: float

    @classmethod
    def of(cls, dag: DagDetail, agent_now: datetime | None) -> View:
        nodes = dag.nodes or []
        age = _age(dag.start_time, agent_now) or 0.0
        if not nodes:  # the POST's answer, or a DAG from a list: no nodes yet, only how many there will be
            return cls(None, 0.0, dag.max_stage, age)
        if dag.state.value == "READY":  # not picked up yet: the wait, then every node
            return cls(_names(QUEUED, *(n.name for n in nodes)), age, dag.max_stage, age)
        index = max(1, min(dag.stage, len(nodes)))
        current, after = nodes[index - 1], nodes[index:]
        elapsed = (_age(current.start_time, agent_now) or 0.0) if current.state.value == "RUNNING" else 0.0
        return cls(_names(current.name, *(n.name for n in after)), elapsed, dag.max_stage, age)

    def next_poll_seconds(self, times: NodeTimes, settings: Settings) -> float:
        """Seconds from the answer this view is of until the DAG should be read again, by what `times` knows."""
        return _bounded(self._wanted(times), settings)

    def _wanted(self, times: NodeTimes) -> float:
        if not times.nodes:  # the first DAG of this process: back off with its age
            return max(_UNKNOWN_SECONDS, self.age / 2)
        if self.rest is None:
            whole = times.whole_dag(self.max_stage)
            return _UNKNOWN_SECONDS if whole is None else whole.low - self.age + END_STEP_SECONDS
        seen = times.dags.get(self.max_stage)
        return _aim(self.rest, self.elapsed, times, Spread.of(seen).low - self.age if seen else 0.0)


def _names(*names: str) -> tuple[str, ...]:
    # Every DAG of a kind has the same node names: one copy of each, however many requests keep a view.
    return tuple(sys.intern(name) for name in names)


def _aim(rest: Sequence[str], elapsed: float, times: NodeTimes, whole_low: float = 0.0) -> float:
    """`rest`: the names of the nodes still to finish, in order, the first one running for `elapsed` seconds;
    `whole_low`: the time left until the shortest whole DAG of this kind seen would have ended."""
    known = [times.spread(name) for name in rest]
    spreads = [s or times.unseen(name) for s, name in zip(known, rest, strict=True)]
    first = spreads[0]
    if known[0] is None and len(rest) == 1:  # a last node never seen: it may end at any moment
        floor = max(END_STEP_SECONDS, elapsed / 4)
    elif known[0] is None:  # never seen, and not the last: its end is not news, back off with its age
        floor = max(_UNKNOWN_SECONDS, elapsed / 2)
    elif elapsed > first.high:  # overrunning everything seen: less and less often
        floor = max(END_STEP_SECONDS, (elapsed - first.high) / 4)
    else:
        floor = END_STEP_SECONDS
    if len(rest) == 1:  # the last node: the end lies in its window
        step = max(END_STEP_SECONDS, (first.high - first.low) / 4) if known[0] is not None else 0.0
        return max(first.low - elapsed + max(step, END_STEP_SECONDS), step, floor)
    first_left = Spread(
        max(0.0, first.mean - elapsed), max(0.0, first.low - elapsed), max(0.0, first.high - elapsed)
    )
    to_last = first_left.mean + sum(s.mean for s in spreads[1:-1])
    soonest = max(soonest_end([first_left, *spreads[1:]]), whole_low)
    return max(min(to_last + spreads[-1].low, soonest + END_STEP_SECONDS), floor)


def soonest_end(parts: Sequence[Spread]) -> float:
    """The soonest a run of nodes can end (rule 1): at the sum of their shortest times, or, later and nearly as
    sure, at the sum of their means less SIGMAS standard deviations of that sum (each node's taken as a quarter
    of its range)."""
    deviation = math.sqrt(sum(((p.high - p.low) / 4) ** 2 for p in parts))
    return max(sum(p.low for p in parts), sum(p.mean for p in parts) - SIGMAS * deviation)


def _bounded(seconds: float, settings: Settings) -> float:
    return min(settings.poll_max_seconds, max(settings.poll_min_seconds, seconds))


def _age(start: str, agent_now: datetime | None) -> float | None:
    """Seconds since `start`, both on the agent's clock."""
    started = parse_time(start)
    if agent_now is None or started is None or started.tzinfo is None or agent_now.tzinfo is None:
        return None
    return max(0.0, (agent_now - started).total_seconds())


def _seconds_between(start: str, end: str) -> float | None:
    started, ended = parse_time(start), parse_time(end)
    if started is None or ended is None or ended < started:
        return None
    return (ended - started).total_seconds()


def _put(mapping: dict[_K, _V], key: _K, value: _V) -> _V:
    """mapping[key] = value, forgetting the oldest key first if the mapping holds _NAMES keys already."""
    if key not in mapping and len(mapping) >= _NAMES:
        del mapping[next(iter(mapping))]
    mapping[key] = value
    return value
