"""When the controller reads a stop DAG again (obstop.controller.pacing), a pure function of what it learned.

The last tests drive the planner through whole DAGs on a logical clock: each DAG's nodes take a random time
(seeded) around a typical one, as real agents' do, and the planner sees only what a GET of the DAG would show
at the moment it asks. No I/O and no real time: the figures (polls per DAG, how late the end is seen) are
exact for the run and the same on any machine.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from obstop.controller import pacing
from obstop.controller.follow import NEWS_SPACING_SECONDS
from obstop.controller.settings import Settings
from obstop.obshell import DagDetail, ids

SETTINGS = Settings()
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)
STEP = pacing.END_STEP_SECONDS


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def go(seconds: float) -> str:
    return at(seconds).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Timeline:
    """One DAG on the agent: created at `created`, picked up `queued` seconds later, then its nodes in order."""

    created: float
    queued: float
    nodes: Sequence[tuple[str, float]]
    dag_id: str = "21270000000000011"
    node_ids: str | None = None  # node i's id is this followed by i + 1 (obshell's scheme); else dag_id-i

    @property
    def end(self) -> float:
        return self.created + self.queued + sum(seconds for _, seconds in self.nodes)

    def posted(self) -> DagDetail:
        """What the POST answers: READY, no nodes."""
        return self._dag("READY", 1, None, self.created)

    def seen(self, t: float) -> DagDetail:
        """What a GET of the DAG shows at `t`."""
        start = self.created + self.queued
        if t < start:
            pending = [self._node(i, name, "PENDING", None, None) for i, (name, _) in enumerate(self.nodes)]
            return self._dag("READY", 1, pending, None)
        nodes, stage, state = [], len(self.nodes), "SUCCEED"
        for i, (name, seconds) in enumerate(self.nodes):
            end = start + seconds
            if t >= end:
                nodes.append(self._node(i, name, "SUCCEED", start, end))
            elif t >= start:
                nodes.append(self._node(i, name, "RUNNING", start, None))
                stage, state = i + 1, "RUNNING"
            else:
                nodes.append(self._node(i, name, "PENDING", None, None))
            start = end
        return self._dag(state, stage, nodes, self.end if state == "SUCCEED" else None)

    def _node(self, i: int, name: str, state: str, start: float | None, end: float | None) -> dict[str, Any]:
        return {
            "id": f"{self.dag_id}-{i}" if self.node_ids is None else f"{self.node_ids}{i + 1}",
            "name": name,
            "state": state,
            "operator": "RUN",
            "start_time": go(start) if start is not None else "",
            "end_time": go(end) if end is not None else "",
        }

    def _dag(
        self, state: str, stage: int, nodes: list[dict[str, Any]] | None, end: float | None
    ) -> DagDetail:
        return DagDetail.model_validate(
            {
                "id": self.dag_id,
                "name": "Stop OB",
                "stage": stage,
                "max_stage": len(self.nodes),
                "state": state,
                "operator": "RUN",
                "start_time": go(self.created),
                "end_time": go(end) if end is not None else "",
                "nodes": nodes,
            }
        )


def timeline(created: float, nodes: Sequence[tuple[str, float]], queued: float = 1.0, **kw: Any) -> Timeline:
    return Timeline(created, queued, tuple(nodes), **kw)


def learned_from(*lines: Timeline) -> pacing.NodeTimes:
    times = pacing.NodeTimes()
    for line in lines:
        times.learn(line.seen(line.end), set())
    return times


NODES = [("inform", 2.0), ("ready", 2.0), ("advance", 2.0), ("wait", 4.0), ("end", 2.0)]


def test_a_spread_is_what_was_seen_widened_less_as_samples_grow() -> None:
    one = pacing.Spread.of([2.0])
    assert (one.mean, one.low, one.high) == pytest.approx((2.0, 1.4, 2.6))  # 30 % either way
    many = pacing.Spread.of([1.5, 2.5] * 8)
    assert many.mean == pytest.approx(2.0)
    assert many.low == pytest.approx(1.5 - 0.6 / 4) and many.high == pytest.approx(2.5 + 0.6 / 4)


def test_nodes_are_learned_once_each_and_the_dag_once_it_succeeded() -> None:
    line = timeline(0.0, NODES)
    times, learned = pacing.NodeTimes(), set[str]()
    times.learn(line.seen(5.5), learned)  # inform and ready done, advance running
    times.learn(line.seen(5.6), learned)  # the same nodes again: not counted twice
    assert {name: list(s) for name, s in times.nodes.items()} == {
        pacing.QUEUED: [pytest.approx(1.0)],
        "inform": [pytest.approx(2.0)],
        "ready": [pytest.approx(2.0)],
    }
    assert times.dags == {}
    times.learn(line.seen(line.end), learned)
    times.learn(line.seen(line.end + 1), learned)
    assert list(times.dags[5]) == [pytest.approx(13.0)]
    assert set(times.nodes) == {pacing.QUEUED, *(name for name, _ in NODES)}
    assert times.shapes[5] == {tuple(name for name, _ in NODES)}


def test_an_agents_first_dag_is_learned_whole_though_its_first_node_has_the_same_id() -> None:
    """obshell numbers DAGs and nodes separately and encodes both as the agent's generic ids (fact sheet §4.5): on
    a fresh agent, DAG 1 and node 1 share an id. The DAG's duration is learned all the same."""
    first = ids.agent_dag_id("10.0.0.5", 2886, 1).encode()
    line = dataclasses.replace(timeline(0.0, NODES, dag_id=first), node_ids=first[:-1])
    assert line.seen(line.end).nodes[0].id == first  # type: ignore[index]
    times, learned = pacing.NodeTimes(), set[str]()
    times.learn(line.seen(5.5), learned)  # node 1 done
    times.learn(line.seen(line.end), learned)
    assert list(times.dags[5]) == [pytest.approx(13.0)]
    assert list(times.nodes["inform"]) == [pytest.approx(2.0)], "and node 1 once"


