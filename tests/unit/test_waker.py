"""The waker: which requests are overdue, and that it touches each one once per grace period, even when a
touch fails. (The end-to-end case, a 409 on Kopf's patch, is in tests/reliability/test_fault_matrix.py.)"""

from __future__ import annotations

import asyncio

from obstop.controller.runtime import Runtimes
from obstop.controller.waker import wake_overdue


def test_only_late_requests_are_overdue() -> None:
    runtimes = Runtimes()
    runtimes.get("late", "ns", "a").expect_next_step(-5.0)
    runtimes.get("soon", "ns", "b").expect_next_step(60.0)
    runtimes.get("done", "ns", "c").expect_next_step(-5.0)
    runtimes.get("done", "ns", "c").expect_next_step(None)  # terminal: no next step
    assert [(r.uid, r.namespace, r.name) for r in runtimes.overdue(grace=1.0)] == [("late", "ns", "a")]
    runtimes.forget("late")
    assert runtimes.overdue(grace=1.0) == []


async def test_a_failed_touch_is_retried_and_touches_are_spaced() -> None:
    runtimes = Runtimes()
    runtimes.get("u1", "ns", "stuck").expect_next_step(-1.0)
    touched: list[str] = []

    async def touch(namespace: str, name: str) -> None:
        touched.append(name)
        if len(touched) == 1:
            raise ConnectionError("API server down")  # retried next period, not fatal

    task = asyncio.create_task(wake_overdue(runtimes, touch, grace=0.3))
    while len(touched) < 2:  # the failed touch is tried again in a later period
        await asyncio.sleep(0.05)
    task.cancel()
    assert touched == ["stuck", "stuck"]
    assert runtimes.overdue(grace=0.3) == []  # postponed by a grace period after each touch
