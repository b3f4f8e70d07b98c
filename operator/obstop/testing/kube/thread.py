"""The emulated API server in its own thread and event loop, for synchronous tests (KopfRunner blocks)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from obstop.testing.kube.calls import ApiCall, Fault
from obstop.testing.kube.server import EmulatedApiServer
from obstop.testing.kube.store import AdmissionFactory, default_admission

T = TypeVar("T")
_START_TIMEOUT = 30.0
_CALL_TIMEOUT = 30.0


class ApiServerThread:
    """Runs `EmulatedApiServer`; every method is thread-safe (it runs in the server's loop and waits).

    `with ApiServerThread() as api:` starts it and writes `api.kubeconfig`; leaving the block stops it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        kubeconfig: str | Path | None = None,
        history_limit: int = 10_000,
        admission: AdmissionFactory = default_admission,
    ) -> None:
        self._host = host
        self._port = port
        self._kubeconfig_path = Path(kubeconfig) if kubeconfig is not None else None
        self._temp_dir: str | None = None
        self._server = EmulatedApiServer(history_limit=history_limit, admission=admission)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self.kubeconfig: Path = Path()

    def __enter__(self) -> ApiServerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulated API server is not started")
        return self._url

    @property
    def server(self) -> EmulatedApiServer:
        """The server itself: touch it only through `run()`, in its own loop."""
        return self._server

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the emulated API server thread is already started")
        self._thread = threading.Thread(target=self._main, name="obstop-kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the emulated API server did not start in time")
        if self._failure is not None:
            self._thread.join()
            raise RuntimeError("the emulated API server failed to start") from self._failure
        if self._kubeconfig_path is None:
            self._temp_dir = tempfile.mkdtemp(prefix="obstop-kube-")
            self._kubeconfig_path = Path(self._temp_dir) / "kubeconfig"
        self.kubeconfig = self._server.write_kubeconfig(self._kubeconfig_path)

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)
        thread.join(_START_TIMEOUT)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            self._url = await self._server.start(self._host, self._port)
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_requested.wait()
        finally:
            await self._server.stop()

    def run(self, fn: Callable[[EmulatedApiServer], T]) -> T:
        """Call `fn(server)` in the server's loop and return its result."""

        async def call() -> T:
            return fn(self._server)

        return self._await(call())

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None or self._thread is None:
            coro.close()
            raise RuntimeError("the emulated API server is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT)

    def calls(self, **criteria: Any) -> list[ApiCall]:
        """A copy of the recorded calls; criteria as `CallLog.filter` (user_agent=, verb=, resource=, ...)."""
        return self.run(lambda server: server.calls.filter(**criteria))

    def clear_calls(self) -> None:
        self.run(lambda server: server.calls.clear())

    def inject(self, status: int, **criteria: Any) -> Fault:
        """Answer the next matching calls with `status`; criteria as `Faults.inject`."""
        return self.run(lambda server: server.faults.inject(status, **criteria))

    def clear_faults(self) -> None:
        self.run(lambda server: server.faults.clear())

    def cut_watches(self) -> int:
        return self.run(lambda server: server.faults.cut_watches())

    def compact_history(self) -> None:
        self.run(lambda server: server.faults.compact_history())

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create an object straight in the store (not over HTTP, not recorded)."""
        return self.run(lambda server: server.apply(manifest))

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The stored object, or None (not over HTTP, not recorded)."""

        def peek(server: EmulatedApiServer) -> dict[str, Any] | None:
            res = server.store.resource_for(api_version, kind)
            obj = server.store.peek(res, namespace, name)
            return None if obj is None else server.store.present(res, obj)

        return self.run(peek)