def test_only_the_first_durations_of_a_node_or_a_dag_are_news() -> None:
    times = pacing.NodeTimes()
    generations = []
    for i in range(pacing.NEWS_SAMPLES + 3):
        line = timeline(100.0 * i, NODES, dag_id=f"2127000000000{i:04d}")
        times.learn(line.seen(line.end), set())
        generations.append(times.generation)
    per_dag = 1 + len(NODES) + 1  # the queue, each node, the whole DAG
    assert generations[: pacing.NEWS_SAMPLES] == [per_dag * (i + 1) for i in range(pacing.NEWS_SAMPLES)]
    assert set(generations[pacing.NEWS_SAMPLES - 1 :]) == {per_dag * pacing.NEWS_SAMPLES}, (
        "later ones wake nobody"
    )
    assert len(times.nodes["inform"]) == pacing.NEWS_SAMPLES + 3, "but they are still learned"
    line = timeline(5000.0, NODES)
    times.learn(line.seen(1.5 + 5000.0), set(), at(5001.5))  # a node seen running, not finished: no news
    assert times.generation == per_dag * pacing.NEWS_SAMPLES


def test_a_view_kept_for_a_later_aim_is_small_and_aims_as_the_answer_did() -> None:
    times = learned_from(*(timeline(0.0, NODES) for _ in range(4)))
    one, other = timeline(0.0, NODES), timeline(50.0, NODES, dag_id="21270000000000012")
    views = [pacing.View.of(one.seen(8.0), at(8.0)), pacing.View.of(other.seen(58.5), at(58.5))]
    assert views[0].rest == ("wait", "end") and views[0].elapsed == pytest.approx(1.0)
    assert all(a is b for a, b in zip(views[0].rest, views[1].rest, strict=True)), "one copy of each name"
    for view, (line, t) in zip(views, ((one, 8.0), (other, 58.5)), strict=True):
        direct = pacing.next_poll_seconds(line.seen(t), times, SETTINGS, agent_now=at(t))
        assert view.next_poll_seconds(times, SETTINGS) == direct
    posted = pacing.View.of(one.posted(), at(0.5))
    assert posted.rest is None and posted.age == pytest.approx(0.5)
    assert posted.next_poll_seconds(times, SETTINGS) == pytest.approx(times.whole_dag(5).low - 0.5 + STEP)  # type: ignore[union-attr]


