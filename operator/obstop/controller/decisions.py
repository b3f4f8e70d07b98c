"""Pure decisions of the controller: (status, what obshell said, when) -> the next status, events, next step.

No I/O here. The stop step (stop.py) does the calls and feeds their outcome in; everything a person reads in
`kubectl get/describe` is decided by these functions, so they are tested directly (tests/unit/test_decisions.py).
Every transition copies the status it is given and returns a new one, whole, in a frozen Decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from obstop.controller import answers
from obstop.controller.resource import Phase
from obstop.controller.settings import Settings
from obstop.controller.status import (
    AgentProgress,
    Cancellation,
    ConditionType,
    DagStatus,
    EventReason,
    ProgressReason,
    Reason,
    RequestStatus,
    Submission,
)
from obstop.obshell import DagDetail, ObshellError


class Step(Enum):
    """What the stop step must do next."""

    RECORD = "record"  # write status.submission before any POST, so a crash after it is detectable
    SUBMIT = "submit"  # look for our DAG on the agent if a stop may have landed, else POST the stop
    POLL = "poll"  # GET the main DAG
    DONE = "done"  # terminal: no more calls to obshell


@dataclass(frozen=True)
class At:
    """When a decision is made: the request's generation and our clock."""

    generation: int
    now: datetime


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: EventReason
    message: str


@dataclass(frozen=True)
class Decision:
    status: RequestStatus
    next_step_in: float | None  # seconds until the next step; None: no step is due (terminal, or unchanged)
    events: tuple[Event, ...] = ()

    @property
    def done(self) -> bool:
        return self.next_step_in is None

    def with_event(self, event: Event) -> Decision:
        return Decision(self.status, self.next_step_in, (*self.events, event))


# ------------------------------------------------------------------------------------------------------
# Where are we?


def next_step(status: RequestStatus) -> Step:
    if status.terminal:
        return Step.DONE
    if status.dag is not None and status.dag.id:
        return Step.POLL
    if status.submission is not None:
        return Step.SUBMIT
    return Step.RECORD


def deadline_exceeded(status: RequestStatus, deadline_seconds: int | None, now: datetime) -> bool:
    if not (deadline_seconds and status.start_time):
        return False
    try:
        return now - status.start_time > timedelta(seconds=deadline_seconds)
    except OverflowError:  # beyond what a datetime can hold: never reached (the CRD bounds it to a year)
        return False


# ------------------------------------------------------------------------------------------------------
# Transitions


def acknowledged(status: RequestStatus, generation: int) -> Decision:
    """A spec update after the request was handled. The spec is immutable but for the order of its set lists
    (scope.target, forcePassDag: kube-apiserver compares `x-kubernetes-list-type: set` lists without regard to
    order, so `self == oldSelf` lets a reorder through and bumps the generation). A reorder names the same stop:
    nothing is done again; the status and its conditions now describe this generation, so kstatus and Argo CD
    stop showing the request as progressing."""
    new = status.model_copy(deep=True)
    if new.phase is None and not new.conditions:  # never handled: nothing describes any generation yet
        return Decision(new, None)
    new.observed_generation = generation
    for cond in new.conditions:
        cond.observed_generation = generation
    return Decision(new, None)


def begin(status: RequestStatus, at: At) -> Decision:
    """First sight of a request: Pending, with its start time; its first step follows at once."""
    return Decision(_begun(status, at), 0)


def _begun(status: RequestStatus, at: At) -> RequestStatus:
    """A copy of the status; on first sight of the request, Pending with its start time."""
    new = status.model_copy(deep=True)
    if new.phase is None:
        if new.start_time is None:
            new.start_time = at.now
        new.phase = Phase.PENDING
        _progressing(new, at, ProgressReason.PENDING, "waiting to submit the stop to obshell")
    return new


