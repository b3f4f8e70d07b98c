"""An asyncio event loop in a daemon thread, for servers that synchronous tests drive (the obshell simulator,
the API fault proxy): start it with the server's start coroutine, hop into it with `call`, stop it with the
server's stop coroutine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, begin: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run the loop and wait for `begin()` in it; on failure the loop is stopped again."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        try:
            self.call(begin())
        except BaseException:
            self.stop(None)
            raise

    def stop(self, end: Callable[[], Coroutine[Any, Any, Any]] | None) -> None:
        """Wait for `end()` in the loop (if it still runs), then stop and close it."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if end is not None and thread.is_alive():
                self.call(end())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        """Run a coroutine in the loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"{self._name} is not running")
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)