def test_what_is_learned_stays_bounded_whatever_names_and_stage_counts_an_agent_sends() -> None:
    times = pacing.NodeTimes()
    times.learn(timeline(0.0, NODES).seen(13.0), set())
    for i in range(500):  # a broken or hostile agent: new node names and a new stage count every time
        odd = [(f"node-{i}-{j}", 1.0) for j in range(1 + i % 90)]
        line = Timeline(10.0 * i, 0.5, odd, dag_id=f"2127{i:013d}")
        times.learn(line.seen(line.end), set())
        running = Timeline(10.0 * i, 0.5, [(f"slow-{i}", 9.0)], dag_id=f"3127{i:013d}")
        times.learn(running.seen(10.0 * i + 3), set(), at(10.0 * i + 3))
    assert len(times.nodes) <= 64 and len(times.at_least) <= 64 and len(times.dags) <= 64
    assert len(times.shapes) <= 64 and all(len(shapes) <= 8 for shapes in times.shapes.values())
    assert "node-499-2" in times.nodes and "inform" not in times.nodes, "the oldest names go first"
    for i in range(20):  # and many shapes of one stage count: the first ones are kept
        line = timeline(0.0, [(f"shape-{i}-{j}", 1.0) for j in range(5)], dag_id=f"2128{i:013d}")
        times.learn(line.seen(line.end), set())
    assert len(times.shapes[5]) == 8


def test_the_first_dag_of_a_process_is_read_again_in_a_second_then_at_half_its_age() -> None:
    line, times = timeline(0.0, NODES), pacing.NodeTimes()
    delays = [
        pacing.next_poll_seconds(line.seen(t), times, SETTINGS, agent_now=at(t)) for t in (1.5, 2.9, 11.0)
    ]
    assert delays == pytest.approx([1.0, 1.45, 5.5])
    assert pacing.next_poll_seconds(line.posted(), times, SETTINGS, agent_now=at(0)) == 1.0


def test_a_new_dag_is_first_read_one_step_after_the_earliest_end_earlier_dags_allow() -> None:
    times = learned_from(timeline(0.0, NODES), timeline(0.0, NODES))
    whole = times.whole_dag(5)
    assert whole is not None and whole.mean == pytest.approx(13.0)
    assert whole.low == pytest.approx(13.0 - 13.0 * 0.3 / 2**0.5)
    line = timeline(100.0, NODES)
    assert pacing.next_poll_seconds(line.posted(), times, SETTINGS, agent_now=at(100.0)) == pytest.approx(
        whole.low + STEP
    )
    # Counted from the DAG's creation on the agent's clock, and bounded by poll_max_seconds.
    later = pacing.next_poll_seconds(line.posted(), times, SETTINGS, agent_now=at(103.0))
    assert later == pytest.approx(whole.low - 3 + STEP)
    short = dataclasses.replace(SETTINGS, poll_max_seconds=5.0)
    assert pacing.next_poll_seconds(line.posted(), times, short, agent_now=at(100.0)) == 5.0


def test_before_any_dag_ended_the_node_names_seen_give_the_first_aim() -> None:
    running = timeline(0.0, NODES)
    times = pacing.NodeTimes()
    times.learn(running.seen(5.5), set())  # queued, inform and ready known; advance, wait, end never seen
    whole = times.whole_dag(5)
    assert whole is not None
    # A node never seen counts as at least the shortest seen (queued: 1 s, less 30 % with one sample).
    assert whole.low == pytest.approx(0.7 + 1.4 + 1.4 + 3 * 0.7)


def test_the_soonest_end_of_several_nodes_is_their_mean_sum_less_its_spread_but_not_below_their_shortest() -> (
    None
):
    two = pacing.Spread(2.0, 1.5, 2.5)  # a quarter of the range: 0.25 s
    # One node: 2 - 2.5 * 0.25 = 1.375 is below its shortest time, which holds.
    assert pacing.soonest_end([two]) == pytest.approx(1.5)
    # Sixteen such nodes: 32 - 2.5 * 0.25 * 4 = 29.5, later than all sixteen at their shortest (24).
    assert pacing.soonest_end([two] * 16) == pytest.approx(32 - pacing.SIGMAS * 0.25 * 4)


