"""The HTTP face of one simulated agent (aiohttp): auth, routes, envelope, fault hooks, control routes.

Every request goes through one handler so that the order of checks is exactly obshell's: header decrypt
(every route), body decrypt, route lookup (404), then verification on protected routes (ob/agent/api/common/middleware.go Verify).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from obstop.obshell import crypto
from obstop.testing.obshell_sim import clock
from obstop.testing.obshell_sim import dags as d
from obstop.testing.obshell_sim.cluster import SimAgent, StopRequest
from obstop.testing.obshell_sim.wire import ApiError, api_error, envelope, go_time, new_trace_id

if TYPE_CHECKING:
    from obstop.testing.obshell_sim.simulator import ObshellSimulator

HEADER_ROOT = "X-OCS-Header"
HEADER_AGENT = "X-OCS-Agent-Header"
HEADER_V1 = (
    "X-OCS-Auth"  # auth v1, 4.2.2.0 only (obshell-sdk-python auth/password.py; inferred from the SDKs)
)
HEADER_TRACE = "X-OBSHELL-Trace-ID"
CONTROL_PREFIX = "/__sim__/"
STOP_PATH = "/api/v1/ob/stop"
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass
class SignedHeader:
    """The decrypted X-OCS(-Agent)-Header. Never logged: it holds the password."""

    name: str
    auth: str
    ts: str
    uri: str
    keys: bytes

    def __repr__(self) -> str:
        return f"SignedHeader({self.name}, uri={self.uri!r}, ts={self.ts!r}, auth=***)"


@dataclass
class Call:
    """One request after decryption, as the route handlers see it."""

    request: web.Request
    header: SignedHeader | None
    body: bytes

    def json_body(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise api_error(
                "Common.BindJsonFailed", f"invalid character in JSON: {type(exc).__name__}"
            ) from None


Handler = Callable[[Call], Awaitable[Any]]


class AgentServer:
    """Serves one SimAgent on its own socket; can be stopped and started again on the same port."""

    def __init__(self, agent: SimAgent, sim: ObshellSimulator, ssl_context: ssl.SSLContext | None) -> None:
        self.agent = agent
        self.sim = sim
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        # (method, path) → (handler, needs auth). DAG routes with an id are matched in _route().
        self._routes: dict[tuple[str, str], tuple[Handler, bool]] = {
            ("GET", "/api/v1/secret"): (self._secret, False),
            ("GET", "/api/v1/info"): (self._info, False),
            ("GET", "/api/v1/status"): (self._status, False),
            ("POST", "/api/v1/status"): (self._status, False),
            ("GET", "/api/v1/time"): (self._time, False),
            ("POST", STOP_PATH): (self._stop, True),
            ("GET", "/api/v1/task/dag/unfinish"): (self._cluster_unfinished, True),
            ("GET", "/api/v1/task/dag/agent/unfinish"): (self._agent_unfinished, True),
            ("GET", "/api/v1/task/dag/maintain/agents"): (self._maintain_agents, True),
            ("GET", "/api/v1/agents/status"): (self._agents_status, True),
            ("GET", "/api/v1/ob/info"): (self._ob_info, True),
        }
        # Since 4.3.0.0; older agents answer as for any unknown route (ob/agent/api/task_handler.go).
        if sim.release.dag_history_routes:
            self._routes[("GET", "/api/v1/task/dags/agent")] = (self._agent_dags, True)

    # ----------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = bind_socket(self.agent.ip, self.agent.port)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=self._ssl).start()
        self._runner = runner
        self.agent.serving = True
        scheme = "https" if self._ssl else "http"
        self.agent.url = f"{scheme}://{self.agent.address}"

    async def stop(self) -> None:
        self.agent.serving = False
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ----------------------------------------------------------------------------------------------
    # The one handler

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self.sim.control(request)
        agent = self.agent
        agent.request_times.append(time.time())
        agent.request_paths.append(f"{request.method} {request.path}")
        agent.in_flight += 1
        agent.peak_in_flight = max(agent.peak_in_flight, agent.in_flight)
        try:
            return await self._serve(request)
        finally:
            agent.in_flight -= 1

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        given_trace = request.headers.get(HEADER_TRACE, "")
        trace = given_trace or ("" if request.path == "/api/v1/status" else new_trace_id())
        faults = self.sim.faults.take_request_faults(self.agent.address, request.method, request.path)
        release = self.sim.release
        status, data, error = 200, None, None
        if faults.error:
            error = api_error("Common.Unexpected", "Internal Server Error")
            status = error.status_in(release)
        else:
            try:
                data = await self._dispatch(request, dropped=faults.drop)
            except ApiError as exc:
                status, error = exc.status_in(release), exc
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop and request.transport is not None:
            # Executed, but the answer never leaves: the client sees the connection close.
            request.transport.abort()
            raise asyncio.CancelledError
        duration = int((time.monotonic() - started) * 1000)
        body = envelope(status, trace_id=trace, duration_ms=duration, data=data, error=error, release=release)
        return web.Response(status=status, body=body, content_type="application/json")

    async def _dispatch(self, request: web.Request, *, dropped: bool) -> Any:
        header = self._decrypt_header(request)
        raw_body = await request.read()
        body = raw_body
        if (
            header is not None and header.name != HEADER_V1 and raw_body
        ):  # v1 bodies are plaintext (obshell-sdk-python auth/password.py)
            body = self._decrypt_body(header, raw_body)
        handler, protected = self._route(request.method, request.path)
        stops = handler == self._stop or handler == self._zone_stop
        record = self.sim.new_stop_record(self.agent, dropped) if stops else None
        try:
            if protected:
                self._verify(header, request)
            call = Call(request, header, body)
            if record is not None:
                record.params = _json_or_none(body)
            result = await handler(call)
        except ApiError as exc:
            if record is not None:
                record.status, record.error = exc.status_in(self.sim.release), exc.err_code
            raise
        if record is not None and isinstance(result, dict):
            record.dag_id = result.get("id")
        return result

    def _route(self, method: str, path: str) -> tuple[Handler, bool]:
        found = self._routes.get((method, path))
        if found is not None:
            return found
        zone_prefix = "/api/v1/ob/zone/"
        if self.sim.release.zone_stop_routes and method == "POST" and path.startswith(zone_prefix):
            zone, _, action = path[len(zone_prefix) :].partition("/")
            if zone and action == "stop/check":
                return self._zone_stop_check, True
            if zone and action == "stop":
                return self._zone_stop, True
        prefix = "/api/v1/task/dag/"
        if path.startswith(prefix) and "/" not in path[len(prefix) :] and len(path) > len(prefix):
            if method == "GET":
                return self._get_dag, True
            if method == "POST":
                return self._operate_dag, True
        return self._not_found, False

    # ----------------------------------------------------------------------------------------------
    # Auth (ob/agent/api/common/middleware.go Verify)

    def _decrypt_header(self, request: web.Request) -> SignedHeader | None:
        release = self.sim.release
        if release.auth_v1_only:
            return self._decrypt_v1_header(request)
        # X-OCS-Agent-Header exists (and wins over X-OCS-Header) only from 4.2.6.0 (ob/agent/api/common/middleware.go Verify, README.md#obshell-releases-the-simulator-reproduces).
        use_agent = release.agent_header and HEADER_AGENT in request.headers
        name = HEADER_AGENT if use_agent else HEADER_ROOT
        value = request.headers.get(name)
        if value is None:
            return None
        try:
            plain = crypto.rsa_decrypt(self.agent.key, value)
        except crypto.CryptoError:
            raise api_error(
                "Security.Authentication.Header.DecryptFailed", "crypto/rsa: decryption error"
            ) from None
        try:
            fields = json.loads(plain)
        except (ValueError, UnicodeDecodeError):
            raise api_error(
                "Security.Authentication.Header.DecryptFailed", "invalid character in header JSON"
            ) from None
        if not isinstance(fields, dict):
            raise api_error(
                "Security.Authentication.Header.DecryptFailed",
                f"json: cannot unmarshal {type(fields).__name__} into Go value of type secure.HttpHeader",
            )
        lowered = {
            str(key).lower(): val for key, val in fields.items()
        }  # Go matches names case-insensitively
        text: dict[str, str] = {}
        for key in ("auth", "ts", "uri", "keys"):
            val = lowered.get(key)
            if val is not None and not isinstance(val, str):
                raise api_error(
                    "Security.Authentication.Header.DecryptFailed",
                    f"json: cannot unmarshal {_json_kind(val)} into Go struct field HttpHeader.{key.capitalize()}"
                    f" of type {'[]uint8' if key == 'keys' else 'string'}",
                )
            text[key] = val or ""
        try:
            keys = base64.b64decode(text["keys"], validate=True)
        except (binascii.Error, ValueError):
            raise api_error(
                "Security.Authentication.Header.DecryptFailed", "illegal base64 data in Keys"
            ) from None
        return SignedHeader(name, text["auth"], text["ts"], text["uri"], keys)

    def _decrypt_v1_header(self, request: web.Request) -> SignedHeader | None:
        """Auth v1 (4.2.2.0 only): `X-OCS-Auth` = RSA of {"password", "ts": <int expiry>}, no Uri, no body keys.

        Inferred from obshell-sdk-python auth/password.py PasswordAuthMethodV1: the 4.2.2 server is not in public
        history, so how it reports a failure is a guess (401 10008, like 4.2.3). It does not know X-OCS-Header."""
        value = request.headers.get(HEADER_V1)
        if value is None:
            return None
        try:
            fields = json.loads(crypto.rsa_decrypt(self.agent.key, value))
        except (crypto.CryptoError, ValueError, UnicodeDecodeError):
            fields = None
        if not isinstance(fields, dict):
            raise api_error("Security.Authentication.Header.DecryptFailed", "crypto/rsa: decryption error")
        password, ts = fields.get("password"), fields.get("ts")
        if not isinstance(password, str) or isinstance(ts, bool) or not isinstance(ts, int):
            raise api_error("Security.Authentication.Header.DecryptFailed", "invalid auth v1 header")
        return SignedHeader(HEADER_V1, password, str(ts), "", b"")

    @staticmethod
    def _decrypt_body(header: SignedHeader, raw: bytes) -> bytes:
        if len(header.keys) < crypto.AES_KEY_SIZE + crypto.AES_BLOCK_SIZE:
            raise api_error("Request.Body.Decrypt.AES.KeyAndIv.Invalid")
        try:
            cipher = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            cipher = b""  # obshell ignores the base64 error; the length check below refuses it
        if not cipher or len(cipher) % crypto.AES_BLOCK_SIZE:
            raise api_error("Request.Body.Decrypt.AES.ContentLength.Invalid")
        try:
            return crypto.aes_decrypt(header.keys, raw)
        except crypto.CryptoError:
            return b""  # bad padding: obshell binds garbage, which fails as JSON

    def _verify(self, header: SignedHeader | None, request: web.Request) -> None:
        if header is None:
            raise api_error("Request.Header.NotFound")
        # From 4.2.6.0 the Uri is checked first; 4.2.3.0-4.2.5.x check Ts and password first (ob/agent/api/common/middleware.go Verify, README.md#obshell-releases-the-simulator-reproduces).
        # Auth v1 (4.2.2.0) signs no Uri.
        check_uri = header.name != HEADER_V1
        if check_uri and self.sim.release.uri_checked_first:
            self._verify_uri(header, request)
        self._verify_ts(header)
        self._verify_password(header)
        if check_uri and not self.sim.release.uri_checked_first:
            self._verify_uri(header, request)

    @staticmethod
    def _verify_uri(header: SignedHeader, request: web.Request) -> None:
        if header.uri != request.raw_path:
            raise api_error("Security.Authentication.Header.UriMismatch")

    @staticmethod
    def _verify_ts(header: SignedHeader) -> None:
        now = int(clock.time())
        if header.auth != "":
            try:
                expiry = int(header.ts)
            except ValueError:
                raise api_error(
                    "Security.Authentication.Timestamp.Invalid",
                    header.ts,
                    f"strconv.ParseInt: parsing {json.dumps(header.ts)}: invalid syntax",
                ) from None
            if now > expiry:
                raise api_error("Security.Authentication.Expired")

    def _verify_password(self, header: SignedHeader) -> None:
        if self.agent.identity == "SINGLE":
            # An agent outside any cluster: with no agent password set any decryptable header passes; with one,
            # only X-OCS-Agent-Header carrying it (ob/agent/api/common/middleware.go Verify step 4).
            if not self.sim.has_agent_password:
                return
            if header.name != HEADER_AGENT:
                raise api_error("Security.Authentication.WithAgentPassword", "agent password has been set")
            if not self.sim.agent_password_matches(header.auth):
                raise api_error("Security.Authentication.IncorrectAgentPassword")
            return
        if header.name == HEADER_AGENT:
            if not self.sim.agent_password_matches(header.auth):
                if self.sim.has_agent_password:
                    raise api_error("Security.Authentication.IncorrectAgentPassword")
                raise api_error(
                    "Security.Authentication.WithOceanBasePassword", "agent password is not initialized"
                )
            return
        if not self.agent.cluster.password_matches(header.auth):
            # Before 4.3.1.0 the detail says whether OB was there to ask (secure/auth.go VerifyAuth @737982a).
            legacy = (
                "access denied"
                if self.agent.observer_running
                else "access denied: oceanbase password is incorrect"
            )
            raise api_error("Security.Authentication.IncorrectOceanbasePassword", legacy=legacy)

    # ----------------------------------------------------------------------------------------------
    # Routes

    async def _not_found(self, call: Call) -> Any:
        raise api_error("Common.NotFound", "404 not found")

    async def _secret(self, call: Call) -> Any:
        return {
            "ip": self.agent.ip,
            "port": self.agent.port,
            "public_key": crypto.dump_public_key(self.agent.key.public_key()),
        }

    async def _info(self, call: Call) -> Any:
        return self.agent.info_wire(self.sim.release)

    async def _status(self, call: Call) -> Any:
        return self.agent.status_wire(self.sim.release)

    async def _time(self, call: Call) -> Any:
        return go_time(
            clock.now()
        )  # a Go time.Time: an RFC 3339 string, not a number (ob/agent/meta/agent.go)

    async def _stop(self, call: Call) -> Any:
        request = self.agent.cluster.validate_stop(call.json_body(), self.agent)
        return self._start_stop(request)

    async def _zone_stop(self, call: Call) -> Any:
        zone = call.request.path.split("/")[5]
        request = self.agent.cluster.validate_zone_stop(zone, call.json_body(), self.agent)
        return self._start_stop(request, d.zone_stop_node_names(freeze_server=request.terminate))

    def _start_stop(self, request: StopRequest, names: list[str] | None = None) -> Any:
        """The stop's main DAG, without details, as the POST answers it (stop.go HandleObStop)."""
        dag = self.agent.cluster.create_stop(
            self.agent,
            request,
            lambda nodes: self.sim.faults.take_stop_failure(self.agent.address, nodes),
            names,
        )
        return dag.to_wire(details=False)

    async def _get_dag(self, call: Call) -> Any:
        generic_id = call.request.path.rsplit("/", 1)[1]
        details = _parse_bool(call.request.query.get("show_details", "true"))
        _, dag = self.agent.cluster.resolve(generic_id, self.agent)
        return dag.to_wire(details=details)

    async def _operate_dag(self, call: Call) -> Any:
        generic_id = call.request.path.rsplit("/", 1)[1]
        _, dag = self.agent.cluster.resolve(generic_id, self.agent)
        body = call.json_body()
        operator = (
            next((v for k, v in body.items() if k.lower() == "operator"), "")
            if isinstance(body, dict)
            else ""
        )
        self.agent.cluster.operate(dag, operator)
        return None

    # Every list route takes show_details, default true (ob/param/task.go).

    async def _agent_unfinished(self, call: Call) -> Any:
        details = _details(call)
        return [dag.to_wire(details=details) for dag in self.agent.cluster.unfinished(self.agent)]

    async def _agent_dags(self, call: Call) -> Any:
        details = _details(call)
        return [dag.to_wire(details=details) for dag in self.agent.dags.values()]

    async def _cluster_unfinished(self, call: Call) -> Any:
        details = _details(call)
        cluster = self.agent.cluster
        reachable = [a for a in cluster.agents if a.serving or a is self.agent]
        return [dag.to_wire(details=details) for agent in reachable for dag in cluster.unfinished(agent)]

    async def _maintain_agents(self, call: Call) -> Any:
        details = _details(call)
        result = []
        for agent in self.agent.cluster.agents:
            maintenance = [dag for dag in agent.dags.values() if dag.maintenance_type == 2]
            if maintenance:
                result.append(maintenance[-1].to_wire(details=details))
        return result

    async def _ob_info(self, call: Call) -> Any:
        return self.agent.cluster.ob_info_wire(self.agent)

    async def _zone_stop_check(self, call: Call) -> Any:
        zone = call.request.path.split("/")[5]
        body = call.json_body()
        if body is not None and not isinstance(body, dict):
            raise api_error("Common.BindJsonFailed", "json: cannot unmarshal into param.ObZoneStopParam")
        self.agent.cluster.check_zone_stop(zone, self.agent)
        return None

    async def _agents_status(self, call: Call) -> Any:
        release = self.sim.release
        return {a.address: a.status_wire(release) for a in self.agent.cluster.agents if a.serving}


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _details(call: Call) -> bool:
    return _parse_bool(call.request.query.get("show_details", "true"))


def _parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise api_error(
        "Common.IllegalArgument", "show_details", f"strconv.ParseBool: parsing {text!r}: invalid syntax"
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "value"


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None
