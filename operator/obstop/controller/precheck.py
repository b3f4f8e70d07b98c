"""The pre-check, pure: what the agent said before a stop (a Survey) -> what obshell would refuse or what would
surprise a person (a Verdict), and the transitions it leads to (Validated, AwaitingApproval, approved).

No I/O here: prestop.py makes the calls, stop.py puts them together. Everything is read from the agent's own
answers (fact sheet §3.2, §3.5, §5). The full survey, made where a person reads it before anything is sent
(spec.dryRun, spec.approval Manual): the targets from its agent table (`GET /api/v1/ob/info` agent_info, which
answers with OB down too), the observers' state from the topology (read from OB: empty while OB is down), which
agents answer (`GET /api/v1/agents/status`), the agents' locks (`GET /api/v1/task/dag/maintain/agents`, as
obshell's CLI pre-checks) and, for a ZONE stop on obshell 4.4.1.0+, the agent's own per-zone stop check.
An automatic request asks for the locks only (Checks.LOCKS): obshell accepts a stop whose agents are locked and
fails its DAG later, but refuses a missing target, an unavailable observer and the 4.4.1.0+ zone checks at the
POST itself (agent/api/obcluster_handler.go isEmergencyMode, agent/executor/ob/stop.go CheckStopObParam).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from obstop.controller import answers, decisions
from obstop.controller.answers import parse_version
from obstop.controller.decisions import At, Decision, Event
from obstop.controller.resource import ApprovalMode, ObStopRequestSpec, Phase
from obstop.controller.status import (
    Approval,
    Checks,
    ConditionType,
    EventReason,
    LockHolder,
    Precheck,
    Reason,
    RequestStatus,
)
from obstop.obshell import (
    AgentInfo,
    AgentStatus,
    DagDetail,
    DagState,
    ObInfo,
    ObshellApiError,
    ScopeType,
    ids,
)
from obstop.obshell.address import split_host_port

OB_AVAILABLE = 3  # obState: connection available (§5)
STRICT_STOP: tuple[int, ...] = (4, 4, 1, 0)  # ZONE needs obState 3 even with force; the per-zone stop check
MAX_LISTED = 16  # lock holders, warnings: bounded in status
# The agent's per-zone check refuses these for kill modes too, which obshell's /ob/stop itself does not check:
# reported as warnings then, for a person (or the approver) to weigh.
_ZONE_WARNINGS = frozenset({"OB.Server.StoppedInMultiZone", "OB.Cluster.Tenant.Replica.Invalid"})


@dataclass(frozen=True)
class Survey:
    """What the agent said. None for an answer the agent cannot give (its obshell lacks the route): `skipped`
    then says which check that leaves out."""

    receiver: AgentInfo
    status: AgentStatus | None = None
    ob_info: ObInfo | None = None
    reachable: frozenset[str] | None = None  # agents that answer the receiving one (ip:port)
    maintenance: tuple[DagDetail, ...] | None = None  # the last maintenance DAG of every agent
    main_dags: Mapping[str, DagDetail | None] = field(default_factory=dict)  # main id -> its DAG, if readable
    zone_checks: Mapping[str, ObshellApiError | None] = field(default_factory=dict)  # zone -> refusal or None
    skipped: tuple[str, ...] = ()
    checks: Checks = Checks.FULL  # LOCKS: only `maintenance` and `main_dags` were asked for


@dataclass(frozen=True)
class Verdict:
    precheck: Precheck
    refusal: tuple[str, str] | None  # (reason, message): obshell would refuse, or the stop would fail
    summary: str  # what a person reads in the Validated condition

    @property
    def passed(self) -> bool:
        return self.refusal is None


def full_survey(spec: ObStopRequestSpec) -> bool:
    """Whether a person reads the pre-check before anything is sent: a dry run, or a request to approve."""
    return spec.dry_run or spec.approval is ApprovalMode.MANUAL


def version_numbers(version: str) -> tuple[int, ...]:
    return parse_version(version) or (0, 0, 0, 0)


def needs_zone_check(spec: ObStopRequestSpec, version: str) -> bool:
    return spec.scope.type is ScopeType.ZONE and version_numbers(version) >= STRICT_STOP


def needs_connection(spec: ObStopRequestSpec, version: str) -> bool:
    """obshell refuses unless the receiving agent's observer is connectable (§3.2 check 6)."""
    zone = spec.scope.type is ScopeType.ZONE and version_numbers(version) >= STRICT_STOP
    return not spec.force or zone


