"""The typed status of an ObStopRequest: what the controller believes about one request, as the API server holds it.

The shape is the CRD's `status` schema (deploy/crds/; tests/unit/test_status_model.py checks that the two agree).
The controller reads and writes the status only through this model; `from_wire`/`to_wire` are the one place where
it meets the API server's JSON. Condition types, the reasons the controller writes itself and event reasons are
enums with a line each saying when they appear (docs/troubleshooting.md is tested against them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from obstop.controller.resource import Phase


class Reason(StrEnum):
    """`status.reason` values the controller writes itself. obshell's errCodes (dotted, e.g.
    OB.Cluster.ForceStopRequired), `HTTP<status>` when obshell gave none, and the client's own reasons
    (AgentUnreachable, BadAgentResponse: obstop.obshell.errors) pass through as they are."""

    RUNNING = "Running"  # the DAG is followed; the message names the stage
    SUCCEEDED = "Succeeded"  # the stop DAG succeeded
    WAITING_FOR_SECRET = "WaitingForSecret"  # noqa: S105 - the Secret is missing or unreadable: retried
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # noqa: S105 - the Secret's owner did not release it to agents: Failed
    AGENT_NOT_ALLOWED = "AgentNotAllowed"  # the address is not among the Secret's allowed agents: Failed
    INVALID_SPEC = "InvalidSpec"  # a spec that slipped past admission: Failed
    EXPIRED = "Expired"  # first seen after spec.notAfter: Failed, nothing sent
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # not finished within spec.activeDeadlineSeconds: Failed
    DAG_NOT_FOUND = "DagNotFound"  # "record not found" for the followed DAG: retried, then Failed
    DAG_LOOKUP_FAILED = "DagLookupFailed"  # another 404 (a busy sqlite): retried
    AGENT_CHANGED = "AgentChanged"  # the address reaches another agent than the recorded receiver: retried
    OUTCOME_UNKNOWN = (
        "OutcomeUnknown"  # a lost answer on an agent without DAG history, resend refused: Failed
    )
    UNSUPPORTED_OBSHELL_VERSION = "UnsupportedObshellVersion"  # auth v1 only (obshell 4.2.2): Failed
    NOT_A_CLUSTER_AGENT = "Agent.Identify.NotSupportOperation"  # obshell's own code, also for its old form
    FORCE_STOP_REQUIRED = "OB.Cluster.ForceStopRequired"  # obshell's own code, also for its old form
    CANCELLED = "Cancelled"  # the DAG was cancelled on the agent by someone else: Failed
    CANCELLED_ON_REQUEST = "CancelledOnRequest"  # the cancel annotation: phase Cancelled
    DEADLINE_CANCELLED = (
        "DeadlineCancelled"  # activeDeadlineSeconds passed with deadlineAction Cancel: Cancelled
    )
    CANCEL_NOT_ALLOWED = "Task.Dag.Operator.CancelNotAllowed"  # obshell's own code: the cancel is retried
    DAG_FAILED = "DagFailed"  # the DAG failed and its log line carries no errCode: Failed
    # The pre-check (before anything is sent; obshell's own errCodes of its zone stop check pass through too)
    VALIDATED = (
        "Validated"  # the pre-check passed (the Validated condition); spec.dryRun: the end, nothing sent
    )
    AWAITING_APPROVAL = "AwaitingApproval"  # spec.approval Manual: pre-checked, waiting for an ObStopApproval
    TARGET_NOT_FOUND = (
        "TargetNotFound"  # a zone or server of scope.target is not in the agent's cluster: Failed
    )
    AGENTS_UNREACHABLE = (
        "AgentsUnreachable"  # an agent of the cluster does not answer the receiving one: Failed
    )
    LOCKS_HELD = "LocksHeld"  # an earlier start/stop DAG holds agents' locks; forcePassDag names it: Failed
    AGENT_UNDER_MAINTENANCE = "AgentUnderMaintenance"  # a lock no forcePassDag can pass (an upgrade): Failed
    CONCURRENT_OPERATION = "ConcurrentOperation"  # another start/stop DAG is running on the agents: Failed
    APPROVALS_UNAVAILABLE = "ApprovalsUnavailable"  # ObStopApprovals cannot be listed now: retried


# What a reason does to a request: it ends it Failed, or the step is retried with back-off (the phase kept).
# DagNotFound is retried a few times, then fails.
FAILS = frozenset(
    {
        Reason.SECRET_NOT_ALLOWED,
        Reason.AGENT_NOT_ALLOWED,
        Reason.INVALID_SPEC,
        Reason.EXPIRED,
        Reason.DEADLINE_EXCEEDED,
        Reason.DAG_NOT_FOUND,
        Reason.OUTCOME_UNKNOWN,
        Reason.UNSUPPORTED_OBSHELL_VERSION,
        Reason.NOT_A_CLUSTER_AGENT,
        Reason.CANCELLED,
        Reason.DAG_FAILED,
        Reason.TARGET_NOT_FOUND,
        Reason.AGENTS_UNREACHABLE,
        Reason.LOCKS_HELD,
        Reason.AGENT_UNDER_MAINTENANCE,
        Reason.CONCURRENT_OPERATION,
    }
)
RETRIED = frozenset(
    {
        Reason.WAITING_FOR_SECRET,
        Reason.DAG_LOOKUP_FAILED,
        Reason.AGENT_CHANGED,
        Reason.CANCEL_NOT_ALLOWED,
        Reason.APPROVALS_UNAVAILABLE,
    }
)
CANCELS = frozenset({Reason.CANCELLED_ON_REQUEST, Reason.DEADLINE_CANCELLED})  # phase Cancelled
# None of these: Running, Succeeded, Validated and AwaitingApproval; ForceStopRequired is retried while the
# observer boots, else fails.


class ConditionType(StrEnum):
    """The conditions of a request, as kstatus and Argo CD read them."""

    READY = "Ready"  # True once the stop succeeded
    RECONCILING = "Reconciling"  # True while the controller still acts on the request
    STALLED = "Stalled"  # True when it ended without success
    COMPLETE = "Complete"  # True once succeeded (kubectl wait --for=condition=Complete)
    FAILED = "Failed"  # True once failed (kubectl wait --for=condition=Failed)
    VALIDATED = (
        "Validated"  # the pre-check's result: True (passed, with its notes) or False (what it refused)
    )


class ProgressReason(StrEnum):
    """Reasons of the progress conditions while `status.reason` is not (yet) set."""

    PENDING = "Pending"  # waiting to submit the stop
    SUBMITTED = "Submitted"  # accepted; the first view of the DAG replaces it at once


class EventReason(StrEnum):
    """Reasons of the Kubernetes events the controller posts."""

    SUBMITTED = "Submitted"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RETRYING = "Retrying"
    AGENT_CHANGED = "AgentChanged"
    CANCELLING = "Cancelling"
    CANCELLED = "Cancelled"
    VALIDATED = "Validated"
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"


def rfc3339(moment: datetime) -> str:
    """Our own times, as the status and kubectl show them: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time, ours or obshell's (Go writes up to nanoseconds; Python 3.11 reads them, keeping
    microseconds). None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# A time of our own clock on the wire: "2026-12-01T10:00:00Z".
