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
from obstop.controller.status import Approval, ConditionType, Reason, RequestStatus
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
            found = await survey(client, spec, info)
        return precheck.evaluate(spec, found, now)


async def survey(client: ObshellClient, spec: ObStopRequestSpec, info: AgentInfo) -> Survey:
    """Ask the agent what the pre-check needs. A route this agent lacks is noted in `skipped` and its check left
    out: a stop is never refused because its pre-check cannot be made."""
    skipped: list[str] = []
    version = info.version or "?"

    async def optional(call: Awaitable[_T], route: str, what: str) -> _T | None:
        try:
            return await call
        except ObshellApiError as exc:
            if not exc.is_unknown_route:
                raise
            skipped.append(f"{route} is not served by obshell {version}: {what}")
            return None

    status = await client.status()
    ob_info = await optional(client.ob_info(), "GET /api/v1/ob/info", "targets and observers not checked")
    statuses = await optional(
        client.agents_status(), "GET /api/v1/agents/status", "the other agents' answers not checked"
    )
    maintenance = await optional(
        client.maintain_agents(), "GET /api/v1/task/dag/maintain/agents", "the agents' locks not checked"
    )
    main_dags: dict[str, DagDetail | None] = {}
    for main_id in precheck.holders_main_ids(maintenance or []):
        try:
            main_dags[main_id] = await client.get_dag(main_id, details=False)
        except ObshellApiError as exc:
            if exc.transient:
                raise
            main_dags[main_id] = None  # gone or unreadable: the holder is still reported, by its id
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