def holders_main_ids(maintenance: Sequence[DagDetail]) -> list[str]:
    """The main DAGs to look at: those of start/stop sub-DAGs still holding a lock."""
    found = (_main_id(dag) for dag in maintenance if dag.state is not DagState.SUCCEED)
    return list(dict.fromkeys(main for main in found if main))


def evaluate(spec: ObStopRequestSpec, survey: Survey, now: datetime) -> Verdict:
    info = survey.receiver
    receiver = answers.agent_address(info.ip, info.port)
    warnings: list[str] = []
    skipped = list(survey.skipped)
    refusal: tuple[str, str] | None = None
    holders = _holders(survey, spec) if survey.maintenance is not None else []
    cluster = _cluster_line(survey, receiver)

    def refuse(reason: str, message: str) -> None:
        nonlocal refusal
        if refusal is None:
            refusal = (reason, message)

    # 1. The targets, from the agent's own table (what obshell validates them against, §3.2 check 2).
    if survey.ob_info is not None:
        missing = _missing_targets(spec, survey.ob_info)
        if missing:
            refuse(Reason.TARGET_NOT_FOUND, missing)
    # 2. Every agent must answer: the stop makes a task on each of them, even for SERVER scope (§3.5).
    if survey.ob_info is not None and survey.reachable is not None:
        away = [a.address for a in survey.ob_info.agent_info if a.address not in survey.reachable]
        away = [a for a in away if a != receiver]
        if away:
            refuse(
                Reason.AGENTS_UNREACHABLE,
                f"agent(s) {', '.join(away[:MAX_LISTED])} do not answer {receiver}: obshell makes a task on "
                "every agent of the cluster, even for a ZONE or SERVER stop, so the stop would fail at 'Make sure "
                "all agents are ready'. Nothing was sent; create a new request once they answer",
            )
    # 3. The receiving agent's observer (§3.2 check 6): not running is final, booting is waited for.
    state = survey.status.ob_state if survey.status is not None else None
    if state is not None and state != OB_AVAILABLE and needs_connection(spec, info.version):
        mode = f"a {spec.mode} {spec.scope.type.value} stop"
        if state == 0:
            refuse(
                Reason.FORCE_STOP_REQUIRED,
                f"obshell would refuse {mode}: the observer of the receiving agent {receiver} is not running "
                "(obState 0), and only force stops without it"
                + (" (a ZONE stop needs it even with force from obshell 4.4.1.0)" if spec.force else "")
                + ". Nothing was sent; use force: true, or the address of an agent whose observer runs",
            )
        else:
            warnings.append(
                f"the observer of {receiver} has no usable connection yet (obState {state}): obshell refuses "
                f"{mode} until it has; the stop is retried until then"
            )
    # 4. Locks held by unfinished start/stop DAGs (§3.5): say which id forcePassDag needs.
    lock_refusal = _lock_refusal(holders, spec)
    if lock_refusal is not None:
        refuse(*lock_refusal)
    for holder in holders:
        if holder.force_passed:
            warnings.append(
                f"{holder.agent} is held by {holder.main_dag_name or 'DAG'} {holder.main_dag_id}, already in "
                "spec.forcePassDag: obshell passes it"
            )
    if survey.maintenance is not None:
        held = {h.main_dag_id for h in holders}
        for dag_id in spec.force_pass_dag:
            if dag_id not in held:
                warnings.append(f"forcePassDag {dag_id} holds no agent's lock now: not needed")
    # 5. The agent's own per-zone stop check (obshell 4.4.1.0+).
    for zone, error in survey.zone_checks.items():
        if error is None:
            continue
        text = f"the agent's zone stop check refused zone {zone}: {error.err_code or error.status}: {error.message}"
        if spec.mode != "immediate" and error.err_code in _ZONE_WARNINGS:
            warnings.append(text + " (obshell's stop does not check this with force or terminate)")
        else:
            refuse(error.reason, text + ". Nothing was sent")
    warnings += _target_notes(spec, survey)
    precheck = Precheck(
        checked_at=now,
        checks=survey.checks,
        receiver=receiver,
        obshell_version=info.version or None,
        cluster=cluster,
        digest=_digest(survey, holders),
        warnings=warnings[:MAX_LISTED],
        skipped=skipped[:MAX_LISTED],
        lock_holders=holders[:MAX_LISTED],
    )
    if survey.checks is Checks.LOCKS:
        head = f"{cluster}: only the agents' locks were checked"
        parts = [f"{head}, none in the way" if refusal is None else head]
    else:
        parts = [f"pre-check passed: {cluster}" if refusal is None else cluster]
    parts += [f"note: {w}" for w in warnings[:MAX_LISTED]]
    parts += [f"skipped: {s}" for s in skipped[:MAX_LISTED]]
    return Verdict(precheck, refusal, "; ".join(parts))