OurTime = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]
# The agent's clock, as it reported it (its own offset kept, to the second).
AgentTime = Annotated[
    datetime, PlainSerializer(lambda t: t.replace(microsecond=0).isoformat(), return_type=str)
]


class _Wire(BaseModel):
    # Unknown keys are ignored (the API server prunes them anyway); validate_assignment keeps edits typed.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", validate_assignment=True)


class Condition(_Wire):
    type: str  # a ConditionType for ours; another tool's conditions are kept as they are
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    observed_generation: int | None = Field(None, alias="observedGeneration")
    last_transition_time: OurTime | None = Field(None, alias="lastTransitionTime")


class Submission(_Wire):
    """Recorded before the first POST: a step that finds it knows a stop may have landed."""

    agent: str  # base URL the stop is sent to
    requested_at: OurTime = Field(alias="requestedAt")
    not_before: AgentTime = Field(alias="notBefore")  # the agent's clock just before the first POST
    receiver: str | None = None  # ip:port of the agent that answered there
    obshell_version: str | None = Field(None, alias="obshellVersion")


class Cancellation(_Wire):
    """A cancel, once asked for (the annotation, or the deadline with deadlineAction Cancel)."""

    requested_at: OurTime = Field(alias="requestedAt")
    by: Literal["Annotation", "Deadline"]
    sent_at: OurTime | None = Field(None, alias="sentAt")  # obshell's CANCEL sent for the stop DAG


class AgentProgress(_Wire):
    """One agent the stop DAG works on, as the main DAG last reported it (no extra call to obshell)."""

    agent: str
    sub_dag: str | None = Field(None, alias="subDag")
    node: str | None = None
    state: str | None = None
    last_log: str | None = Field(None, alias="lastLog")
    observer_stopped: bool | None = Field(None, alias="observerStopped")


class DagStatus(_Wire):
    """The main stop DAG as obshell last reported it (its times are obshell's strings)."""

    id: str
    dag_id: int = Field(0, alias="dagId")
    name: str = ""
    stage: int = 0
    max_stage: int = Field(0, alias="maxStage")
    state: str = ""
    operator: str = ""
    start_time: str = Field("", alias="startTime")
    end_time: str = Field("", alias="endTime")
    current_node: str = Field("", alias="currentNode")
    failed_node: str = Field("", alias="failedNode")


