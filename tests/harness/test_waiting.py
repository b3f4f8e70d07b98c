"""The tests' pollers (obstop.testing.waiting): the value they return, their deadline, and errors passing
through."""

from __future__ import annotations

import itertools
import time

import pytest

from obstop.testing.waiting import until, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, [], ["found"]])
    assert wait_until(lambda: next(answers), 5, "a list", interval=0) == ["found"]


def test_wait_until_names_what_it_waited_for_when_the_time_is_up() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^the gauge drops: not met within 0.1s$"):
        wait_until(lambda: False, 0.1, "the gauge drops")
    assert 0.1 <= time.monotonic() - started < 5


def test_wait_until_lets_the_conditions_own_error_through() -> None:
    def broken() -> bool:
        raise AssertionError("the process ended")

    with pytest.raises(AssertionError, match="the process ended"):
        wait_until(broken, 5)


async def test_until_takes_a_function_or_a_coroutine_function() -> None:
    counter = itertools.count()
    assert await until(lambda: next(counter) >= 3, 5) is True

    async def later() -> str | None:
        return "done" if next(counter) >= 6 else None

    assert await until(later, 5, "done") == "done"


async def test_until_names_what_it_waited_for_when_the_time_is_up() -> None:
    with pytest.raises(TimeoutError, match=r"^DAG 1 finished: not met within 0.05s$"):
        await until(lambda: None, 0.05, "DAG 1 finished")