# ------------------------------------------------------------------------------------------------------
# Transitions


def checked(
    status: RequestStatus, spec: ObStopRequestSpec, verdict: Verdict, at: At, *, poll: float
) -> Decision | RequestStatus:
    """A fresh pre-check: Failed (refused), Validated (dry run), AwaitingApproval (Manual), or the status to
    go on from (the stop is recorded in the same step). An automatic request's lock check (Checks.LOCKS) sets
    the Validated condition only to refuse: passing it validates nothing else."""
    new = decisions.begin(status, at).status
    new.precheck = verdict.precheck
    if verdict.refusal is not None:
        reason, message = verdict.refusal
        new.set_condition(ConditionType.VALIDATED, False, reason, message, at.generation, at.now)
        return decisions.failed(new, reason, message, at)
    if verdict.precheck.checks is Checks.LOCKS and not full_survey(spec):
        return new
    new.set_condition(ConditionType.VALIDATED, True, Reason.VALIDATED, verdict.summary, at.generation, at.now)
    if spec.dry_run:
        new.completion_time = at.now
        message = f"dry run, nothing was stopped: {verdict.summary}"
        decisions.finish(new, Phase.VALIDATED, Reason.VALIDATED, message, at)
        return Decision(new, None, (Event("Normal", EventReason.VALIDATED, message),))
    if spec.approval is ApprovalMode.MANUAL:
        return awaiting(new, verdict.summary, at, poll, event=True)
    return new


def awaiting(status: RequestStatus, text: str, at: At, poll: float, *, event: bool) -> Decision:
    """Waiting for an ObStopApproval; `poll` seconds until the next look."""
    new = status.model_copy(deep=True)
    new.phase = Phase.AWAITING_APPROVAL
    new.clear_fault()
    message = f"waiting for an ObStopApproval with spec.requestName: {text}"
    new.reason, new.message = Reason.AWAITING_APPROVAL, message
    decisions.progressing(new, at, Reason.AWAITING_APPROVAL, message)
    events = (Event("Normal", EventReason.AWAITING_APPROVAL, message),) if event else ()
    return Decision(new, poll, events)


def approved(status: RequestStatus, approval: Approval) -> tuple[RequestStatus, Event]:
    new = status.model_copy(deep=True)
    superseded = new.approval.superseded if new.approval is not None else []
    new.approval = approval.model_copy(update={"superseded": list(superseded)})
    message = f"approved by {approval.approved_by} ({approval.name})"
    return new, Event("Normal", EventReason.APPROVED, message)


