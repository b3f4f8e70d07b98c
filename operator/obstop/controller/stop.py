"""One step of an ObStopRequest: the calls to obshell around the pure decisions of decisions.py.

spec -> (record the submission) -> look for an earlier DAG if a stop may have landed, else POST /api/v1/ob/stop
-> poll the main DAG -> status. Each step returns a Decision; the request's follower (follow.py) writes it and
waits for the next step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from obstop.controller import answers, cancel, decisions, lookup, pacing
from obstop.controller.agents import Agents, SecretNotReleased
from obstop.controller.approvals import ApprovalObject, ApprovalReader
from obstop.controller.decisions import At, Decision, Event, Step
from obstop.controller.metrics import Metrics
from obstop.controller.prestop import Passed, PreStop
from obstop.controller.resource import (
    CANCEL_ANNOTATION,
    DeadlineAction,
    InvalidSpec,
    ObStopRequestSpec,
    Phase,
    parse_spec,
)
from obstop.controller.runtime import RequestRuntime, Runtimes
from obstop.controller.secrets import SecretReader, SecretUnavailable
from obstop.controller.settings import Settings
from obstop.controller.status import EventReason, Reason, RequestStatus, Submission, rfc3339
from obstop.obshell import DagDetail, ObshellApiError, ObshellClient, ObshellError, ObshellTransportError

Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class Request:
    """What a step needs to know about the resource."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: RequestStatus
    annotations: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = (
        None  # metadata.creationTimestamp: approvals older than the request do not count
    )

    @property
    def cancel_asked(self) -> bool:
        return self.annotations.get(CANCEL_ANNOTATION, "").strip().lower() == "true"


