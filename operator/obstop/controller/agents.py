"""Clients of the obshell agents a request names: the Secret released only where its owner allows, pooled HTTP
connections, TLS from the request's CA Secret, a per-agent call rate and concurrency. The controller's edge
towards obshell; the only place that reads a Secret's value."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time

import httpx
from pydantic import SecretStr

from obstop.controller import agent_policy
from obstop.controller.resource import ObStopRequestSpec
from obstop.controller.secrets import SecretData, SecretReader, SecretUnavailable
from obstop.controller.settings import Settings
from obstop.obshell import AgentEndpoint, KeyCache, ObshellClient, parse_endpoint


class SecretNotReleased(Exception):
    """The Secret's owner does not let its value go to this agent (agent_policy): fail, having sent nothing."""

    def __init__(self, refusal: agent_policy.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _RateLimit:
    """A token bucket: `rate` calls per second, with a burst of a tenth of that but at least 4, so that a new
    request's calls before its stop (info, key, POST) never wait: no one second sees more than rate + burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(4.0, rate / 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # first come, first served
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.rate)
                self.tokens, self.stamp = 1.0, time.monotonic()
            self.tokens -= 1


class Agents:
    """Makes the ObshellClient for a request's agent. One per controller: it owns the HTTP pools and the cache of
    agents' keys and clocks."""

    def __init__(self, settings: Settings, secrets: SecretReader) -> None:
        self.settings = settings
        self.secrets = secrets
        self.keys = KeyCache()
        self._http: dict[str, httpx.AsyncClient] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._rates: dict[str, _RateLimit] = {}

    async def aclose(self) -> None:
        for http in self._http.values():
            await http.aclose()
        self._http.clear()

    def slot(self, client: ObshellClient) -> asyncio.Semaphore:
        """At most OBSTOP_AGENT_CONCURRENCY steps talk to one agent at once."""
        base = client.endpoint.base_url
        if base not in self._slots:
            self._slots[base] = asyncio.Semaphore(self.settings.agent_concurrency)
        return self._slots[base]

    async def client(self, namespace: str, spec: ObStopRequestSpec) -> ObshellClient:
        """SecretUnavailable or SecretNotReleased (before any connection to the agent) when it cannot be had."""
        endpoint = parse_endpoint(spec.obshell.address)
        ref = spec.obshell.password_secret_ref
        password = self._release(await self.secrets.read(namespace, ref.name), ref.key, endpoint)
        http = (
            await self._http_for(namespace, spec, endpoint)
            if endpoint.scheme == "https"
            else self._pooled("http", True)
        )
        return ObshellClient(
            endpoint, password, key_cache=self.keys, http=http, timeout=self.settings.obshell_timeout_seconds
        )

    def _release(self, secret: SecretData, key: str, endpoint: AgentEndpoint) -> SecretStr:
        """The value of `key`, only if the Secret's owner lets it go to this agent (checked on every step, so
        removing the annotation stops the next call); SecretNotReleased otherwise."""
        refusal = agent_policy.check(
            secret.ref, secret.annotations, key, endpoint, self.settings.allowed_agent_patterns
        )
        if refusal is not None:
            raise SecretNotReleased(refusal)
        return secret.value(key)

    async def _http_for(
        self, namespace: str, spec: ObStopRequestSpec, endpoint: AgentEndpoint
    ) -> httpx.AsyncClient:
        if spec.obshell.insecure_skip_tls_verify:
            return self._pooled("https-insecure", False)
        ca = spec.obshell.ca_secret_ref
        if ca is None:
            return self._pooled("https-system", True)
        bundle = self._release(await self.secrets.read(namespace, ca.name), ca.key, endpoint)
        pem = bundle.get_secret_value()
        key = f"https-ca-{hashlib.sha256(pem.encode()).hexdigest()}"
        if key not in self._http:
            try:
                context = ssl.create_default_context(cadata=pem)
            except ssl.SSLError:
                raise SecretUnavailable(
                    f"Secret {namespace}/{ca.name} key {ca.key!r} is not a PEM CA bundle"
                ) from None
            self._http[key] = self._new_http(context)
        return self._http[key]

    def _pooled(self, key: str, verify: bool) -> httpx.AsyncClient:
        if key not in self._http:
            self._http[key] = self._new_http(verify)
        return self._http[key]

    def _new_http(self, verify: bool | ssl.SSLContext) -> httpx.AsyncClient:
        timeout = httpx.Timeout(
            self.settings.obshell_timeout_seconds, connect=min(5.0, self.settings.obshell_timeout_seconds)
        )
        # httpcore scans every pooled connection on each request (a profile at 300 requests showed a third of
        # the controller's CPU there). Calls to one agent are seconds apart, so idle keep-alive connections to
        # hundreds of agents buy little: keep a few, briefly.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=16, keepalive_expiry=2.0)
        hooks = {"request": [self._pace_call]} if self.settings.agent_rate > 0 else {}
        return httpx.AsyncClient(
            verify=verify, timeout=timeout, limits=limits, follow_redirects=False, event_hooks=hooks
        )

    async def _pace_call(self, request: httpx.Request) -> None:
        """Every call to an agent waits for its turn under OBSTOP_AGENT_RATE (calls per second per agent)."""
        agent = request.url.netloc.decode()
        limit = self._rates.get(agent)
        if limit is None:
            limit = self._rates[agent] = _RateLimit(self.settings.agent_rate)
        await limit.acquire()