def test_before_the_last_node_the_poll_aims_into_it() -> None:
    times = learned_from(*(timeline(0.0, NODES) for _ in range(4)))  # 4 samples: seen times +- 15 %
    line = timeline(0.0, NODES)  # queued 0-1, inform 1-3, ready 3-5, advance 5-7, wait 7-11, end 11-13
    whole = times.whole_dag(5)  # seen whole 4 times, in 13 s: 11.05 s at the soonest
    assert whole is not None and whole.low == pytest.approx(11.05)

    def soonest(*parts: tuple[float, float, float]) -> float:
        return pacing.soonest_end([pacing.Spread(*part) for part in parts])

    # At 8 "wait" has run 1 s of its 4 (3.4 to 4.6): "end" (1.7 to 2.3 s) should start in 3 s, and may first end
    # 1.7 s after that (4.7); but no later than a step after the soonest end of wait and end together: 5 s less
    # 2.5 deviations (4.161), later than both at their shortest (2.4 + 1.7) and than the whole DAG's (3.05).
    delay = pacing.next_poll_seconds(line.seen(8.0), times, SETTINGS, agent_now=at(8.0))
    assert soonest((3.0, 2.4, 3.6), (2.0, 1.7, 2.3)) == pytest.approx(5.0 - 2.5 * (0.3**2 + 0.15**2) ** 0.5)
    assert delay == pytest.approx(soonest((3.0, 2.4, 3.6), (2.0, 1.7, 2.3)) + STEP)
    # At 10.7 "wait" is past its shortest: it should end in 0.3 s, and the aim (0.3 + 1.7) comes before a step
    # after the soonest end (1.7, "end" alone at its shortest).
    sooner = pacing.next_poll_seconds(line.seen(10.7), times, SETTINGS, agent_now=at(10.7))
    assert sooner == pytest.approx(0.3 + 1.7)
    # At 1.5 in "inform", the last node should start in 9.5 s; a step after the soonest end comes first.
    early = pacing.next_poll_seconds(line.seen(1.5), times, SETTINGS, agent_now=at(1.5))
    parts = ((1.5, 1.2, 1.8), (2.0, 1.7, 2.3), (2.0, 1.7, 2.3), (4.0, 3.4, 4.6), (2.0, 1.7, 2.3))
    assert soonest(*parts) > max(1.2 + 1.7 + 1.7 + 3.4 + 1.7, whole.low - 1.5)
    assert early == pytest.approx(soonest(*parts) + STEP) and early < 9.5 + 1.7
    # The shortest whole DAG seen bounds it too: 6.8 s into a DAG, "wait" 1 s in, the soonest of its kind seen
    # would end in 4.25 s, later than the soonest end of its nodes (4.161).
    late = pacing.View(("wait", "end"), 1.0, 5, 6.8).next_poll_seconds(times, SETTINGS)
    assert late == pytest.approx(whole.low - 6.8 + STEP)


def test_in_the_last_node_the_first_poll_comes_one_step_after_its_shortest_time() -> None:
    times = learned_from(*(timeline(0.0, NODES) for _ in range(4)))  # "end": 1.7 to 2.3 s
    line = timeline(0.0, NODES)
    delay = pacing.next_poll_seconds(line.seen(11.3), times, SETTINGS, agent_now=at(11.3))
    assert delay == pytest.approx(1.7 - 0.3 + STEP)
    # Past its shortest time: every step.
    assert pacing.next_poll_seconds(line.seen(12.9), times, SETTINGS, agent_now=at(12.9)) == pytest.approx(
        STEP
    )


def test_a_node_overrunning_everything_seen_is_read_less_and_less_often() -> None:
    times = learned_from(*(timeline(0.0, NODES) for _ in range(4)))  # "end" at most 2.3 s
    stuck = timeline(0.0, [*NODES[:-1], ("end", 600.0)])  # "end" from 11
    delays = [
        pacing.next_poll_seconds(stuck.seen(11 + age), times, SETTINGS, agent_now=at(11 + age))
        for age in (3.0, 10.0, 100.0)
    ]
    assert delays == pytest.approx([STEP, (10.0 - 2.3) / 4, SETTINGS.poll_max_seconds])