def record_submission(status: RequestStatus, submission: Submission, at: At) -> Decision:
    """Persist that a stop is about to be sent. Written before the POST, never after it."""
    new = _begun(status, at)
    new.clear_fault()
    new.submission = submission
    return Decision(new, 0)


def submitted(status: RequestStatus, dag: DagDetail, at: At, *, adopted: bool, next_poll: float) -> Decision:
    """The agent accepted the stop (or we found the DAG of an earlier, unanswered POST)."""
    how = "found on the agent after an unanswered submission" if adopted else "accepted by the agent"
    message = f"stop DAG {dag.id} {how}"
    new = _begun(status, at)
    new.phase = Phase.SUBMITTED
    _progressing(new, at, ProgressReason.SUBMITTED, message)
    decision = observed(new, dag, at, next_poll=next_poll)
    return Decision(
        decision.status,
        decision.next_step_in,
        (Event("Normal", EventReason.SUBMITTED, message), *decision.events),
    )


def observed(status: RequestStatus, dag: DagDetail, at: At, *, next_poll: float) -> Decision:
    """A fresh view of the main DAG; `next_poll` is when to look again if it is not finished (pacing.py)."""
    new = _begun(status, at)
    new.clear_fault()
    _write_dag(new, dag)
    new.agents = answers.agent_rows(dag) or new.agents
    if dag.finished:
        new.completion_time = at.now
        if dag.succeeded:
            message = f"stop DAG {dag.id} succeeded ({dag.max_stage}/{dag.max_stage} stages)"
            _finish(new, Phase.SUCCEEDED, Reason.SUCCEEDED, message, at)
            return Decision(new, None, (Event("Normal", EventReason.SUCCEEDED, message),))
        reason, message = answers.dag_failure(dag)
        _finish(new, Phase.FAILED, reason, message, at)
        return Decision(new, None, (Event("Warning", EventReason.FAILED, message),))
    if dag.state.value == "RUNNING" or dag.stage > 1:
        new.phase = Phase.RUNNING
    node = new.dag.current_node if new.dag is not None else ""
    message = f"stage {dag.stage}/{dag.max_stage}" + (f": {node}" if node else "")
    new.reason, new.message = Reason.RUNNING, message
    _progressing(new, at, Reason.RUNNING, message)
    # No event per stage: the status shows it (STAGE in kubectl get, the Ready condition), and each event is one
    # more API write per stage and request (docs/benchmark.md, part 3).
    return Decision(new, next_poll)


def fault(status: RequestStatus, reason: str, text: str, at: At, settings: Settings) -> Decision:
    """A fault that may go away (agent unreachable, 5xx, Secret missing): keep the phase, retry with back-off.
    `text` says what went wrong; the message adds when the next try is."""
    new = _begun(status, at)
    new.attempts = (new.attempts or 0) + 1
    # The back-off grows with the faults in a row, and starts over after any call that worked.
    streak = (new.consecutive_errors or 0) + 1
    delay = backoff(streak, settings)
    new.consecutive_errors = streak
    new.last_error = text
    new.next_check_time = at.now + timedelta(seconds=delay)
    new.reason, new.message = reason, f"retrying in {delay:.0f}s (attempt {streak}): {text}"
    _progressing(new, at, reason, new.message)
    notify = streak in (1, 5) or streak % 20 == 0
    events = (Event("Warning", EventReason.RETRYING, new.message),) if notify else ()
    return Decision(new, delay, events)


def obshell_fault(status: RequestStatus, error: ObshellError, at: At, settings: Settings) -> Decision:
    """A transient obshell error, under its own reason."""
    return fault(status, error.reason, answers.describe_error(error), at, settings)


def failed(status: RequestStatus, reason: str, message: str, at: At) -> Decision:
    """A fault that retrying cannot fix: the request is Failed, and obshell is not called again."""
    new = status.model_copy(deep=True)
    if new.start_time is None:
        new.start_time = at.now
    new.completion_time = at.now
    _finish(new, Phase.FAILED, reason, message, at)
    return Decision(new, None, (Event("Warning", EventReason.FAILED, message),))


