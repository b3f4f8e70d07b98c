"""The waker: which requests are overdue, and that it touches each one once per grace period, even when a
touch fails. (The end-to-end case, a 409 on Kopf's patch, is in tests/reliability/test_fault_matrix.py.)"""

from __future__ import annotations

import asyncio

from obstop.controller.waker import Appointments, wake_overdue


def test_only_late_requests_are_overdue() -> None:
    appointments = Appointments()
    appointments.expect("late", "ns", "a", -5.0)
    appointments.expect("soon", "ns", "b", 60.0)
    appointments.expect("done", "ns", "c", -5.0)
    appointments.expect("done", "ns", "c", None)  # terminal: no next step
    assert appointments.overdue(grace=1.0) == [("late", "ns", "a")]
    appointments.forget("late")
    assert appointments.overdue(grace=1.0) == []


async def test_a_failed_touch_is_retried_and_touches_are_spaced() -> None:
    appointments = Appointments()
    appointments.expect("u1", "ns", "stuck", -1.0)
    touched: list[str] = []

    async def touch(namespace: str, name: str) -> None:
        touched.append(name)
        if len(touched) == 1:
            raise ConnectionError("API server down")  # retried next period, not fatal

    task = asyncio.create_task(wake_overdue(appointments, touch, grace=0.3))
    while len(touched) < 2:  # the failed touch is tried again in a later period
        await asyncio.sleep(0.05)
    task.cancel()
    assert touched == ["stuck", "stuck"]
    assert appointments.overdue(grace=0.3) == []  # postponed by a grace period after each touch
