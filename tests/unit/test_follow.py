"""The pure parts of follow.py: the merge patch between two statuses, the resourceVersion order, and which
delivered requests have work (the followers themselves run against the real API server: tests/reliability);
and how a waiting follower is woken to aim its poll again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from obstop.controller.decisions import Decision
from obstop.controller.follow import Followers, has_work, kept, not_older, status_changes
from obstop.controller.main import PEERING_LOGGER, PeeringPause
from obstop.controller.runtime import Runtimes
from obstop.controller.stop import Request


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 applied, as kube-apiserver applies a merge patch (a test oracle, not product code)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def test_the_patch_turns_the_old_status_into_the_new_one_nested_keys_included() -> None:
    old = {
        "phase": "Submitted",
        "dag": {"id": "1", "stage": 1, "currentNode": "Check"},
        "lastError": "boom",
        "conditions": [{"type": "Ready", "status": "False"}],
    }
    new = {
        "phase": "Running",
        "dag": {"id": "1", "stage": 2},
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "Failed", "status": "False"}],
    }
    patch = status_changes(old, new)
    assert merge(old, patch) == new
    assert patch["dag"] == {"stage": 2, "currentNode": None}, "a nested key that went must be deleted"
    assert patch["lastError"] is None and "conditions" in patch


def test_an_unchanged_status_needs_no_write() -> None:
    status = {"phase": "Running", "dag": {"id": "1", "stage": 3}, "agents": [{"agent": "a:2886"}]}
    assert status_changes(status, {**status, "dag": dict(status["dag"])}) == {}


def test_resource_versions_compare_as_the_numbers_kube_apiserver_gives() -> None:
    assert not_older("100", "99") and not_older("99", "99")
    assert not not_older("98", "99") and not not_older(None, "1")
    assert not_older("opaque", "opaque") and not not_older("other", "opaque")


def test_work_is_a_live_request_or_an_unacknowledged_reorder_of_a_finished_one() -> None:
    def body(phase: str | None, generation: int = 1, observed: int | None = 1) -> dict[str, Any]:
        status = {"phase": phase, "observedGeneration": observed} if phase else {}
        return {"metadata": {"generation": generation}, "status": status}

    assert has_work(body(None)) and has_work(body("Running")) and has_work(body("AwaitingApproval"))
    for terminal in ("Succeeded", "Failed", "Cancelled", "Validated"):
        assert not has_work(body(terminal))
        assert has_work(body(terminal, generation=2, observed=1)), terminal


def test_a_follower_keeps_the_body_but_its_managed_fields_and_leaves_kopfs_copy_alone() -> None:
    managed = [{"manager": "obstop", "operation": "Update", "fieldsV1": {"f:status": {}}}]
    body: dict[str, Any] = {
        "apiVersion": "obshell.oceanbase.com/v1alpha1",
        "kind": "ObStopRequest",
        "metadata": {
            "name": "s",
            "namespace": "ops",
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": managed,
        },
        "spec": {"scope": {"type": "GLOBAL"}},
        "status": {"phase": "Running"},
    }
    mine = kept(body)
    assert mine == {**body, "metadata": {"name": "s", "namespace": "ops", "uid": "u", "resourceVersion": "7"}}
    assert body["metadata"]["managedFields"] is managed  # Kopf's body is not changed
    assert mine["metadata"] is not body["metadata"]


# ----------------------------------------------------------------------------------------------------------
# Waiting followers aim their polls again when something was learned (pacing.py rule 5)


class ScriptedController:
    """Stands in for stop.Controller, whose pacing is tested on a logical clock (test_pacing.py): what is under
    test here is follow.py's waiting, so each step only says when the next one is due, and a request's first
    step can teach something (`knowledge` grows), as a poll that saw a node end does."""

    def __init__(self, replans: dict[str, float | None], teaches: set[str]) -> None:
        self.replans, self.teaches = replans, teaches
        self.knowledge = 0
        self.steps: list[tuple[str, float]] = []
        self.runtimes = Runtimes()

    async def step(self, req: Request, logger: Any) -> Decision:
        self.steps.append((req.name, asyncio.get_running_loop().time()))
        if req.name in self.teaches:
            self.teaches.discard(req.name)
            self.knowledge += 1
        return Decision(req.status, 30.0)

    def replan(self, uid: str) -> float | None:
        return self.replans.get(uid)


def running(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": name, "generation": 1},
        "status": {"phase": "Running"},
    }


async def followers_of(controller: ScriptedController) -> Followers:
    async def write(namespace: str, name: str, changes: Mapping[str, Any]) -> str:
        raise AssertionError("an unchanged status is never written")

    return Followers(controller, write, lambda *a: None, stall_seconds=5.0)  # type: ignore[arg-type]


async def test_a_waiting_follower_aims_again_when_another_request_taught_something() -> None:
    controller = ScriptedController({"waits": 0.2, "unpaced": None}, teaches=set())
    followers = await followers_of(controller)
    log = logging.getLogger("test")
    for name in ("waits", "unpaced"):
        followers.deliver("ADDED", running(name), log)
    await asyncio.sleep(0.2)
    assert [n for n, _ in controller.steps] == ["waits", "unpaced"]  # both now wait 30 s
    controller.teaches.add("teacher")
    followers.deliver("ADDED", running("teacher"), log)
    started = asyncio.get_running_loop().time()
    while [n for n, _ in controller.steps].count(
        "waits"
    ) < 2 and asyncio.get_running_loop().time() - started < 5:
        await asyncio.sleep(0.05)
    again = [t for n, t in controller.steps if n == "waits"][1:]
    assert again and again[0] - started < 2.0, "re-aimed 0.2 s from its last answer: due at once, not in 30 s"
    await asyncio.sleep(0.5)
    assert [n for n, _ in controller.steps].count("unpaced") == 1, "a wait that is not an aimed poll stays"
    await followers.aclose()


async def test_news_is_passed_on_at_most_every_half_second_and_a_persons_change_still_steps_at_once() -> None:
    controller = ScriptedController({"waits": 25.0}, teaches=set())
    followers = await followers_of(controller)
    log = logging.getLogger("test")
    followers.deliver("ADDED", running("waits"), log)
    await asyncio.sleep(0.1)
    replans = 0
    original = controller.replan

    def counting(uid: str) -> float | None:
        nonlocal replans
        replans += uid == "waits"
        return original(uid)

    controller.replan = counting  # type: ignore[method-assign]
    controller.teaches.update({"t1", "t2", "t3"})
    for name in ("t1", "t2", "t3"):  # three lessons within a few milliseconds
        followers.deliver("ADDED", running(name), log)
    await asyncio.sleep(0.2)
    assert replans == 1, "the later lessons wait for the spacing"
    await asyncio.sleep(0.6)
    assert replans == 2, "and are then passed on together, once"
    assert [n for n, _ in controller.steps].count("waits") == 1, "re-aimed to 25 s again: no step"
    changed = running("waits")
    changed["metadata"]["annotations"] = {"obstop.oceanbase.com/cancel": "true"}
    followers.deliver("MODIFIED", changed, log)
    await asyncio.sleep(0.2)
    assert [n for n, _ in controller.steps].count("waits") == 2, "a person's change steps at once"
    await followers.aclose()


class GatedController(ScriptedController):
    """Each step waits until the test opens the gate, so the steps in flight can be counted."""

    def __init__(self) -> None:
        super().__init__({}, teaches=set())
        self.gate = asyncio.Event()
        self.in_flight = self.most = 0

    async def step(self, req: Request, logger: Any) -> Decision:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.gate.wait()
            return await super().step(req, logger)
        finally:
            self.in_flight -= 1


async def test_a_burst_of_new_requests_steps_a_bounded_number_at_a_time_and_each_gets_its_turn() -> None:
    controller = GatedController()

    async def write(namespace: str, name: str, changes: Mapping[str, Any]) -> str:
        raise AssertionError("an unchanged status is never written")

    followers = Followers(
        controller,  # type: ignore[arg-type]
        write,
        lambda *a: None,
        stall_seconds=5.0,
        steps_in_flight=3,
    )
    log = logging.getLogger("test")
    for i in range(10):
        followers.deliver("ADDED", running(f"r{i}"), log)
    await asyncio.sleep(0.1)
    assert controller.in_flight == 3, "three step, the other seven wait for a turn"
    controller.gate.set()
    for _ in range(50):
        if len(controller.steps) == 10:
            break
        await asyncio.sleep(0.02)
    assert sorted(n for n, _ in controller.steps) == sorted(f"r{i}" for i in range(10))
    assert controller.most == 3
    await followers.aclose()


# ----------------------------------------------------------------------------------------------------------
# A replica that Kopf's peering pauses begins no step (main.PeeringPause tells the followers)


class Every(ScriptedController):
    """Each request steps again `every` seconds after its step."""

    def __init__(self, every: float) -> None:
        super().__init__({}, teaches=set())
        self.every = every

    async def step(self, req: Request, logger: Any) -> Decision:
        await super().step(req, logger)
        return Decision(req.status, self.every)


async def test_kopfs_pause_of_this_replica_stops_new_steps_until_it_resumes() -> None:
    """Kopf says so only in its log (kopf/_core/engines/peering.py): the lines are fed to the logger as Kopf logs
    them; the real pause is tests/reliability/test_replicas.py."""
    controller = Every(0.2)
    followers = await followers_of(controller)
    log = logging.getLogger("test")
    peering = logging.getLogger(PEERING_LOGGER)
    hook, level = PeeringPause(followers), peering.level
    peering.addHandler(hook)
    peering.setLevel(logging.INFO)

    def steps(name: str) -> int:
        return [n for n, _ in controller.steps].count(name)

    try:
        followers.deliver("ADDED", running("old"), log)
        await asyncio.sleep(0.5)
        assert steps("old") >= 2
        peering.info("Pausing operations in favour of [Peer(identity='other', priority=2)].")
        paused_at = steps("old")
        followers.deliver("ADDED", running("new"), log)
        await asyncio.sleep(0.6)
        assert (steps("old"), steps("new")) == (paused_at, 0), "no step begins while paused"
        peering.info(
            "Resuming operations after the pause. Conflicting operators with the same priority are gone."
        )
        await asyncio.sleep(0.5)
        assert steps("old") > paused_at and steps("new") >= 1
        peering.warning("Pausing all operators, including self: []")
        await asyncio.sleep(0.05)
        both = len(controller.steps)
        await asyncio.sleep(0.6)
        assert len(controller.steps) == both, "a pause of every replica with one priority pauses this one too"
    finally:
        peering.removeHandler(hook)
        peering.setLevel(level)
        await followers.aclose()