def superseded(status: RequestStatus, verdict: Verdict, uid: str, name: str, at: At, poll: float) -> Decision:
    """An approval came after the pre-check's view went stale, and the re-check sees another cluster: the
    approver approved what they saw, not this. Wait for a new approval of the new view."""
    new = status.model_copy(deep=True)
    new.precheck = verdict.precheck
    new.set_condition(ConditionType.VALIDATED, True, Reason.VALIDATED, verdict.summary, at.generation, at.now)
    earlier = new.approval.superseded if new.approval is not None else []
    new.approval = Approval(superseded=[*earlier, uid][-MAX_LISTED:])
    text = (
        f"the cluster changed since the pre-check that ObStopApproval {name} approved; approve again (a new "
        f"ObStopApproval) for the current view: {verdict.summary}"
    )
    return awaiting(new, text, at, poll, event=True)


def stale(status: RequestStatus, now: datetime, max_age_seconds: float) -> bool:
    precheck = status.precheck
    return precheck is None or now - precheck.checked_at > timedelta(seconds=max_age_seconds)


# ------------------------------------------------------------------------------------------------------
# Helpers


def _main_id(dag: DagDetail) -> str:
    value = (dag.additional_data or {}).get("main_dag_id")
    return value if isinstance(value, str) else ""


def _owner(generic_id: str) -> str:
    try:
        return ids.decode(generic_id).agent or ""
    except ValueError:
        return ""


def _holders(survey: Survey, spec: ObStopRequestSpec) -> list[LockHolder]:
    holders = []
    for dag in survey.maintenance or ():
        if dag.state is DagState.SUCCEED:
            continue
        main_id = _main_id(dag)
        main = survey.main_dags.get(main_id) if main_id else None
        holders.append(
            LockHolder(
                agent=_owner(dag.id) or "?",
                dag_id=dag.id,
                name=dag.name,
                state=dag.state.value,
                main_dag_id=main_id,
                main_dag_name=main.name if main is not None else "",
                main_dag_state=main.state.value if main is not None else "",
                owner=_owner(main_id) if main_id else "",
                force_passed=bool(main_id) and main_id in spec.force_pass_dag,
            )
        )
    return holders


def _lock_refusal(holders: list[LockHolder], spec: ObStopRequestSpec) -> tuple[str, str] | None:
    plain = [h for h in holders if not h.main_dag_id]
    if plain:
        h = plain[0]
        return (
            Reason.AGENT_UNDER_MAINTENANCE,
            f"agent {h.agent} is under maintenance by DAG {h.dag_id} '{h.name}' ({h.state}), which is not a start "
            "or stop task: forcePassDag cannot pass it. Nothing was sent; wait for it to end, or pass it by hand "
            "(POST /api/v1/task/dag/{id} PASS), then create a new request",
        )
    running = [
        h
        for h in holders
        if h.state != DagState.FAILED.value or h.main_dag_state not in ("", "FAILED", "SUCCEED")
    ]
    if running:
        h = running[0]
        return (
            Reason.CONCURRENT_OPERATION,
            f"another start or stop is under way: {h.main_dag_name or 'DAG'} {h.main_dag_id} "
            f"({h.main_dag_state or 'state unknown'}, on agent {h.owner or '?'}) holds the lock of {h.agent} with "
            f"its task {h.dag_id} ({h.state}); obshell cannot pass a running holder. Nothing was sent; wait for "
            "it to end (or cancel it), then create a new request",
        )
    needed = [h for h in holders if not h.force_passed]
    if not needed:
        return None
    main_ids = list(dict.fromkeys(h.main_dag_id for h in needed))
    lines = [
        f"{h.agent} by {h.main_dag_name or 'DAG'} {h.main_dag_id} ({h.main_dag_state or 'state unknown'}, on agent "
        f"{h.owner or '?'}; its task {h.dag_id} is {h.state})"
        for h in needed[:MAX_LISTED]
    ]
    wanted = json.dumps(sorted({*spec.force_pass_dag, *main_ids}))
    return (
        Reason.LOCKS_HELD,
        f"agents' locks are held by an unfinished start/stop: {'; '.join(lines)}. obshell would accept the stop "
        f"and fail it at 'Make sure all agents are ready'. Nothing was sent; create a new request with "
        f"forcePassDag: {wanted} so that obshell passes {'it' if len(main_ids) == 1 else 'them'}",
    )


