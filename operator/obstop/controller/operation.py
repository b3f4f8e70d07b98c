"""One reconcile step of an ObStopRequest: the I/O around the pure decisions of reconcile.py.

spec -> (record submission) -> look for an earlier DAG, else POST /api/v1/ob/stop -> poll the main DAG -> status.
Each call returns a Decision; the Kopf handler writes it and schedules the next step.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from obstop.controller import agent_policy, reconcile
from obstop.controller.metrics import Metrics
from obstop.controller.reconcile import Decision, Step
from obstop.controller.resource import InvalidSpec, ObStopRequestSpec, parse_spec
from obstop.controller.secrets import SecretData, SecretReader, SecretUnavailable
from obstop.controller.settings import Settings
from obstop.controller.waker import Appointments
from obstop.obshell import (
    AgentEndpoint,
    DagDetail,
    KeyCache,
    ObshellApiError,
    ObshellClient,
    ObshellError,
    ObshellTransportError,
    ids,
    parse_endpoint,
)
from obstop.obshell.errors import FORCE_STOP_REQUIRED


class SecretNotReleased(Exception):
    """The Secret's owner does not let its value go to this agent (agent_policy): fail, having sent nothing."""

    def __init__(self, refusal: agent_policy.Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass
class _StageClock:
    """How fast one request's DAG moves, as seen from here (monotonic time), to time the next poll."""

    stage: int
    since: float
    durations: list[float] = field(default_factory=list)
    learned: set[str] = field(
        default_factory=set
    )  # ids of finished nodes already counted in the typical times

    def observe(self, stage: int, now: float) -> None:
        if stage != self.stage:
            steps = max(1, stage - self.stage)
            self.durations.append((now - self.since) / steps)
            del self.durations[:-8]
            self.stage, self.since = stage, now

    @property
    def mean(self) -> float | None:
        return sum(self.durations) / len(self.durations) if self.durations else None


class _RateLimit:
    """A token bucket: `rate` calls per second; a burst holds a tenth of that, so no one second sees more
    than 1.1 x rate calls."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 10)
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


@dataclass(frozen=True)
class Request:
    """What a step needs to know about the resource."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]


class Controller:
    """Shared state of the running controller: settings, HTTP pools, key cache, per-request pace."""

    def __init__(self, settings: Settings, secrets: SecretReader, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.secrets = secrets
        self.metrics = metrics or Metrics()
        self.keys = KeyCache()
        self._http: dict[str, httpx.AsyncClient] = {}
        self._agent_slots: dict[str, asyncio.Semaphore] = {}
        self._agent_rates: dict[str, _RateLimit] = {}
        self._clocks: dict[str, _StageClock] = {}
        self.appointments = Appointments()
        # Typical duration of each DAG node by name, and of whole stop DAGs by max_stage, learned from the DAGs
        # this controller followed: the next poll aims at the moment the DAG should end.
        self._node_seconds: dict[str, float] = {}
        self._dag_seconds: dict[int, float] = {}
        # Requests whose stop this process knows was not sent (recorded here, no POST yet, or a POST that
        # certainly did not reach the agent). Only for the others can a stop DAG on the agent be theirs: looking
        # for one when no POST can have landed would adopt a concurrent request's DAG.
        self._unsent: set[str] = set()

    async def aclose(self) -> None:
        for http in self._http.values():
            await http.aclose()
        self._http.clear()

    # ----------------------------------------------------------------------------------------------

    async def step(self, req: Request, logger: logging.Logger | logging.LoggerAdapter[Any]) -> Decision:
        decision = await self._step(req, logger)
        self._account(req, decision)
        self.appointments.expect(req.uid, req.namespace, req.name, decision.delay)
        return decision

    def _account(self, req: Request, decision: Decision) -> None:
        old, new = req.status, decision.status
        phase = new.get("phase")
        self.metrics.phase(req.uid, phase)
        if int(new.get("attempts") or 0) > int(old.get("attempts") or 0):
            self.metrics.retries.labels(str(new.get("reason") or "unknown")).inc()
        if phase in ("Succeeded", "Failed") and old.get("phase") not in ("Succeeded", "Failed"):
            started = reconcile.parse_time(new.get("startTime"))
            seconds = (datetime.now(UTC) - started).total_seconds() if started else None
            self.metrics.finished(req.uid, str(phase), seconds)

    def forget(self, uid: str) -> None:
        self.metrics.forget(uid)
        self.appointments.forget(uid)
        self._clocks.pop(uid, None)
        self._unsent.discard(uid)

    async def _step(self, req: Request, logger: logging.Logger | logging.LoggerAdapter[Any]) -> Decision:
        now = datetime.now(UTC)
        status = req.status
        step = reconcile.next_step(status)
        if step is Step.DONE:
            self._clocks.pop(req.uid, None)
            return Decision(dict(status), None)
        try:
            spec = parse_spec(req.spec)
        except InvalidSpec as exc:
            return reconcile.failed(status, "InvalidSpec", str(exc), req.generation, now)
        if step is Step.RECORD and spec.not_after is not None and now > spec.not_after:
            # Before any call to the agent: a stale request is never begun.
            message = (
                f"not begun: spec.notAfter ({reconcile.rfc3339(spec.not_after)}) has passed; nothing was sent "
                "to the agent (a request re-created after its stop? create a new one to stop again)"
            )
            return reconcile.failed(status, "Expired", message, req.generation, now)
        if reconcile.deadline_exceeded(status, spec.active_deadline_seconds, now):
            where = (
                f" (stop DAG {status['dag']['id']} is still {status['dag'].get('state')})"
                if step is Step.POLL
                else ""
            )
            message = f"not finished within activeDeadlineSeconds={spec.active_deadline_seconds}{where}"
            return reconcile.failed(status, "DeadlineExceeded", message, req.generation, now)
        try:
            client = await self._client(req.namespace, spec)
        except SecretUnavailable as exc:
            return reconcile.fault(status, str(exc), req.generation, now, self.settings)
        except SecretNotReleased as exc:  # before any connection to the agent: nothing was sent
            return reconcile.failed(status, exc.refusal.reason, exc.refusal.message, req.generation, now)
        slot = self._agent_slots.setdefault(
            client.endpoint.base_url, asyncio.Semaphore(self.settings.agent_concurrency)
        )
        async with slot:
            if step is Step.RECORD:
                return await self._record(req, client, now)
            if step is Step.SUBMIT:
                return await self._submit(req, spec, client, now, logger)
            return await self._poll(req, client, now, logger)

    async def _submit(
        self, req: Request, spec: ObStopRequestSpec, client: ObshellClient, now: datetime, logger: Any
    ) -> Decision:
        status, settings = req.status, self.settings
        params = spec.stop_params()
        blind = False  # looked for an earlier DAG where the agent could not show its finished ones
        if req.uid not in self._unsent:  # restarted, or an earlier POST may have landed
            try:
                moved = await self._receiver_moved(client, status["submission"])
                if moved is not None:
                    # An earlier POST may have landed on the agent recorded, whose history only it holds: sending
                    # again from here could stop the cluster twice. Wait until the address reaches it again.
                    return reconcile.fault(
                        status, moved, req.generation, now, settings, reason="AgentChanged"
                    )
                with self.metrics.call("unfinished_dags"):
                    earlier, blind = await self._find_earlier_dag(
                        client, status["submission"], force=params.force, terminate=params.terminate
                    )
            except ObshellError as exc:
                return self._submit_failed(req, exc, now)
            if earlier is not None:
                logger.info("adopting stop DAG %s of an unanswered submission", earlier.id)
                self._clocks[req.uid] = _StageClock(earlier.stage, time.monotonic())
                return reconcile.submitted(status, earlier, req.generation, now, settings, adopted=True)
        self._unsent.discard(req.uid)
        try:
            with self.metrics.call("stop"):
                self.metrics.submitted.inc()
                dag = await client.stop(params)
        except ObshellError as exc:
            # The agent answered with an error (it created no DAG), or the request certainly never reached it.
            # A proxy's 502/504 page is neither: the agent behind it may have created the DAG.
            if (isinstance(exc, ObshellApiError) and exc.enveloped) or (
                isinstance(exc, ObshellTransportError) and not exc.maybe_delivered
            ):
                self._unsent.add(req.uid)
            if isinstance(exc, ObshellApiError) and exc.is_force_stop_required:
                return await self._force_stop_required(req, client, exc, now, blind=blind)
            return self._submit_failed(req, exc, now)
        logger.info("stop DAG %s submitted (%s, %s)", dag.id, spec.scope.type.value, spec.mode)
        self._clocks[req.uid] = _StageClock(dag.stage, time.monotonic())
        decision = reconcile.submitted(
            status,
            dag,
            req.generation,
            now,
            settings,
            adopted=False,
            remaining_seconds=self._expected_dag_seconds(dag.max_stage),
            fine_seconds=self._fine_seconds(),
        )
        receiver = status["submission"].get("receiver")
        created_on = _agent_of(dag.id)
        if receiver and created_on and created_on != receiver:
            message = (
                f"the stop was answered by agent {created_on}, not {receiver} that answered at "
                f"{client.endpoint.base_url} just before: the address reaches more than one agent (a load-balanced "
                "Service?). Give spec.obshell.address of one agent; the stop goes on being followed"
            )
            logger.warning("%s", message)
            decision.events.append(reconcile.Event("Warning", "AgentChanged", message))
        return decision

    def _submit_failed(self, req: Request, exc: ObshellError, now: datetime) -> Decision:
        if not exc.transient:
            reason, message = reconcile.permanent_error(exc)
            return reconcile.failed(req.status, reason, message, req.generation, now)
        decision = reconcile.fault(req.status, exc, req.generation, now, self.settings)
        if (isinstance(exc, ObshellTransportError) and exc.maybe_delivered) or (
            isinstance(exc, ObshellApiError) and not exc.enveloped
        ):
            # The stop may have landed: give the agent a moment, then look for its DAG before sending again.
            decision.delay = max(decision.delay or 0, self.settings.lookup_grace_seconds)
        return decision

    async def _force_stop_required(
        self, req: Request, client: ObshellClient, exc: ObshellApiError, now: datetime, *, blind: bool
    ) -> Decision:
        """obshell asks for `force` whenever the receiving agent's observer has no usable connection (obState
        below 3), also while it boots or its pool reconnects (fact sheet §3.2, §6 item 20). Only an observer
        process that is not running makes that final; otherwise try again, saying why."""
        try:
            with self.metrics.call("status"):
                agent = await client.status()
        except ObshellError:
            agent = None
        if agent is None or agent.ob_state == 0:
            reason, message = reconcile.permanent_error(exc)
            if agent is not None:
                message += " (the agent reports its observer process is not running)"
            if blind:
                # An earlier POST of this request may have landed and done the stop, and this agent keeps no
                # history to tell (the DAG list route came with obshell 4.3.0.0): say so, never claim either way.
                reason = "OutcomeUnknown"
                message = (
                    f"an earlier stop of this request may have run: its answer was lost and obshell "
                    f"{req.status['submission'].get('obshellVersion') or 'before 4.3.0'} keeps no DAG history to "
                    "look it up in (obshell 4.3.0 and later do). Sending it again was refused: " + message
                )
            return reconcile.failed(req.status, reason, message, req.generation, now)
        state = {1: "running without a connection yet", 2: "reachable only through a restricted connection"}
        message = (
            f"{reconcile.describe_error(exc)}; the agent's observer is {state.get(agent.ob_state, 'not ready')} "
            f"(obState {agent.ob_state}): trying again until it is available"
            " (or activeDeadlineSeconds passes)"
        )
        return reconcile.fault(
            req.status, message, req.generation, now, self.settings, reason=FORCE_STOP_REQUIRED
        )

    async def _receiver_moved(self, client: ObshellClient, submission: Mapping[str, Any]) -> str | None:
        """Why the agent now answering at the address is not the one recorded before the first POST, if not."""
        receiver = submission.get("receiver")
        if not receiver:
            return None
        with self.metrics.call("info"):
            info = await client.info()
        now_at = _address(info.ip, info.port)
        if now_at == receiver:
            return None
        return (
            f"{client.endpoint.base_url} now reaches agent {now_at}, not {receiver} that answered before the stop "
            "was sent: the address must reach exactly one agent (not a load-balanced Service). Nothing is sent "
            f"again until {receiver} answers there, since only it knows whether the earlier stop landed"
        )

    def _expected_dag_seconds(self, max_stage: int) -> float | None:
        """A new DAG's expected duration (its nodes are not known yet): as long as earlier ones with as many
        stages, else that many nodes of typical length."""
        known = self._dag_seconds.get(max_stage)
        if known is None and self._node_seconds:
            known = max_stage * sum(self._node_seconds.values()) / len(self._node_seconds)
        return known

    def _fine_seconds(self, dag: DagDetail | None = None) -> float:
        last = dag.nodes[-1].name if dag is not None and dag.nodes else None
        typical = self._node_seconds.get(last) if last else None
        if typical is None and self._node_seconds:
            typical = min(self._node_seconds.values())
        return reconcile.fine_poll_seconds(typical, self.settings)

    def _learn(self, dag: DagDetail, clock: _StageClock) -> None:
        """Fold the durations of the DAG's newly finished nodes (agent's own times) into the typical ones."""
        for node in dag.nodes or ():
            if node.state.value != "SUCCEED" or node.id in clock.learned:
                continue
            started, ended = reconcile.parse_time(node.start_time), reconcile.parse_time(node.end_time)
            clock.learned.add(node.id)
            if started is None or ended is None or ended < started:
                continue
            _fold(self._node_seconds, node.name, (ended - started).total_seconds())
        if dag.succeeded:
            started, ended = reconcile.parse_time(dag.start_time), reconcile.parse_time(dag.end_time)
            if started is not None and ended is not None and ended >= started:
                _fold(self._dag_seconds, dag.max_stage, (ended - started).total_seconds())

    async def _record(self, req: Request, client: ObshellClient, now: datetime) -> Decision:
        """Ask the agent who it is and for its clock, then persist the submission before anything is POSTed."""
        try:
            with self.metrics.call("info"):
                info = await client.info()
        except ObshellError as exc:
            return reconcile.fault(req.status, exc, req.generation, now, self.settings)
        refusal = reconcile.unsupported_agent(info.version, info.supported_auth, info.identity)
        if refusal is not None:  # before any signed call: nothing was sent, the password included
            return reconcile.failed(req.status, *refusal, req.generation, now)
        agent_now = client.last_server_time or datetime.now(UTC)
        self._unsent.add(req.uid)
        return reconcile.record_submission(
            req.status,
            client.endpoint.base_url,
            agent_now,
            req.generation,
            now,
            receiver=_address(info.ip, info.port),
            version=info.version,
        )

    async def _find_earlier_dag(
        self, client: ObshellClient, submission: Mapping[str, Any], *, force: bool, terminate: bool
    ) -> tuple[DagDetail | None, bool]:
        """The stop DAG of an earlier POST whose answer we never saw, if the agent has one; and whether the
        agent could not show its finished DAGs (no history route before obshell 4.3.0.0).

        The main DAG of a stop lives on the agent that received it: listed as unfinished while it runs, and in
        the agent's history after. Only a DAG the agent started since `notBefore` (its own clock, recorded
        before the first POST) can be ours, and only one of this mode: the CLI, the dashboard and the per-zone
        stop API make "Stop OB" DAGs too (their nodes differ, fact sheet §5).
        """
        not_before = reconcile.parse_time(submission.get("notBefore"))
        if not_before is None:
            return None, False

        async def ours(dags: list[DagDetail]) -> DagDetail | None:
            candidates = sorted(
                (
                    dag
                    for dag in dags
                    if reconcile.dag_matches(dag, force=force, terminate=terminate)
                    and (started := reconcile.parse_time(dag.start_time)) is not None
                    and started >= not_before
                ),
                key=lambda d: d.dag_id,
            )
            for candidate in candidates:
                # The lists carry no nodes: read the DAG itself, to compare its nodes with this mode's and so
                # that a stop that already failed is reported with its failing node and last log line.
                detailed = await client.get_dag(candidate.id)
                if reconcile.dag_matches(detailed, force=force, terminate=terminate):
                    return detailed
            return None

        found = await ours(await client.agent_unfinished_dags())
        if found is not None:
            return found, False
        try:
            history = await client.agent_dags()
        except ObshellApiError as exc:
            if exc.is_unknown_route:  # before 4.3.0.0: the unfinished list is all the agent has
                return None, True
            raise
        return await ours(history), False

    async def _poll(self, req: Request, client: ObshellClient, now: datetime, logger: Any) -> Decision:
        status, settings = req.status, self.settings
        dag_id = status["dag"]["id"]
        try:
            self.metrics.poll(req.uid)
            with self.metrics.call("get_dag"):
                dag = await client.get_dag(dag_id, details=True)
        except ObshellError as exc:
            if exc.transient:
                return reconcile.fault(status, exc, req.generation, now, settings)
            if isinstance(exc, ObshellApiError) and exc.is_unauthorized:
                # The stop is already under way at the agent: failing the request would misreport it. Keep
                # following the DAG, saying what to fix, until the credentials work again.
                _, message = reconcile.permanent_error(exc)
                # obshell checks the root password against what it cached while the observers were up, and
                # cannot reread it from a stopped cluster: a password rotated during the stop is refused.
                message += (
                    "; if the root password was rotated while the cluster stops, obshell still expects the one it "
                    "had: put that back in the Secret until the stop ends (the stop itself is not affected)"
                )
                return reconcile.fault(status, message, req.generation, now, settings, reason=exc.reason)
            if isinstance(exc, ObshellApiError) and exc.status == 404:
                return self._dag_not_found(req, exc, now)
            reason, message = reconcile.permanent_error(exc)
            return reconcile.failed(status, reason, message, req.generation, now)
        mono = time.monotonic()
        clock = self._clocks.setdefault(req.uid, _StageClock(dag.stage, mono))
        clock.observe(dag.stage, mono)
        self._learn(dag, clock)
        decision = reconcile.observed(
            status,
            dag,
            req.generation,
            now,
            settings,
            stage_seconds=clock.mean,
            seconds_in_stage=mono - clock.since,
            remaining_seconds=reconcile.expected_remaining(
                dag, _seconds_in_node(dag, client.last_server_time), self._node_seconds
            ),
            fine_seconds=self._fine_seconds(dag),
        )
        if decision.delay is None:
            self._clocks.pop(req.uid, None)
            logger.info("stop DAG %s finished: %s", dag.id, decision.status.get("phase"))
        return decision

    def _dag_not_found(self, req: Request, exc: ObshellApiError, now: datetime) -> Decision:
        """obshell answers 404 for any lookup error, a busy sqlite included, and forwards an old id to the address
        it encodes (fact sheet §6 item 22): only "record not found", several times in a row, means the DAG is gone."""
        status = req.status
        dag_id = status["dag"]["id"]
        text = reconcile.describe_error(exc)
        if not exc.is_record_not_found:
            message = f"the agent could not look up stop DAG {dag_id} ({text}); the stop is not affected"
            return reconcile.fault(
                status, message, req.generation, now, self.settings, reason="DagLookupFailed"
            )
        streak = int(status.get("consecutiveErrors") or 0) + 1 if status.get("reason") == "DagNotFound" else 1
        if streak >= reconcile.DAG_NOT_FOUND_TRIES:
            message = f"stop DAG {dag_id} no longer exists on the agent ({streak} lookups in a row): {text}"
            return reconcile.failed(status, "DagNotFound", message, req.generation, now)
        message = f"stop DAG {dag_id} not found on the agent (lookup {streak} of {reconcile.DAG_NOT_FOUND_TRIES}): {text}"
        decision = reconcile.fault(status, message, req.generation, now, self.settings, reason="DagNotFound")
        decision.status["consecutiveErrors"] = streak
        return decision

    # ----------------------------------------------------------------------------------------------

    async def _client(self, namespace: str, spec: ObStopRequestSpec) -> ObshellClient:
        endpoint = parse_endpoint(spec.obshell.address)
        ref = spec.obshell.password_secret_ref
        password = self._release(await self.secrets.read(namespace, ref.name), ref.key, endpoint)
        http = (
            await self._http_for(namespace, spec, endpoint)
            if endpoint.scheme == "https"
            else self._plain_http()
        )
        return ObshellClient(
            endpoint, password, key_cache=self.keys, http=http, timeout=self.settings.obshell_timeout_seconds
        )

    def _plain_http(self) -> httpx.AsyncClient:
        return self._pooled("http", True)

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
        digest = hashlib.sha256(pem.encode()).hexdigest()
        key = f"https-ca-{digest}"
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
        limit = self._agent_rates.get(agent)
        if limit is None:
            limit = self._agent_rates[agent] = _RateLimit(self.settings.agent_rate)
        await limit.acquire()


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _agent_of(generic_id: str) -> str | None:
    """The ip:port a local DAG id encodes (fact sheet §4.5), in the form of _address."""
    try:
        agent = ids.decode(generic_id).agent
    except ValueError:
        return None
    return agent


def _seconds_in_node(dag: DagDetail, agent_now: datetime | None) -> float | None:
    """How long the current node has been running, by the agent's own clock (no skew with ours)."""
    node = dag.current_node
    started = reconcile.parse_time(node.start_time) if node is not None else None
    if agent_now is None or started is None or started.tzinfo is None or agent_now.tzinfo is None:
        return None
    return max(0.0, (agent_now - started).total_seconds())


def _fold(typical: dict[Any, float], key: Any, seconds: float, weight: float = 0.3) -> None:
    """Exponentially weighted mean: recent DAGs count most, one odd DAG does not swing it."""
    old = typical.get(key)
    typical[key] = seconds if old is None else old + weight * (seconds - old)