def test_a_last_node_never_seen_is_read_every_step_after_the_shortest_node_seen() -> None:
    times = learned_from(timeline(0.0, NODES))  # one sample each: the shortest, queued, at least 0.7 s
    other = timeline(0.0, [*NODES[:-1], ("new", 30.0)])  # "new" from 11
    delays = [
        pacing.next_poll_seconds(other.seen(11 + age), times, SETTINGS, agent_now=at(11 + age))
        for age in (0.2, 1.0, 8.0)
    ]
    assert delays == pytest.approx([0.7 - 0.2 + STEP, STEP, 2.0])  # then a quarter of its age
    # Seen running 5 s in another DAG: it takes at least that.
    times.learn(other.seen(16.0), set(), at(16.0))
    assert times.at_least == {"new": pytest.approx(5.0)}
    assert pacing.next_poll_seconds(other.seen(12.0), times, SETTINGS, agent_now=at(12.0)) == pytest.approx(
        4 + STEP
    )


def test_without_the_agents_clock_a_running_node_counts_as_just_started() -> None:
    times = learned_from(*(timeline(0.0, NODES) for _ in range(4)))
    line = timeline(0.0, NODES)
    delay = pacing.next_poll_seconds(line.seen(12.0), times, SETTINGS, agent_now=None)
    assert delay == pytest.approx(1.7 + STEP)


# ----------------------------------------------------------------------------------------------------------
# Whole DAGs on a logical clock


TERMINATE = [
    ("queued", 1.0),
    ("inform", 2.0),
    ("ready", 2.0),
    ("freeze", 5.0),
    ("advance", 2.0),
    ("wait", 4.0),
    ("end", 2.0),
]
FORCE = [("queued", 1.0), ("inform", 2.0), ("ready", 2.0), ("advance", 2.0), ("wait", 4.0), ("end", 2.0)]


def jittered(
    rng: random.Random, shape: Sequence[tuple[str, float]], created: float, jitter: float
) -> Timeline:
    (_, queued), *nodes = shape
    return timeline(
        created,
        [(name, seconds * rng.uniform(1 - jitter, 1 + jitter)) for name, seconds in nodes],
        queued=queued * rng.uniform(1 - jitter, 1 + jitter),
    )


def follow(
    line: Timeline, times: pacing.NodeTimes, settings: Settings, rtt: float = 0.02
) -> tuple[int, float]:
    """Follow one DAG from its POST as the controller does: (GETs of the DAG, seconds its end was seen late)."""
    t, learned = line.created + rtt, set[str]()
    delay = pacing.next_poll_seconds(line.posted(), times, settings, agent_now=at(line.created))
    polls = 0
    while True:
        t += delay
        polls += 1
        seen = line.seen(t)
        times.learn(seen, learned, at(t))
        if seen.finished:
            return polls, t + rtt / 2 - line.end
        delay = pacing.next_poll_seconds(seen, times, settings, agent_now=at(t))
        assert settings.poll_min_seconds <= delay <= settings.poll_max_seconds


