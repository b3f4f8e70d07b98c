"""A fault-injecting HTTP proxy between a client (the controller) and the real kube-apiserver.

The API-level faults the tests need and a healthy kube-apiserver never gives on cue: an error answer to chosen
calls (409 on a status write, a burst of 5xx), watch streams cut mid-way, and in-stream watch `ERROR` events (410
Expired after a compaction, or any other code). Everything else is forwarded unchanged, streaming, so watches,
bookmarks and the server's own answers are real.

The proxy listens on plain http on loopback and forwards to https, passing the client's `Authorization`
header through: point a token kubeconfig at it (`ControlPlane.write_kubeconfig(..., server=proxy.url)`), and the
server sees, authorizes and audits the token's identity.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

from obstop.testing.loop import LoopThread

_T = TypeVar("_T")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass(frozen=True)
class Call:
    """A request as RBAC names it: verb, API group, resource, subresource, namespace and name."""

    method: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    status: int = 0

    @classmethod
    def parse(cls, method: str, path: str, query: str) -> Call:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"]:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return cls(method, method.lower(), "", "", "", "", "")
        namespace = ""
        if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
            namespace, rest = rest[1], rest[2:]
        resource = rest[0] if rest else ""
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        watching = parse_qs(query).get("watch", [""])[0] in ("true", "1")
        verb = {
            "GET": "watch" if watching else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, method.lower())
        return cls(method, verb, group, resource, subresource, namespace, name)


@dataclass
class Fault:
    """Answer the next `times` matching calls (None: every one) with `status`, without forwarding them.
    A criterion left None matches anything."""

    status: int
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    times: int | None = 1
    message: str | None = None
    hits: int = 0

    def matches(self, call: Call) -> bool:
        wanted = {
            "verb": self.verb,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
            "name": self.name,
        }
        return all(v is None or getattr(call, k) == v for k, v in wanted.items())

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


def status_body(code: int, message: str) -> dict[str, Any]:
    """A metav1.Status as kube-apiserver writes one."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(code, "InternalError"),
        "code": code,
    }


class FaultProxy:
    """`with FaultProxy(cp.url, cp.workdir / "ca.crt") as proxy:` serves on `proxy.url` in a daemon thread.

    Every method is thread-safe. `calls` records each forwarded or faulted request with its status.
    """

    def __init__(self, upstream: str, ca_file: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self._ca_file = ca_file
        self.url = ""
        self.calls: list[Call] = []
        self._faults: list[Fault] = []
        self._watch_errors: list[Fault] = []
        # Open watch streams by id() (a Request is not hashable): the client's request and the upstream answer.
        self._watches: dict[int, tuple[web.Request, aiohttp.ClientResponse]] = {}
        self._lock = threading.Lock()
        self._loop = LoopThread("api-fault-proxy")
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------------------------------------------
    # Faults

    def inject(
        self, status: int, *, times: int | None = 1, message: str | None = None, **criteria: Any
    ) -> Fault:
        """Answer the next matching calls with `status`; criteria: verb, resource, subresource, namespace, name."""
        fault = Fault(status, times=times, message=message, **criteria)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._watch_errors.clear()

    def watch_error(self, code: int, message: str, *, times: int = 1, **criteria: Any) -> Fault:
        """The next `times` matching watch streams answer one in-stream ERROR event with this Status, then end
        (what kube-apiserver sends for a too-old resourceVersion, 410, or on an internal error). Criteria as
        for `inject` (resource, namespace, name); none: any watch. The returned Fault counts its `hits`."""
        fault = Fault(code, verb="watch", times=times, message=message, **criteria)
        with self._lock:
            self._watch_errors.append(fault)
        return fault

    def cut_watches(self) -> int:
        """End every open watch stream at once (a dropped connection); the number cut."""
        return self.call(self._cut())

    def recorded(self, **criteria: Any) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if all(getattr(c, k) == v for k, v in criteria.items())]

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    def __enter__(self) -> FaultProxy:
        self._loop.start(self._start)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop(self._stop)

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        return self._loop.call(coro, timeout)

    async def _start(self) -> None:
        context = ssl.create_default_context(cafile=str(self._ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        await self._cut()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _cut(self) -> int:
        with self._lock:
            open_watches, self._watches = list(self._watches.values()), {}
        for request, upstream in open_watches:
            upstream.close()
            if request.transport is not None:
                request.transport.abort()  # a cut socket: the client sees the chunked stream break off
        return len(open_watches)

    # ----------------------------------------------------------------------------------------------
    # Forwarding

    def _take_fault(self, call: Call, *, in_stream: bool = False) -> Fault | None:
        """The first live fault (or in-stream watch error) that matches the call, its hit counted."""
        with self._lock:
            if in_stream:
                self._watch_errors = faults = [f for f in self._watch_errors if not f.exhausted]
            else:
                self._faults = faults = [f for f in self._faults if not f.exhausted]
            for fault in faults:
                if fault.matches(call):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, call: Call, status: int) -> None:
        with self._lock:
            self.calls.append(replace(call, status=status))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        call = Call.parse(request.method, request.path, request.query_string)
        fault = self._take_fault(call)
        if fault is not None:
            self._record(call, fault.status)
            message = fault.message or f"injected fault for {call.verb} {call.resource}"
            return web.json_response(status_body(fault.status, message), status=fault.status)
        if call.verb == "watch":
            error = self._take_fault(call, in_stream=True)
            if error is not None:
                self._record(call, 200)
                event = {"type": "ERROR", "object": status_body(error.status, error.message or "")}
                return web.json_response(event, status=200)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        target = f"{self.upstream}{request.rel_url}"
        try:
            upstream = await self._session.request(request.method, target, headers=headers, data=body or None)
        except aiohttp.ClientError as exc:
            self._record(call, 503)
            return web.json_response(status_body(503, f"proxy: upstream unreachable: {exc}"), status=503)
        async with upstream:
            self._record(call, upstream.status)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    response.headers[key] = value
            if call.verb == "watch":
                with self._lock:
                    self._watches[id(request)] = (request, upstream)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionResetError):
                pass
            finally:
                with self._lock:
                    self._watches.pop(id(request), None)
            return response
