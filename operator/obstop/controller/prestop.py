"""Before the stop: the pre-check's calls to the agent, and the approval gate (the pure parts: precheck.py,
approvals.choose). Called by stop.py's record step, after the Secret was released to this agent (agent_policy),
so the pre-check reaches only what every other call may reach."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from obstop.controller import answers, decisions, precheck
from obstop.controller.approvals import ApprovalObject, ApprovalReader, ApprovalsUnavailable, choose
from obstop.controller.decisions import At, Decision, Event
from obstop.controller.metrics import Metrics
from obstop.controller.precheck import Survey, Verdict
from obstop.controller.resource import ObStopRequestSpec
from obstop.controller.settings import Settings
from obstop.controller.status import Approval, Checks, ConditionType, Reason, RequestStatus
from obstop.obshell import AgentInfo, DagDetail, ObshellApiError, ObshellClient, ObshellError, ScopeType

_T = TypeVar("_T")


@dataclass(frozen=True)
class Passed:
    """The gate is open: record the submission from `status`, and post `events`."""

    status: RequestStatus
    events: tuple[Event, ...] = ()


class PreStop:
    def __init__(self, settings: Settings, metrics: Metrics, approvals: ApprovalReader | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.approvals = approvals

    async def wait(
        self, namespace: str, name: str, uid: str, created: datetime | None, status: RequestStatus, at: At
    ) -> Decision | ApprovalObject:
        """The approval of a request in AwaitingApproval, or the Decision to go on waiting."""
        poll = self.settings.approval_poll_seconds
        try:
            found = await self.approvals.list(namespace) if self.approvals is not None else []
        except ApprovalsUnavailable as exc:
            return decisions.fault(status, Reason.APPROVALS_UNAVAILABLE, str(exc), at, self.settings)
        spent = status.approval.superseded if status.approval is not None else []
        approval = choose(
            found, request_name=name, request_uid=uid, request_created=created, superseded=spent
        )
        if approval is not None:
            return approval
        if status.reason == Reason.AWAITING_APPROVAL:
            return Decision(status, poll)
        validated = status.condition(ConditionType.VALIDATED)  # back from a fault: say what waits again
        return precheck.awaiting(status, validated.message if validated else "", at, poll, event=False)

    async def check(
        self,
        status: RequestStatus,
        spec: ObStopRequestSpec,
        client: ObshellClient,
        info: AgentInfo,
        at: At,
        approval: ApprovalObject | None,
    ) -> Decision | Passed:
        try:
            return await self._check(status, spec, client, info, at, approval)
        except ObshellError as exc:
            if exc.transient:
                return decisions.obshell_fault(status, exc, at, self.settings)
            reason, message = answers.permanent_error(exc)
            return decisions.failed(status, reason, f"pre-check: {message}", at)

    async def _check(
        self,
        status: RequestStatus,
        spec: ObStopRequestSpec,
        client: ObshellClient,
        info: AgentInfo,
        at: At,
        approval: ApprovalObject | None,
    ) -> Decision | Passed:
        poll = self.settings.approval_poll_seconds
        if approval is None:
            verdict = await self.verdict(spec, client, info, at.now)
            result = precheck.checked(status, spec, verdict, at, poll=poll)
            return result if isinstance(result, Decision) else Passed(result)
        given = Approval(
            name=approval.name,
            uid=approval.uid,
            approved_by=approval.approved_by,
            approved_at=approval.created or at.now,
        )
        if precheck.stale(status, at.now, self.settings.precheck_max_age_seconds):
            # The approver saw an older view: look again before anything is sent.
            verdict = await self.verdict(spec, client, info, at.now)
            before = status.precheck.digest if status.precheck is not None else ""
            if verdict.refusal is not None:
                result = precheck.checked(status, spec, verdict, at, poll=poll)
                assert isinstance(result, Decision)  # a refusal always decides
                return result
            if verdict.precheck.digest != before:
                return precheck.superseded(status, verdict, approval.uid, approval.name, at, poll)
            status = status.model_copy(deep=True)
            status.precheck = verdict.precheck
            status.set_condition(
                ConditionType.VALIDATED, True, Reason.VALIDATED, verdict.summary, at.generation, at.now
            )
        new, event = precheck.approved(status, given)
        return Passed(new, (event,))

    async def verdict(
        self, spec: ObStopRequestSpec, client: ObshellClient, info: AgentInfo, now: datetime
    ) -> Verdict:
        with self.metrics.call("precheck"):
            if precheck.full_survey(spec):
                found = await survey(client, spec, info)
            else:
                found = await locks_survey(client, info)
        return precheck.evaluate(spec, found, now)


class _Asking:
    """The calls of one pre-check: a route this agent lacks is noted in `skipped` and its check left out, so a
    stop is never refused because its pre-check cannot be made."""

    def __init__(self, client: ObshellClient, info: AgentInfo) -> None:
        self.client = client
        self.version = info.version or "?"
        self.skipped: list[str] = []

    async def optional(self, call: Awaitable[_T], route: str, what: str) -> _T | None:
        try:
            return await call
        except ObshellApiError as exc:
            if not exc.is_unknown_route:
                raise
            self.skipped.append(f"{route} is not served by obshell {self.version}: {what}")
            return None

    async def locks(self) -> tuple[list[DagDetail] | None, dict[str, DagDetail | None]]:
        """Each agent's last maintenance DAG, and the main DAGs of the start/stop sub-DAGs still holding a lock
        (to name the id forcePassDag needs). An agent that does not answer the receiving one is left out, not an
        error (agent/executor/task/dag.go GetAllAgentLastMaintenanceDag)."""
        maintenance = await self.optional(
            self.client.maintain_agents(),
            "GET /api/v1/task/dag/maintain/agents",
            "the agents' locks not checked",
        )
        main_dags: dict[str, DagDetail | None] = {}
        for main_id in precheck.holders_main_ids(maintenance or []):
            try:
                main_dags[main_id] = await self.client.get_dag(main_id, details=False)
            except ObshellApiError as exc:
                if exc.transient:
                    raise
                main_dags[main_id] = None  # gone or unreadable: the holder is still reported, by its id
        return maintenance, main_dags


async def locks_survey(client: ObshellClient, info: AgentInfo) -> Survey:
    """An automatic request's pre-check: only the locks, which obshell does not refuse at the POST (it accepts
    the stop and fails its DAG at 'Make sure all agents are ready', fact sheet §3.5). Missing targets, an
    unavailable observer and the 4.4.1.0+ zone checks it refuses at the POST itself, before any DAG
    (agent/executor/ob/stop.go CheckStopObParam): stop.py reports those refusals."""
    asking = _Asking(client, info)
    maintenance, main_dags = await asking.locks()
    return Survey(
        receiver=info,
        maintenance=tuple(maintenance) if maintenance is not None else None,
        main_dags=main_dags,
        skipped=tuple(asking.skipped),
        checks=Checks.LOCKS,
    )


async def survey(client: ObshellClient, spec: ObStopRequestSpec, info: AgentInfo) -> Survey:
    """Everything the pre-check can ask, for a person to read before anything is sent."""
    asking = _Asking(client, info)
    optional, skipped, version = asking.optional, asking.skipped, asking.version
    status = await client.status()
    ob_info = await optional(client.ob_info(), "GET /api/v1/ob/info", "targets and observers not checked")
    statuses = await optional(
        client.agents_status(), "GET /api/v1/agents/status", "the other agents' answers not checked"
    )
    maintenance, main_dags = await asking.locks()
    zone_checks: dict[str, ObshellApiError | None] = {}
    if spec.scope.type is ScopeType.ZONE:
        if not precheck.needs_zone_check(spec, info.version):
            skipped.append(
                f"the agent's own zone stop check needs obshell 4.4.1.0 (this agent runs {version})"
            )
        elif status.ob_state == precheck.OB_AVAILABLE:
            known = ob_info.zones if ob_info is not None else list(spec.scope.target)
            for zone in (z for z in spec.scope.target if z in known):
                try:
                    await client.zone_stop_check(
                        zone, freeze_server=spec.terminate, force_pass_dag=list(spec.force_pass_dag)
                    )
                    zone_checks[zone] = None
                except ObshellApiError as exc:
                    if exc.is_unknown_route:
                        skipped.append(
                            f"POST /api/v1/ob/zone/{{zone}}/stop/check is not served by obshell {version}"
                        )
                        break
                    if exc.transient:
                        raise
                    zone_checks[zone] = exc
    return Survey(
        receiver=info,
        status=status,
        ob_info=ob_info,
        reachable=frozenset(statuses) if statuses is not None else None,
        maintenance=tuple(maintenance) if maintenance is not None else None,
        main_dags=main_dags,
        zone_checks=zone_checks,
        skipped=tuple(skipped),
    )
