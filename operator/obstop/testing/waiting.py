"""Waiting for a condition: the one sync poller (`wait_until`) and the one async poller (`until`) of the tests,
the sandbox and the harness. Both call `condition` until it returns something truthy and return that value, or
raise TimeoutError naming `what` after `timeout` seconds. An exception raised by `condition` ends the wait."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Sync waits mostly ask another process (an API server, an HTTP agent); async ones read in-process state.
INTERVAL, ASYNC_INTERVAL = 0.02, 0.01


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, what: str = "condition", *, interval: float = INTERVAL
) -> T:
    """Poll `condition` (sync) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout}s")
        time.sleep(interval)


async def until(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline of the poll, as in wait_until
    what: str = "condition",
    *,
    interval: float = ASYNC_INTERVAL,
) -> T:
    """Poll `condition` (a function or a coroutine function) in the running loop until its result is truthy;
    return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"{what}: not met within {timeout}s")
        await asyncio.sleep(interval)