def cancel_requested(status: RequestStatus, by: Literal["Annotation", "Deadline"], at: At) -> RequestStatus:
    """The cancel is recorded once; later steps carry it on."""
    new = _begun(status, at)
    if new.cancellation is None:
        new.cancellation = Cancellation(requested_at=at.now, by=by)
    return new


def cancel_sent(status: RequestStatus, dag: DagDetail, at: At, *, next_poll: float) -> Decision:
    """obshell accepted the CANCEL of the stop DAG: follow it until it stops."""
    new = _begun(status, at)
    assert new.cancellation is not None
    new.cancellation.sent_at = at.now
    _write_dag(new, dag)
    message = f"cancelling stop DAG {dag.id} at stage {dag.stage}/{dag.max_stage}: waiting for it to stop"
    new.reason, new.message = Reason.RUNNING, message
    _progressing(new, at, Reason.RUNNING, message)
    return Decision(new, next_poll, (Event("Normal", EventReason.CANCELLING, message),))


def cancelled(
    status: RequestStatus, reason: Reason, message: str, at: At, *, agents: list[AgentProgress] | None = None
) -> Decision:
    """The request ends Cancelled: on request (not a failure) or at its deadline (stalled)."""
    new = status.model_copy(deep=True)
    if new.start_time is None:
        new.start_time = at.now
    new.completion_time = at.now
    if agents is not None:
        new.agents = agents
    _finish(new, Phase.CANCELLED, reason, message, at)
    return Decision(new, None, (Event("Warning", EventReason.CANCELLED, message),))


def backoff(attempts: int, settings: Settings) -> float:
    """Exponential back-off: initial, twice that, four times, ... capped."""
    return float(min(settings.retry_max_seconds, settings.retry_initial_seconds * 2 ** max(0, attempts - 1)))


# ------------------------------------------------------------------------------------------------------
# Helpers


def _write_dag(status: RequestStatus, dag: DagDetail) -> None:
    node = dag.current_node
    failed_node = dag.failed_node
    previous = status.dag.current_node if status.dag is not None else ""
    status.dag = DagStatus(
        id=dag.id,
        dag_id=dag.dag_id,
        name=dag.name,
        stage=dag.stage,
        max_stage=dag.max_stage,
        state=dag.state.value,
        operator=dag.operator.value,
        start_time=dag.start_time,
        end_time=dag.end_time,
        current_node=node.name if node else previous,
        failed_node=failed_node.name if failed_node else "",
    )
    status.progress = f"{dag.stage}/{dag.max_stage}"


def _finish(status: RequestStatus, phase: Phase, reason: str, message: str, at: At) -> None:
    """A terminal phase and its conditions. Cancelled is neither complete nor failed; it is stalled only when the
    deadline, not a person, cancelled it."""
    status.phase = phase
    status.reason, status.message = reason, message
    status.observed_generation = at.generation
    status.clear_fault()
    ok = phase in (Phase.SUCCEEDED, Phase.VALIDATED)
    failed = phase is Phase.FAILED
    stalled = failed or reason == Reason.DEADLINE_CANCELLED
    for kind, value in (
        (ConditionType.READY, ok),
        (ConditionType.RECONCILING, False),
        (ConditionType.STALLED, stalled),
        (ConditionType.COMPLETE, ok),
        (ConditionType.FAILED, failed),
    ):
        status.set_condition(kind, value, reason, message, at.generation, at.now)


def _progressing(status: RequestStatus, at: At, reason: str, message: str) -> None:
    status.observed_generation = at.generation
    status.set_condition(ConditionType.READY, False, reason, message, at.generation, at.now)
    status.set_condition(ConditionType.RECONCILING, True, reason, message, at.generation, at.now)


# For the pre-check's transitions (precheck.py): the same condition bookkeeping.
finish = _finish
progressing = _progressing