def fixed_loop(line: Timeline, interval: float) -> int:
    """GETs the SDK's loop makes (one every `interval` seconds after the POST)."""
    return int((line.end - line.created) // interval) + 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_whole_dags_are_seen_ending_within_half_a_second_for_fewer_polls_than_a_3s_loop(seed: int) -> None:
    rng = random.Random(seed)
    times = pacing.NodeTimes()
    for i in range(8):  # the controller's first DAGs teach it the nodes
        follow(jittered(rng, (TERMINATE, FORCE)[i % 2], 0.0, 0.25), times, SETTINGS)
    polls, late, loop = [], [], []
    for i in range(200):
        line = jittered(rng, (TERMINATE, FORCE)[i % 2], 1000.0 * (i + 1), 0.25)
        count, seconds = follow(line, times, SETTINGS)
        polls.append(count)
        late.append(seconds)
        loop.append(fixed_loop(line, 3.0))
    p95 = statistics.quantiles(late, n=20)[-1]
    assert min(late) >= 0
    assert p95 <= 0.45, p95
    # Two polls fewer than the loop's: the controller's lock check before the POST is one more call, and the
    # benchmark's cold controller needs the margin (docs/benchmark.md).
    assert statistics.mean(polls) <= statistics.mean(loop) - 2, (
        statistics.mean(polls),
        statistics.mean(loop),
    )


def cold_batch(
    seed: int, *, news: bool, count: int = 40, spacing: float = 0.25
) -> tuple[list[int], list[float], list[int]]:
    """`count` first DAGs of a process, one every `spacing` s, their followers interleaved in time order as the
    controller's tasks run; with `news`, as follow.py runs them: each time the NodeTimes' generation moved, at
    most every NEWS_SPACING_SECONDS, every waiting follower aims again from the view it last had, by that view's
    clock (pacing.py rule 5). (polls per DAG, seconds each end was seen late, the 3 s loop's polls per DAG)"""
    rng = random.Random(seed)
    times = pacing.NodeTimes()
    lines = [jittered(rng, (TERMINATE, FORCE)[i % 2], spacing * i, 0.25) for i in range(count)]
    due = {i: line.created for i, line in enumerate(lines)}
    learned: dict[int, set[str]] = {i: set() for i in due}
    views: dict[int, tuple[pacing.View, float]] = {}  # each waiting follower's last view, and when it was had
    polls = dict.fromkeys(due, 0)
    late: list[float] = []
    known, passed_on = times.generation, -NEWS_SPACING_SECONDS
    while due:
        i = min(due, key=due.__getitem__)
        line, t = lines[i], due[i]
        if news and times.generation != known and t >= passed_on + NEWS_SPACING_SECONDS:
            known, passed_on = times.generation, max(t - 1e-9, passed_on + NEWS_SPACING_SECONDS)
            for j, (view, when) in views.items():  # as Controller.replan does
                due[j] = max(passed_on, when + view.next_poll_seconds(times, SETTINGS))
            continue
        if t == line.created:
            views[i] = (pacing.View.of(line.posted(), at(t)), t)
            due[i] = t + 0.02 + views[i][0].next_poll_seconds(times, SETTINGS)
            continue
        seen = line.seen(t)
        times.learn(seen, learned[i], at(t))
        polls[i] += 1
        if seen.finished:
            late.append(t - line.end)
            del due[i], views[i]
            continue
        views[i] = (pacing.View.of(seen, at(t)), t)
        due[i] = t + views[i][0].next_poll_seconds(times, SETTINGS)
    return list(polls.values()), late, [fixed_loop(line, 3.0) for line in lines]


def test_a_cold_controller_follows_concurrent_first_dags_at_a_bounded_cost() -> None:
    """The first DAGs of a process, each follower on its own: nothing is known, then what their neighbours
    finished by the time they poll again."""
    polls, late, loop = cold_batch(7, news=False)
    assert len(late) == 40
    assert statistics.quantiles(late, n=20)[-1] <= 0.45
    # The first DAGs cost more than later ones (tested above); in all, about as many as the 3 s loop's.
    assert statistics.mean(polls) <= 1.1 * statistics.mean(loop)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_first_dags_that_pass_on_what_they_learn_cost_a_call_less_than_the_3s_loop(seed: int) -> None:
    """Rule 5: the DAGs ahead teach those behind while they wait, so these spend no polls on what is known."""
    alone, late_alone, loop = cold_batch(seed, news=False)
    polls, late, _ = cold_batch(seed, news=True)
    assert len(late) == 40 and min(late) >= 0
    assert statistics.quantiles(late, n=20)[-1] <= 0.45
    assert statistics.quantiles(late, n=20)[-1] <= statistics.quantiles(late_alone, n=20)[-1] + 0.1
    # The lock check before the POST is one call more than the loop's: the polls make up for it, with a margin.
    assert statistics.mean(polls) <= statistics.mean(loop) - 1, (
        statistics.mean(polls),
        statistics.mean(loop),
    )
    assert statistics.mean(polls) <= statistics.mean(alone) - 0.8, (
        statistics.mean(polls),
        statistics.mean(alone),
    )
