"""Async client of the obshell agent's HTTP API: stop, DAG queries and operators, info and status.

One call is one HTTP request, with two exceptions that cannot change anything on the agent: fetching the
public key before the first authenticated call, and re-fetching it once when the agent says it cannot decrypt
our header (its key was rotated). Retrying transient errors is the caller's decision, because whether a stop
may be re-sent depends on what the caller knows about the DAG it may already have created.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import ssl
import time
from datetime import datetime
from typing import Any, Final, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError

from obstop.obshell import crypto, ids
from obstop.obshell.address import AgentEndpoint, parse_endpoint
from obstop.obshell.errors import (
    ObshellApiError,
    ObshellError,
    ObshellProtocolError,
    ObshellTransportError,
)
from obstop.obshell.models import (
    AgentInfo,
    AgentStatus,
    DagDetail,
    DagOperator,
    ObInfo,
    StopParams,
)

HEADER_ROOT: Final = "X-OCS-Header"
HEADER_AGENT: Final = "X-OCS-Agent-Header"
HEADER_TRACE: Final = "X-OBSHELL-Trace-ID"
DEFAULT_LIFETIME: Final = 60  # seconds a signed header stays valid, as the official SDKs use
DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024

_M = TypeVar("_M", AgentInfo, AgentStatus, DagDetail, ObInfo)
# A zone name as it may go into a path (the CRD allows no other).
_ZONE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class KeyCache:
    """What is learnt of each agent, by base URL: its RSA public key and how far its clock is from ours.
    Shareable between clients (the controller keeps one)."""

    def __init__(self) -> None:
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._clock_offsets: dict[str, float] = {}

    def clock_offset(self, base_url: str) -> float:
        """Seconds the agent's clock is ahead of ours (negative: behind); 0 until it answered once."""
        return self._clock_offsets.get(base_url, 0.0)

    def observe_clock(self, base_url: str, agent_time: datetime, local_time: float) -> None:
        self._clock_offsets[base_url] = agent_time.timestamp() - local_time

    def get(self, base_url: str) -> rsa.RSAPublicKey | None:
        return self._keys.get(base_url)

    def put(self, base_url: str, key: rsa.RSAPublicKey) -> None:
        self._keys[base_url] = key

    def forget(self, base_url: str, key: rsa.RSAPublicKey | None = None) -> None:
        """Drop the cached key (only if it is still `key`, so that concurrent callers re-fetch once)."""
        if key is None or self._keys.get(base_url) is key:
            self._keys.pop(base_url, None)

    def lock(self, base_url: str) -> asyncio.Lock:
        return self._locks.setdefault(base_url, asyncio.Lock())