def _missing_targets(spec: ObStopRequestSpec, info: ObInfo) -> str | None:
    if spec.scope.type is ScopeType.ZONE:
        zones = info.zones
        missing = [z for z in spec.scope.target if z not in zones]
        if missing:
            return (
                f"zone(s) {', '.join(missing)} not in the cluster (its zones: {', '.join(zones) or 'none'}); "
                "nothing was sent"
            )
    if spec.scope.type is ScopeType.SERVER:
        agents = [a.address for a in info.agent_info]
        missing = [t for t in spec.scope.target if _normal_server(t) not in agents]
        if missing:
            return (
                f"server(s) {', '.join(missing)} not agents of the cluster (SERVER targets are agent addresses "
                f"ip:port; its agents: {', '.join(agents[:MAX_LISTED]) or 'none'}); nothing was sent"
            )
    return None


def _normal_server(target: str) -> str:
    host, port = split_host_port(target, what="scope.target", default_port=2886)
    return answers.agent_address(host, port)


def _cluster_line(survey: Survey, receiver: str) -> str:
    info = survey.ob_info
    version = survey.receiver.version or "?"
    if info is None:
        return f"agent {receiver} (obshell {version})"
    cluster = info.obcluster_info
    name = f"cluster {cluster.name}" if cluster is not None and cluster.name else "the cluster"
    zones = info.zones
    topology = info.topology
    head = f"{name} via agent {receiver} (obshell {version}): {len(zones)} zone(s), {len(info.agent_info)} agent(s)"
    if not topology:
        state = survey.status.ob_state if survey.status is not None else None
        return head + (
            f"; the observers' state is unknown: OB does not answer the agent (obState {state})"
            if state is not None
            else "; the observers' state is unknown (OB does not answer the agent)"
        )
    counts: dict[str, int] = {}
    for servers in topology.values():
        for server in servers:
            counts[server.status or "?"] = counts.get(server.status or "?", 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{head}; observers: {states}"


def _target_notes(spec: ObStopRequestSpec, survey: Survey) -> list[str]:
    """Targets whose observers OB already reports not ACTIVE: the stop may do nothing there."""
    info = survey.ob_info
    if info is None or not info.topology:
        return []
    servers = [(zone, s) for zone, group in info.topology.items() for s in group]
    if spec.scope.type is ScopeType.ZONE:
        chosen = [(z, s) for z, s in servers if z in spec.scope.target]
    elif spec.scope.type is ScopeType.SERVER:
        wanted = {_normal_server(t) for t in spec.scope.target}
        chosen = [(z, s) for z, s in servers if s.agent_address in wanted]
    else:
        chosen = servers
    down = [f"{s.agent_address} ({z}) is {s.status}" for z, s in chosen if s.status and s.status != "ACTIVE"]
    return [f"already not ACTIVE: {', '.join(down[:MAX_LISTED])}"] if down else []


def _digest(survey: Survey, holders: list[LockHolder]) -> str:
    """Of what the verdict rests on: the agents and zones, the observers' states, the locks, who answers."""
    info = survey.ob_info
    view = {
        "agents": sorted((a.address, a.zone) for a in info.agent_info) if info is not None else None,
        "servers": sorted((s.agent_address, z, s.status) for z, g in info.topology.items() for s in g)
        if info is not None
        else None,
        "reachable": sorted(survey.reachable) if survey.reachable is not None else None,
        "obState": survey.status.ob_state if survey.status is not None else None,
        "locks": sorted((h.dag_id, h.state, h.main_dag_id, h.main_dag_state) for h in holders),
        "zoneChecks": sorted((z, e.err_code if e is not None else "") for z, e in survey.zone_checks.items()),
    }
    return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:16]
