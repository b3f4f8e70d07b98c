"""The controller's own calls to the API server, besides Kopf's: the status patch, the Secret read, the list of
approvals and the peering object.

They go through httpx (the client the obshell calls use) on the credentials Kopf logs in with (`login`), so the
process holds one HTTP stack and no kubernetes-client models: importing `kubernetes.client` costs about 22 MiB
of the controller's memory and its calls ran in worker threads (docs/benchmark.md). Answers are JSON dicts, as
Kopf delivers bodies; an error carries the HTTP status and the Status object's `reason`, never its message
(which may quote what was sent).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import kopf

from obstop import __version__

# Our own calls are told apart from Kopf's ("kopf/...") in API server audit logs.
USER_AGENT = f"obstop/{__version__}"
# With etcd down, kube-apiserver accepts a call and answers nothing for a minute or more: bound each call so a
# step gives up and retries with back-off like after any other transient fault.
TIMEOUT_SECONDS = 15.0
# Each connection is a TLS session of its own (about 0.3 MiB, kept); calls beyond these wait for one. Few: httpcore
# checks every pooled connection (is it readable, expired?) at each call's start and end, and with 16 that was a
# seventh of the controller's CPU at 1,000 requests; 4 cut its CPU per request by a sixth (docs/benchmark.md).
MAX_CONNECTIONS = 4


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".rstrip())
        self.status = status
        self.reason = reason

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        try:
            reason = response.json().get("reason") or ""  # a metav1.Status: NotFound, AlreadyExists, ...
        except (ValueError, AttributeError):
            reason = ""
        return cls(response.status_code, str(reason) if isinstance(reason, str) else "")


def login(*, settings: kopf.OperatorSettings, logger: Any, **_: Any) -> kopf.ConnectionInfo | None:
    """The credentials of Kopf and of `KubeApi`: the pod's service account, else the current context of
    $KUBECONFIG (or ~/.kube/config), read by Kopf itself. A kubeconfig user that runs an exec or auth-provider
    plugin (a cloud's CLI) carries no credentials Kopf can read; for that one the kubernetes client logs in,
    when installed."""
    found = kopf.login_with_service_account(settings=settings, logger=logger)
    if found is not None:
        return dataclasses.replace(found, server=in_cluster_server(os.environ) or found.server)
    found = kopf.login_with_kubeconfig(settings=settings, logger=logger)
    if found is not None and (
        found.token or found.username or found.certificate_path or found.certificate_data
    ):
        return found
    return kopf.login_via_client(settings=settings, logger=logger) or found


def in_cluster_server(environ: Mapping[str, str]) -> str | None:
    """The API server's address from the variables the kubelet sets, as client-go's InClusterConfig takes it
    (k8s.io/client-go/rest/config.go): Kopf's service-account login names kubernetes.default.svc, which needs
    the cluster's DNS (a pod on dnsPolicy: Default has none)."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class KubeApi:
    """JSON calls to the API server on one pooled httpx client, logged in lazily and again after a 401 (a
    service account's token is rotated by the kubelet; Kopf re-logs in the same way)."""

    def __init__(
        self,
        credentials: Callable[[], kopf.ConnectionInfo | None],
        *,
        timeout: float = TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._max_connections = max_connections
        self._http: httpx.AsyncClient | None = None
        self._login_lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()
        # Calls wait here rather than in httpcore's pool, which scans every queued call each time a connection
        # frees: with 1,000 requests its listcomp was the largest self time in the profile (docs/benchmark.md).
        self._slots = asyncio.Semaphore(max_connections)

    async def get(self, path: str, *, within: float | None = None) -> dict[str, Any]:
        return await self.request("GET", path, within=within)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def merge_patch(
        self, path: str, body: Mapping[str, Any], *, within: float | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", path, body, content_type="application/merge-patch+json", within=within
        )

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        within: float | None = None,
    ) -> dict[str, Any]:
        """One call, answered `within` seconds (default: the client's); raises ApiError for an error status
        and httpx.TransportError when no answer came."""
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if content is not None else None
        # No bound on the wait for a connection: each call ahead is bounded by its own timeout.
        limit = httpx.Timeout(within or self._timeout, pool=None)
        for attempt in (1, 2):
            http = await self._client()
            async with self._slots:
                response = await http.request(method, path, content=content, headers=headers, timeout=limit)
            if response.status_code == 401 and attempt == 1:
                await self._login_again(http)
                continue
            break
        if not response.is_success:
            raise ApiError.of(response)
        answer = response.json()
        if not isinstance(answer, dict):
            raise ApiError(response.status_code, "NotAnObject")
        return answer

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        for task in list(self._retired):
            task.cancel()

    async def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        async with self._login_lock:
            if self._http is None:
                self._http = await self._connect()
            return self._http

    async def _login_again(self, refused: httpx.AsyncClient) -> None:
        async with self._login_lock:
            if self._http is not refused:
                return  # another call has logged in again meanwhile
            self._http = await self._connect()
        # Calls still under way on the old client finish within their timeout; then it goes.
        task = asyncio.create_task(self._close_later(refused))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _close_later(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(self._timeout * 2)
        await http.aclose()

    async def _connect(self) -> httpx.AsyncClient:
        # In a thread: the kubernetes client's login may run an exec plugin.
        info = await asyncio.to_thread(self._credentials)
        if info is None:
            raise kopf.LoginError("no credentials: neither a service account nor a kubeconfig was found")
        limits = httpx.Limits(
            max_connections=self._max_connections, max_keepalive_connections=self._max_connections
        )
        return httpx.AsyncClient(
            base_url=info.server,
            verify=info.as_ssl_context(),
            headers={**info.as_http_headers(), "User-Agent": USER_AGENT, "Accept": "application/json"},
            limits=limits,
            proxy=info.proxy_url,
            trust_env=info.trust_env,
        )