class Controller:
    """The running controller: its settings, the agents' clients, and what it keeps about each request."""

    def __init__(
        self,
        settings: Settings,
        secrets: SecretReader,
        metrics: Metrics | None = None,
        approvals: ApprovalReader | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.agents = Agents(settings, secrets)
        self.prestop = PreStop(settings, self.metrics, approvals)
        self.runtimes = Runtimes()
        self.node_times = pacing.NodeTimes()

    async def aclose(self) -> None:
        await self.agents.aclose()

    @property
    def knowledge(self) -> int:
        """Grows each time something is learned that may move the aim of a poll already planned."""
        return self.node_times.generation

    def replan(self, uid: str) -> float | None:
        """Seconds from the last step's answer until the DAG should be read, as aimed with what is known now;
        None if that step's next one is not an aimed poll (pacing.py rule 5)."""
        runtime = self.runtimes.find(uid)
        if runtime is None or runtime.paced is None:
            return None
        return runtime.paced.next_poll_seconds(self.node_times, self.settings)

    def forget(self, uid: str) -> None:
        """A deleted request: the one place its runtime object goes."""
        runtime = self.runtimes.forget(uid)
        if runtime is not None:
            self.metrics.phase_changed(runtime.phase, None)

    async def step(self, req: Request, logger: Logger) -> Decision:
        runtime = self.runtimes.get(req.uid, req.namespace, req.name)
        runtime.paced = None  # set again below only if this step's next one is an aimed poll
        decision = await self._step(req, runtime, logger)
        if decision.next_step_in is None:
            runtime.paced = None
        self._account(req, runtime, decision)
        return decision

    def _account(self, req: Request, runtime: RequestRuntime, decision: Decision) -> None:
        old, new = req.status, decision.status
        if new.phase != runtime.phase:
            self.metrics.phase_changed(runtime.phase, new.phase)
            runtime.phase = new.phase
        if (new.attempts or 0) > (old.attempts or 0):
            self.metrics.retries.labels(str(new.reason or "unknown")).inc()
        if new.terminal and not old.terminal:
            seconds = (datetime.now(UTC) - new.start_time).total_seconds() if new.start_time else None
            self.metrics.finished(new.phase, runtime.polls, seconds)
            runtime.polls = 0

    async def _step(self, req: Request, runtime: RequestRuntime, logger: Logger) -> Decision:
        at = At(req.generation, datetime.now(UTC))
        status = req.status
        step = decisions.next_step(status)
        if step is Step.DONE:  # a reorder of a set list after the end: acknowledge the generation, do nothing
            return decisions.acknowledged(status, req.generation)
        try:
            spec = parse_spec(req.spec)
        except InvalidSpec as exc:
            return decisions.failed(status, Reason.INVALID_SPEC, str(exc), at)
        if step is Step.RECORD and spec.not_after is not None and at.now > spec.not_after:
            # Before any call to the agent: a stale request is never begun.
            message = (
                f"not begun: spec.notAfter ({rfc3339(spec.not_after)}) has passed; nothing was sent "
                "to the agent (a request re-created after its stop? create a new one to stop again)"
            )
            return decisions.failed(status, Reason.EXPIRED, message, at)
        cancel_by: cancel.By | None = "Annotation" if req.cancel_asked else None
        if decisions.deadline_exceeded(status, spec.active_deadline_seconds, at.now):
            if spec.deadline_action is DeadlineAction.CANCEL:
                cancel_by = cancel_by or "Deadline"
            else:
                dag = status.dag
                where = f" (stop DAG {dag.id} is still {dag.state})" if step is Step.POLL and dag else ""
                message = f"not finished within activeDeadlineSeconds={spec.active_deadline_seconds}{where}"
                return decisions.failed(status, Reason.DEADLINE_EXCEEDED, message, at)
        if cancel_by is not None and (
            step is Step.RECORD or (step is Step.SUBMIT and not runtime.may_have_landed)
        ):
            return cancel.before_anything_was_sent(status, cancel_by, at)
        approval: ApprovalObject | None = None
        if step is Step.RECORD and status.phase is Phase.AWAITING_APPROVAL:
            # Waiting is the API server's business only: the agent is asked again once someone approved.
            waited = await self.prestop.wait(req.namespace, req.name, req.uid, req.created, status, at)
            if isinstance(waited, Decision):
                return waited
            approval = waited
        try:
            client = await self.agents.client(req.namespace, spec)
        except SecretUnavailable as exc:
            return decisions.fault(status, Reason.WAITING_FOR_SECRET, str(exc), at, self.settings)
        except SecretNotReleased as exc:  # before any connection to the agent: nothing was sent
            return decisions.failed(status, exc.refusal.reason, exc.refusal.message, at)
        async with self.agents.slot(client):
            if cancel_by is not None:
                return await cancel.step(self, req, runtime, spec, client, at, cancel_by, logger)
            if step is Step.RECORD:
                return await self._record(req, runtime, spec, client, at, approval)
            if step is Step.SUBMIT:
                return await self._submit(req, runtime, spec, client, at, logger)
            return await self._poll(req, runtime, client, at, logger)

    # ----------------------------------------------------------------------------------------------
    # Record: before anything is POSTed

    async def _record(
        self,
        req: Request,
        runtime: RequestRuntime,
        spec: ObStopRequestSpec,
        client: ObshellClient,
        at: At,
        approval: ApprovalObject | None,
    ) -> Decision:
        """Ask the agent who it is and for its clock, pre-check the stop (and pass the approval gate), then
        persist the submission."""
        try:
            with self.metrics.call("info"):
                info = await client.info()
        except ObshellError as exc:
            return decisions.obshell_fault(req.status, exc, at, self.settings)
        refusal = answers.unsupported_agent(info.version, info.supported_auth, info.identity)
        if refusal is not None:  # before any signed call: nothing was sent, the password included
            return decisions.failed(req.status, *refusal, at)
        gate = await self.prestop.check(req.status, spec, client, info, at, approval)
        if not isinstance(gate, Passed):
            return gate
        runtime.may_have_landed = False
        submission = Submission(
            agent=client.endpoint.base_url,
            requested_at=at.now,
            not_before=client.last_server_time or at.now,
            receiver=answers.agent_address(info.ip, info.port),
            obshell_version=info.version or None,
        )
        decision = decisions.record_submission(gate.status, submission, at)
        return Decision(decision.status, decision.next_step_in, (*gate.events, *decision.events))

    # ----------------------------------------------------------------------------------------------
    # Submit: find the DAG of a stop that may have landed, else POST

    async def _submit(
        self,
        req: Request,
        runtime: RequestRuntime,
        spec: ObStopRequestSpec,
        client: ObshellClient,
        at: At,
        logger: Logger,
    ) -> Decision:
        status, settings = req.status, self.settings
        assert status.submission is not None  # Step.SUBMIT
        params = spec.stop_params()
        blind = False  # looked for an earlier DAG where the agent could not show its finished ones
        if runtime.may_have_landed:
            try:
                with self.metrics.call("info"):
                    moved = await lookup.receiver_moved(client, status.submission)
                if moved is not None:
                    # An earlier POST may have landed on the agent recorded, whose history only it holds:
                    # sending again from here could stop the cluster twice. Wait until it answers there again.
                    return decisions.fault(status, Reason.AGENT_CHANGED, moved, at, settings)
                with self.metrics.call("unfinished_dags"):
                    earlier, blind = await lookup.find_earlier_dag(client, status.submission, spec)
            except ObshellError as exc:
                return self._submit_failed(req, exc, at)
            if earlier is not None:
                logger.info("adopting stop DAG %s of an unanswered submission", earlier.id)
                return decisions.submitted(
                    status, earlier, at, adopted=True, next_poll=self._poll_in(earlier, client, runtime)
                )
        runtime.may_have_landed = True  # from here on, until obshell says otherwise
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
                runtime.may_have_landed = False
            if isinstance(exc, ObshellApiError) and exc.is_force_stop_required:
                return await self._force_stop_required(req, client, exc, at, blind=blind)
            if isinstance(exc, ObshellApiError) and not exc.transient:
                # Refused at the POST (a missing target, a bad password): terminal, and said so.
                return decisions.failed(req.status, *answers.stop_refused(exc, none_landed=not blind), at)
            return self._submit_failed(req, exc, at)
        logger.info("stop DAG %s submitted (%s, %s)", dag.id, spec.scope.type.value, spec.mode)
        decision = decisions.submitted(
            status, dag, at, adopted=False, next_poll=self._poll_in(dag, client, runtime)
        )
        receiver, created_on = status.submission.receiver, answers.agent_of(dag.id)
        if receiver and created_on and created_on != receiver:
            message = (
                f"the stop was answered by agent {created_on}, not {receiver} that answered at "
                f"{client.endpoint.base_url} just before: the address reaches more than one agent (a load-balanced "
                "Service?). Give spec.obshell.address of one agent; the stop goes on being followed"
            )
            logger.warning("%s", message)
            decision = decision.with_event(Event("Warning", EventReason.AGENT_CHANGED, message))
        return decision

    def _submit_failed(self, req: Request, exc: ObshellError, at: At) -> Decision:
        if not exc.transient:
            return decisions.failed(req.status, *answers.permanent_error(exc), at)
        decision = decisions.obshell_fault(req.status, exc, at, self.settings)
        if (isinstance(exc, ObshellTransportError) and exc.maybe_delivered) or (
            isinstance(exc, ObshellApiError) and not exc.enveloped
        ):
            # The stop may have landed: give the agent a moment, then look for its DAG before sending again.
            wait = max(decision.next_step_in or 0, self.settings.lookup_grace_seconds)
            decision = Decision(decision.status, wait, decision.events)
        return decision

    async def _force_stop_required(
        self, req: Request, client: ObshellClient, exc: ObshellApiError, at: At, *, blind: bool
    ) -> Decision:
        """obshell asks for `force` whenever the receiving agent's observer has no usable connection (obState
        below 3), also while it boots or its pool reconnects (obshell agent/executor/ob/stop.go CheckStopObParam,
        repository/db/oceanbase/status.go). Only an observer process that is not running makes that final."""
        try:
            with self.metrics.call("status"):
                agent = await client.status()
        except ObshellError:
            agent = None
        if agent is None or agent.ob_state == 0:
            reason, message = answers.permanent_error(exc)
            if agent is not None:
                message += " (the agent reports its observer process is not running)"
            message += answers.NOTHING_STOPPED if not blind else ""
            if blind:
                # An earlier POST of this request may have landed and done the stop, and this agent keeps no
                # history to tell (the DAG list route came with obshell 4.3.0.0): say so, never claim either way.
                version = req.status.submission.obshell_version if req.status.submission else None
                reason = Reason.OUTCOME_UNKNOWN
                message = (
                    f"an earlier stop of this request may have run: its answer was lost and obshell "
                    f"{version or 'before 4.3.0'} keeps no DAG history to look it up in (obshell 4.3.0 and "
                    "later do). Sending it again was refused: " + message
                )
            return decisions.failed(req.status, reason, message, at)
        state = {1: "running without a connection yet", 2: "reachable only through a restricted connection"}
        message = (
            f"{answers.describe_error(exc)}; the agent's observer is {state.get(agent.ob_state, 'not ready')} "
            f"(obState {agent.ob_state}): trying again until it is available (or activeDeadlineSeconds passes)"
        )
        return decisions.fault(req.status, Reason.FORCE_STOP_REQUIRED, message, at, self.settings)

    # ----------------------------------------------------------------------------------------------
    # Poll: follow the main DAG

    async def _poll(
        self, req: Request, runtime: RequestRuntime, client: ObshellClient, at: At, logger: Logger
    ) -> Decision:
        status = req.status
        assert status.dag is not None  # Step.POLL
        try:
            runtime.polls += 1
            with self.metrics.call("get_dag"):
                dag = await client.get_dag(status.dag.id, details=True)
        except ObshellError as exc:
            return self._poll_failed(req, exc, at)
        self.node_times.learn(dag, runtime.learned, client.last_server_time)
        decision = decisions.observed(status, dag, at, next_poll=self._poll_in(dag, client, runtime))
        if decision.done:
            logger.info("stop DAG %s finished: %s", dag.id, decision.status.phase)
        return decision

    def _poll_in(self, dag: DagDetail, client: ObshellClient, runtime: RequestRuntime) -> float:
        """When to read the DAG again (pacing.py), by the agent's clock of the answer that showed it; the view it
        is aimed from is kept in the runtime, to aim again if something is learned meanwhile (rule 5)."""
        runtime.paced = pacing.View.of(dag, client.last_server_time)
        return runtime.paced.next_poll_seconds(self.node_times, self.settings)

    def _poll_failed(self, req: Request, exc: ObshellError, at: At) -> Decision:
        status, settings = req.status, self.settings
        if exc.transient:
            return decisions.obshell_fault(status, exc, at, settings)
        if isinstance(exc, ObshellApiError) and exc.is_unauthorized:
            # The stop is already under way at the agent: failing the request would misreport it. Keep following
            # the DAG, saying what to fix, until the credentials work again. obshell checks the root password
            # against what it cached while the observers were up, and cannot reread it from a stopped cluster.
            _, message = answers.permanent_error(exc)
            message += (
                "; if the root password was rotated while the cluster stops, obshell still expects the one it "
                "had: put that back in the Secret until the stop ends (the stop itself is not affected)"
            )
            return decisions.fault(status, exc.reason, message, at, settings)
        if isinstance(exc, ObshellApiError) and exc.status == 404:
            return self._dag_not_found(status, exc, at)
        return decisions.failed(status, *answers.permanent_error(exc), at)

    def _dag_not_found(self, status: RequestStatus, exc: ObshellApiError, at: At) -> Decision:
        """obshell answers 404 for any lookup error, a busy sqlite included, and forwards an old id to the address
        it encodes (agent/executor/task/dag.go): only "record not found", several times in a row, means gone."""
        assert status.dag is not None
        dag_id, text = status.dag.id, answers.describe_error(exc)
        if not exc.is_record_not_found:
            message = f"the agent could not look up stop DAG {dag_id} ({text}); the stop is not affected"
            return decisions.fault(status, Reason.DAG_LOOKUP_FAILED, message, at, self.settings)
        streak = (status.consecutive_errors or 0) + 1 if status.reason == Reason.DAG_NOT_FOUND else 1
        tries = answers.DAG_NOT_FOUND_TRIES
        if streak >= tries:
            message = f"stop DAG {dag_id} no longer exists on the agent ({streak} lookups in a row): {text}"
            return decisions.failed(status, Reason.DAG_NOT_FOUND, message, at)
        message = f"stop DAG {dag_id} not found on the agent (lookup {streak} of {tries}): {text}"
        # The streak counts these answers only: a fault of another kind before them does not shorten it.
        counted = status.model_copy(update={"consecutive_errors": streak - 1})
        return decisions.fault(counted, Reason.DAG_NOT_FOUND, message, at, self.settings)