class LockHolder(_Wire):
    """An unfinished maintenance DAG holding an agent's lock, as the pre-check found it."""

    agent: str  # ip:port of the agent whose lock is held
    dag_id: str = Field(alias="dagId")  # the holding DAG (a start/stop sub-DAG, or e.g. an upgrade)
    name: str = ""
    state: str = ""
    main_dag_id: str = Field("", alias="mainDagId")  # what forcePassDag must name; empty: cannot be passed
    main_dag_name: str = Field("", alias="mainDagName")
    main_dag_state: str = Field("", alias="mainDagState")
    owner: str = ""  # ip:port of the agent the main DAG lives on
    force_passed: bool = Field(False, alias="forcePassed")  # main_dag_id is in spec.forcePassDag


class Checks(StrEnum):
    """How much the pre-check asked the agent."""

    FULL = "Full"  # everything (spec.dryRun, spec.approval Manual): a person reads it before anything is sent
    LOCKS = "Locks"  # an automatic request: only the agents' locks; obshell refuses the rest at the POST


class Precheck(_Wire):
    """What the agent said before anything was sent (the Validated condition carries the verdict of a full one;
    an automatic request's lock check sets it only to refuse)."""

    checked_at: OurTime = Field(alias="checkedAt")
    checks: Checks = Checks.FULL  # absent from statuses written before the light check existed: full ones
    receiver: str | None = None  # ip:port of the agent asked
    obshell_version: str | None = Field(None, alias="obshellVersion")
    cluster: str = ""  # the cluster's state, one line
    digest: str = ""  # of the view the verdict rests on: a re-check that differs asks for a new approval
    warnings: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # checks this agent cannot answer (older obshell)
    lock_holders: list[LockHolder] = Field(default_factory=list, alias="lockHolders")


class Approval(_Wire):
    """Who approved a spec.approval Manual request, and when (from the ObStopApproval)."""

    name: str | None = None  # the ObStopApproval
    uid: str | None = None
    approved_by: str | None = Field(None, alias="approvedBy")
    approved_at: OurTime | None = Field(None, alias="approvedAt")
    # ObStopApprovals given for an earlier pre-check whose view changed before they were acted on
    superseded: list[str] = Field(default_factory=list)


class RequestStatus(_Wire):
    phase: Phase | None = None
    observed_generation: int | None = Field(None, alias="observedGeneration")
    start_time: OurTime | None = Field(None, alias="startTime")
    completion_time: OurTime | None = Field(None, alias="completionTime")
    reason: str | None = None
    message: str | None = None
    progress: str | None = None
    attempts: int | None = None
    consecutive_errors: int | None = Field(None, alias="consecutiveErrors")
    last_error: str | None = Field(None, alias="lastError")
    next_check_time: OurTime | None = Field(None, alias="nextCheckTime")
    precheck: Precheck | None = None
    approval: Approval | None = None
    submission: Submission | None = None
    cancellation: Cancellation | None = None
    dag: DagStatus | None = None
    agents: list[AgentProgress] | None = None
    conditions: list[Condition] = Field(default_factory=list)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any] | None) -> RequestStatus:
        return cls.model_validate(dict(raw or {}))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if not self.conditions:
            wire.pop("conditions", None)
        return wire

    @property
    def terminal(self) -> bool:
        return self.phase is not None and self.phase.terminal

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def set_condition(
        self, kind: ConditionType, value: bool, reason: str, message: str, generation: int, now: datetime
    ) -> None:
        """Upsert a condition; lastTransitionTime moves only when its status changes."""
        text: Literal["True", "False"] = "True" if value else "False"
        reason, message = condition_reason(reason), message[:32768]
        existing = self.condition(kind)
        if existing is None:
            self.conditions.append(
                Condition(
                    type=kind,
                    status=text,
                    reason=reason,
                    message=message,
                    observed_generation=generation,
                    last_transition_time=now,
                )
            )
            return
        if existing.status != text:
            existing.last_transition_time = now
        existing.status, existing.reason, existing.message = text, reason, message
        existing.observed_generation = generation

    def clear_fault(self) -> None:
        self.last_error = self.next_check_time = self.consecutive_errors = None


def condition_reason(text: str) -> str:
    """Condition reasons are CamelCase identifiers; obshell's dotted errCodes are squashed into one."""
    squashed = re.sub(r"[^A-Za-z0-9_]", "", text)
    return squashed if squashed[:1].isalpha() else f"E{squashed}" if squashed else "Unknown"