class ObshellClient:
    """A client of one obshell agent.

    `password` is the root@sys password (X-OCS-Header), or the agent password with `agent_password=True`
    (X-OCS-Agent-Header). `verify` is passed to httpx: True (system CAs), False, a CA bundle path or an
    ssl.SSLContext; it only matters for https addresses.
    """

    def __init__(
        self,
        address: str | AgentEndpoint,
        password: str | SecretStr,
        *,
        agent_password: bool = False,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        verify: bool | str | ssl.SSLContext = True,
        lifetime: int = DEFAULT_LIFETIME,
        key_cache: KeyCache | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.endpoint = address if isinstance(address, AgentEndpoint) else parse_endpoint(address)
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self._auth_header = HEADER_AGENT if agent_password else HEADER_ROOT
        self._lifetime = lifetime
        self._keys = key_cache if key_cache is not None else KeyCache()
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._own_http = http is None
        if isinstance(verify, str):
            # httpx 0.28 deprecates verify=<path>; a context built from the bundle is the supported form.
            verify = ssl.create_default_context(cafile=verify)
        self.last_server_time: datetime | None = None  # from the latest response envelope
        self._http = http or httpx.AsyncClient(verify=verify, timeout=self._timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return f"ObshellClient({self.endpoint.base_url!r}, password=***)"

    async def __aenter__(self) -> ObshellClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ----------------------------------------------------------------------------------------------
    # API calls

    async def info(self) -> AgentInfo:
        return _parse(AgentInfo, await self._call("GET", "/api/v1/info", auth=False), "agent info")

    async def status(self) -> AgentStatus:
        return _parse(AgentStatus, await self._call("GET", "/api/v1/status", auth=False), "agent status")

    async def server_time(self) -> datetime:
        """The agent's own clock (GET /api/v1/time, unauthenticated): to compare with its DAGs' times."""
        await self._call("GET", "/api/v1/time", auth=False)
        if self.last_server_time is None:
            raise ObshellProtocolError("GET /api/v1/time: no timestamp in the response envelope")
        return self.last_server_time

    async def stop(self, params: StopParams) -> DagDetail:
        """POST /api/v1/ob/stop. Returns the new main DAG (without details). Not idempotent."""
        data = await self._call("POST", "/api/v1/ob/stop", body=params.to_wire())
        return _parse(DagDetail, data, "stop response")

    async def get_dag(self, generic_id: str, *, details: bool = True) -> DagDetail:
        uri = f"/api/v1/task/dag/{_check_id(generic_id)}?show_details={'true' if details else 'false'}"
        return _parse(DagDetail, await self._call("GET", uri), "DAG")

    # The list routes answer with every node, sub-task and log line unless told otherwise, and the history is
    # never pruned (ob/agent/api/task_handler.go, ob/param/task.go): ask for the DAGs alone, then read the one that matters.

    async def unfinished_dags(self) -> list[DagDetail]:
        """Unfinished DAGs of the whole cluster (forwarded to the master before initialisation), without details."""
        return _parse_list(await self._call("GET", "/api/v1/task/dag/unfinish?show_details=false"))

    async def agent_dags(self) -> list[DagDetail]:
        """Every local DAG of this agent, finished or not (its history), without details. Absent before obshell
        4.3.0.0: the error's `is_unknown_route` says so."""
        return _parse_list(await self._call("GET", "/api/v1/task/dags/agent?show_details=false"))

    async def agent_unfinished_dags(self) -> list[DagDetail]:
        """Unfinished local DAGs of this agent, without details."""
        return _parse_list(await self._call("GET", "/api/v1/task/dag/agent/unfinish?show_details=false"))

    async def operate_dag(self, generic_id: str, operator: DagOperator) -> None:
        await self._call(
            "POST", f"/api/v1/task/dag/{_check_id(generic_id)}", body={"operator": operator.value}
        )

    async def cancel_dag(self, generic_id: str) -> None:
        await self.operate_dag(generic_id, DagOperator.CANCEL)

    # Before a stop: what the agent knows of its cluster (fact sheet §3.5, §5)

    async def ob_info(self) -> ObInfo:
        """GET /api/v1/ob/info: the agents (zones included) from the agent's own table, and the observers'
        topology from OB (empty while OB is down)."""
        return _parse(ObInfo, await self._call("GET", "/api/v1/ob/info"), "cluster info")

    async def agents_status(self) -> dict[str, AgentStatus]:
        """GET /api/v1/agents/status: `ip:port` -> status of every agent this one can reach."""
        data = await self._call("GET", "/api/v1/agents/status")
        if not isinstance(data, dict):
            raise ObshellProtocolError("agents status: expected an object")
        return {str(address): _parse(AgentStatus, item, "agent status") for address, item in data.items()}

    async def maintain_agents(self) -> list[DagDetail]:
        """GET /api/v1/task/dag/maintain/agents: the last maintenance DAG of every agent (one each, so with
        details: a start/stop sub-DAG names its main DAG in `additional_data.main_dag_id`)."""
        return _parse_list(await self._call("GET", "/api/v1/task/dag/maintain/agents?show_details=true"))

    async def zone_stop_check(self, zone: str, *, freeze_server: bool, force_pass_dag: list[str]) -> None:
        """POST /api/v1/ob/zone/{zone}/stop/check (obshell 4.4.1.0+): 200 with no data, or the first failing
        check as an ObshellApiError. Changes nothing on the agent."""
        if not _ZONE_RE.match(zone):
            raise ValueError(f"not a zone name: {zone!r}")
        for dag_id in force_pass_dag:
            _check_id(dag_id)
        body = {"freeze_server": freeze_server, "forcePassDag": {"id": list(force_pass_dag)}}
        await self._call("POST", f"/api/v1/ob/zone/{zone}/stop/check", body=body)

    # ----------------------------------------------------------------------------------------------
    # Transport

    async def _call(self, method: str, uri: str, *, body: Any = None, auth: bool = True) -> Any:
        """Send one request and return the envelope's `data` (None when absent)."""
        if not auth:
            return await self._send(method, uri, None, None)
        key = await self._public_key()
        try:
            return await self._send_signed(method, uri, body, key)
        except ObshellApiError as exc:
            if not exc.may_be_stale_key:
                raise
            # The agent may have a new key (redeployed; upgraded to 4.4.2's 1024-bit key; the address now reaches
            # another agent). A 401 means nothing ran, so fetch the key and try once more, unless the key is the
            # same, which makes a pre-4.3.1 10008 a real credentials refusal (README.md#obshell-releases-the-simulator-reproduces).
            self._keys.forget(self.endpoint.base_url, key)
            fresh = await self._public_key()
            if not exc.is_decrypt_failure and crypto.same_key(fresh, key):
                raise
            return await self._send_signed(method, uri, body, fresh)

    async def _send_signed(self, method: str, uri: str, body: Any, key: rsa.RSAPublicKey) -> Any:
        aes_keys = crypto.new_aes_keys()
        header = {
            "auth": self._password.get_secret_value(),
            # The agent checks the expiry against its own clock: sign with its time (learnt from every envelope),
            # so clock skew never makes a request expire. obshell 4.2.x would report that as a bare
            # "unauthorized", indistinguishable from a wrong password (README.md#obshell-releases-the-simulator-reproduces).
            "ts": str(int(time.time() + self._keys.clock_offset(self.endpoint.base_url)) + self._lifetime),
            "uri": uri,
            "keys": base64.b64encode(aes_keys).decode("ascii"),
        }
        signed = crypto.rsa_encrypt(key, json.dumps(header).encode("utf-8"))
        content = None if body is None else crypto.aes_encrypt(aes_keys, json.dumps(body).encode("utf-8"))
        return await self._send(method, uri, {self._auth_header: signed}, content)

    async def _public_key(self) -> rsa.RSAPublicKey:
        base = self.endpoint.base_url
        key = self._keys.get(base)
        if key is not None:
            return key
        async with self._keys.lock(base):
            key = self._keys.get(base)
            if key is None:
                data = await self._send("GET", "/api/v1/secret", None, None)
                if not isinstance(data, dict) or not isinstance(data.get("public_key"), str):
                    raise ObshellProtocolError("GET /api/v1/secret: no public_key in the response")
                try:
                    key = crypto.load_public_key(data["public_key"])
                except crypto.CryptoError as exc:
                    raise ObshellProtocolError(f"GET /api/v1/secret: {exc}") from None
                self._keys.put(base, key)
            return key

    async def _send(self, method: str, uri: str, headers: dict[str, str] | None, content: str | None) -> Any:
        trace_id = secrets.token_hex(8)
        all_headers = {HEADER_TRACE: trace_id, "Accept": "application/json", **(headers or {})}
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        where = f"{method} {self.endpoint.base_url}{uri.split('?')[0]}"
        try:
            request = self._http.build_request(
                method, self.endpoint.base_url + uri, headers=all_headers, content=content
            )
            response = await self._http.send(request, stream=True)
            try:
                raw = await _read_limited(response)
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ObshellTransportError(
                f"{where}: cannot connect ({_describe(exc)})", maybe_delivered=False
            ) from None
        except httpx.TimeoutException as exc:
            raise ObshellTransportError(
                f"{where}: timed out ({_describe(exc)})", maybe_delivered=True
            ) from None
        except httpx.HTTPError as exc:
            raise ObshellTransportError(
                f"{where}: connection failed ({_describe(exc)})", maybe_delivered=True
            ) from None
        received = time.time()
        # Decoded once: a DAG with its nodes and logs is the largest answer, and it is read at every poll.
        envelope = _decoded(raw)
        agent_time = _time_of(envelope)
        if agent_time is not None and agent_time.tzinfo is not None:
            self.last_server_time = agent_time
            self._keys.observe_clock(self.endpoint.base_url, agent_time, received)
        return _data_of(response.status_code, envelope, where=where, trace_id=trace_id)


def envelope_time(raw: bytes) -> datetime | None:
    """The agent's clock when it answered: the envelope's `timestamp` (RFC3339 with nanoseconds)."""
    return _time_of(_decoded(raw))


def parse_envelope(http_status: int, raw: bytes, *, where: str = "obshell", trace_id: str = "") -> Any:
    """Check obshell's response envelope (ob/agent/lib/http/response.go); return `data` or raise a typed error."""
    return _data_of(http_status, _decoded(raw), where=where, trace_id=trace_id)


def _decoded(raw: bytes) -> Any:
    """The answer's JSON, or None if it is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly nested JSON
        return None


def _time_of(envelope: Any) -> datetime | None:
    stamp = envelope.get("timestamp") if isinstance(envelope, dict) else None
    try:
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None


def _data_of(http_status: int, envelope: Any, *, where: str, trace_id: str) -> Any:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("successful"), bool):
        if http_status >= 400:
            # Not obshell's envelope: a proxy or load balancer answered. Keep the status, it is what matters.
            raise ObshellApiError(
                http_status, f"{where}: non-obshell error response", trace_id=trace_id, enveloped=False
            )
        raise ObshellProtocolError(f"{where}: HTTP {http_status} without an obshell response envelope")
    trace = envelope.get("traceId") if isinstance(envelope.get("traceId"), str) else trace_id
    if envelope["successful"] and http_status < 300:
        return envelope.get("data")
    error = envelope.get("error")
    if not isinstance(error, dict):
        error = {}
    message = error.get("message")
    err_code = error.get("errCode")
    code = error.get("code")
    raise ObshellApiError(
        http_status if http_status >= 400 else 500,
        message if isinstance(message, str) else f"{where}: error without a message",
        err_code=err_code if isinstance(err_code, str) else "",
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        trace_id=trace or "",
    )


def _parse(model: type[_M], data: Any, what: str) -> _M:
    if not isinstance(data, dict):
        raise ObshellProtocolError(f"{what}: expected an object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "(root)" for err in exc.errors()[:5])
        raise ObshellProtocolError(f"{what}: unexpected shape at {fields}") from None


def _parse_list(data: Any) -> list[DagDetail]:
    contents = data.get("contents") if isinstance(data, dict) else None
    if contents is None and isinstance(data, dict) and "contents" in data:
        return []  # Go serialises a nil slice as null
    if not isinstance(contents, list):
        raise ObshellProtocolError("DAG list: expected data.contents to be a list")
    return [_parse(DagDetail, item, "DAG list item") for item in contents]


def _check_id(generic_id: str) -> str:
    """Validate locally: a malformed id would otherwise end up in the request path."""
    ids.decode(generic_id)
    return generic_id


async def _read_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ObshellProtocolError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["KeyCache", "ObshellClient", "ObshellError", "parse_envelope"]
