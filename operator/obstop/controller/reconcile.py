"""Pure decisions of the controller: (spec, status, what obshell said, now) -> (next status, when to look again).

No I/O here. The handler does the calls and feeds their outcome in; everything a person reads in
`kubectl get/describe` is decided by these functions, so they are tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from obstop.controller.resource import Phase
from obstop.controller.settings import Settings
from obstop.obshell import DagDetail, ObshellApiError, ObshellError, ObshellTransportError
from obstop.obshell.client import DEFAULT_LIFETIME
from obstop.obshell.errors import FORCE_STOP_REQUIRED

Status = dict[str, Any]

# How long a signed obshell request stays valid (the client's header lifetime, as the official SDKs use).
SIGNED_REQUEST_LIFETIME = DEFAULT_LIFETIME

# Names of the DAGs that obshell creates for a stop (fact sheet §3.4).
STOP_DAG_NAME = "Stop OB"

# The main stop DAG's nodes, in order (fact sheet §3.4, obshell executor/ob/stop.go buildStopTemplate). The
# per-zone stop API of 4.4.1+, the CLI and the dashboard make DAGs of the same name: only the nodes and their
# order tell which stop a "Stop OB" DAG is (fact sheet §5).
_INFORM = "Inform all agents to prepare to stop observer"
_READY = "Make sure all agents are ready"
_FREEZE = "Minor freeze before stop server"
_ADVANCE = "Advance agents to execute the task"
_WAIT = "Wait for all agents to execute tasks successfully"
_STOP_SQL = "Execute stop sql"
_END = "Inform all agents to end the task"

# The oldest obshell the client can talk to: auth v2 came with 4.2.3.0; 4.2.2 speaks only v1 (fact sheet §7).
MIN_OBSHELL_VERSION = (4, 2, 3, 0)
CLUSTER_AGENT = "CLUSTER AGENT"
# How many "record not found" answers in a row make a DAG gone (any other lookup error is also a 404).
DAG_NOT_FOUND_TRIES = 3


def stop_dag_nodes(*, force: bool, terminate: bool) -> list[str]:
    """The node names of the main DAG that POST /api/v1/ob/stop creates for this mode."""
    middle = [_FREEZE] if terminate else []
    tail = [] if force or terminate else [_STOP_SQL]
    return [_INFORM, _READY, *middle, _ADVANCE, _WAIT, *tail, _END]


def parse_version(text: str) -> tuple[int, ...] | None:
    """obshell's four-part version ("4.4.1.0", maybe with a "-<release>" suffix) as integers; None if not one."""
    head = text.split("-", 1)[0].strip()
    parts = head.split(".")
    if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (4 - len(parts))


class Step(Enum):
    """What the handler must do next."""

    RECORD = "record"  # write status.submission before any POST, so a crash after it is detectable
    SUBMIT = "submit"  # look for our DAG on the agent, then POST the stop if it is not there
    POLL = "poll"  # GET the main DAG
    DONE = "done"  # terminal: no more calls to obshell


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Decision:
    status: Status
    delay: float | None = None  # seconds until the next step; None when terminal
    events: list[Event] = field(default_factory=list)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_GO_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 time, ours or obshell's (Go writes up to nanoseconds; Python reads microseconds at most)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(_GO_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------------
# Where are we?


def next_step(status: Mapping[str, Any]) -> Step:
    phase = status.get("phase")
    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        return Step.DONE
    if (status.get("dag") or {}).get("id"):
        return Step.POLL
    if status.get("submission"):
        return Step.SUBMIT
    return Step.RECORD


def deadline_exceeded(status: Mapping[str, Any], deadline_seconds: int | None, now: datetime) -> bool:
    started = parse_time(status.get("startTime"))
    if not (deadline_seconds and started):
        return False
    try:
        return now - started > timedelta(seconds=deadline_seconds)
    except OverflowError:  # beyond what a datetime can hold: never reached (the CRD bounds it to a year)
        return False


# ------------------------------------------------------------------------------------------------------
# Transitions


def acknowledged(status: Mapping[str, Any], generation: int) -> Decision:
    """A spec update after the request was handled. The spec is immutable but for the order of its set lists
    (scope.target, forcePassDag: kube-apiserver compares `x-kubernetes-list-type: set` lists without regard to
    order, so `self == oldSelf` lets a reorder through and bumps the generation). A reorder names the same stop:
    nothing is done again; the status and its conditions now describe this generation, so kstatus and Argo CD
    stop showing the request as progressing."""
    if not status:  # never handled: nothing describes any generation yet
        return Decision({}, None)
    new = _copy(status)
    new["observedGeneration"] = generation
    for cond in new.get("conditions") or ():
        cond["observedGeneration"] = generation
    return Decision(new, None)


def begin(status: Mapping[str, Any], generation: int, now: datetime) -> Decision:
    """First sight of the request: Pending, with its start time."""
    new = _copy(status)
    new.setdefault("startTime", rfc3339(now))
    new["phase"] = Phase.PENDING.value
    new["observedGeneration"] = generation
    _set_progress_conditions(new, generation, now, "Pending", "waiting to submit the stop to obshell")
    return Decision(new, delay=0)


def record_submission(
    status: Mapping[str, Any],
    agent: str,
    agent_now: datetime,
    generation: int,
    now: datetime,
    *,
    receiver: str = "",
    version: str = "",
) -> Decision:
    """Persist that a stop is about to be sent to `agent`. Written before the POST, never after it.

    `notBefore` is the agent's own clock at this moment: any stop DAG the agent started since then may be ours,
    whatever the skew between its clock and ours. `receiver` is the agent that answered at that address (its
    ip:port as it reports itself): the DAG, its history and its keys live there and nowhere else.
    """
    new = begin(status, generation, now).status if not status.get("phase") else _copy(status)
    _clear_fault(new)
    new["submission"] = {
        "agent": agent,
        "requestedAt": rfc3339(now),
        "notBefore": agent_now.replace(microsecond=0).isoformat(),
    }
    if receiver:
        new["submission"]["receiver"] = receiver
    if version:
        new["submission"]["obshellVersion"] = version
    return Decision(new, delay=0)


def unsupported_agent(version: str, supported_auth: list[str], identity: str) -> tuple[str, str] | None:
    """(reason, message) when the agent cannot take a stop from this controller at all, else None."""
    parsed = parse_version(version)
    if (parsed is not None and parsed < MIN_OBSHELL_VERSION) or (
        supported_auth and "v2" not in supported_auth
    ):
        return (
            "UnsupportedObshellVersion",
            f"obshell {version or '(unknown version)'} speaks only auth v1; the controller signs requests with "
            "auth v2, which obshell has from 4.2.3.0 on: upgrade obshell, then create a new ObStopRequest",
        )
    if identity and identity != CLUSTER_AGENT:
        return (
            "Agent.Identify.NotSupportOperation",
            f"the agent's identity is {identity!r}: obshell stops a cluster only through a {CLUSTER_AGENT!r} "
            "(an initialised cluster's agent); nothing was sent",
        )
    return None


def dag_matches(dag: DagDetail, *, force: bool, terminate: bool) -> bool:
    """Could `dag` (read with details) be the one our stop of this mode created? Name, stages and nodes."""
    wanted = stop_dag_nodes(force=force, terminate=terminate)
    if dag.name != STOP_DAG_NAME or dag.max_stage != len(wanted):
        return False
    return dag.nodes is None or [node.name for node in dag.nodes] == wanted


def submitted(
    status: Mapping[str, Any],
    dag: DagDetail,
    generation: int,
    now: datetime,
    settings: Settings,
    *,
    adopted: bool,
    remaining_seconds: float | None = None,
    fine_seconds: float = 1.0,
) -> Decision:
    """The agent accepted the stop (or we found the DAG of an earlier, unanswered POST)."""
    new = _copy(status)
    new["phase"] = Phase.SUBMITTED.value
    _clear_fault(new)
    _write_dag(new, dag)
    how = "found on the agent after an unanswered submission" if adopted else "accepted by the agent"
    message = f"stop DAG {dag.id} {how}"
    new["reason"], new["message"] = "Submitted", message
    _set_progress_conditions(new, generation, now, "Submitted", message)
    decision = observed(
        new,
        dag,
        generation,
        now,
        settings,
        stage_seconds=None,
        remaining_seconds=remaining_seconds,
        fine_seconds=fine_seconds,
    )
    decision.events.insert(0, Event("Normal", "Submitted", message))
    return decision


def observed(
    status: Mapping[str, Any],
    dag: DagDetail,
    generation: int,
    now: datetime,
    settings: Settings,
    *,
    stage_seconds: float | None,
    seconds_in_stage: float = 0.0,
    remaining_seconds: float | None = None,
    fine_seconds: float = 1.0,
) -> Decision:
    """A fresh view of the main DAG. With `remaining_seconds` (see expected_remaining), the next poll aims at
    the DAG's expected end; otherwise it follows the pace of its stages."""
    new = _copy(status)
    _clear_fault(new)
    before = (status.get("dag") or {}).get("stage")
    _write_dag(new, dag)
    events: list[Event] = []
    if dag.finished:
        new["completionTime"] = rfc3339(now)
        if dag.succeeded:
            message = f"stop DAG {dag.id} succeeded ({dag.max_stage}/{dag.max_stage} stages)"
            _finish(new, Phase.SUCCEEDED, "Succeeded", message, generation, now)
            events.append(Event("Normal", "Succeeded", message))
        else:
            reason, message = dag_failure(dag)
            _finish(new, Phase.FAILED, reason, message, generation, now)
            events.append(Event("Warning", "Failed", message))
        return Decision(new, None, events)
    new["phase"] = Phase.RUNNING.value if dag.state.value == "RUNNING" or dag.stage > 1 else new["phase"]
    node = new["dag"].get("currentNode") or ""
    message = f"stage {dag.stage}/{dag.max_stage}" + (f": {node}" if node else "")
    new["reason"], new["message"] = "Running", message
    _set_progress_conditions(new, generation, now, "Running", message)
    if before is not None and before != dag.stage:
        events.append(Event("Normal", "Progress", message))
    delay = (
        poll_delay(stage_seconds, seconds_in_stage, settings)
        if remaining_seconds is None
        else aimed_poll_delay(remaining_seconds, fine_seconds, settings)
    )
    return Decision(new, delay, events)


def fault(
    status: Mapping[str, Any],
    error: ObshellError | str,
    generation: int,
    now: datetime,
    settings: Settings,
    *,
    reason: str | None = None,
) -> Decision:
    """A fault that may go away (agent unreachable, 5xx, Secret missing): keep the phase, retry with back-off."""
    new = _copy(status) if status.get("phase") else begin(status, generation, now).status
    new["attempts"] = int(new.get("attempts") or 0) + 1
    # The back-off grows with the faults in a row, and starts over after any call that worked.
    streak = int(new.get("consecutiveErrors") or 0) + 1
    new["consecutiveErrors"] = streak
    text = describe_error(error)
    new["lastError"] = text
    delay = backoff(streak, settings)
    new["nextCheckTime"] = rfc3339(now + timedelta(seconds=delay))
    reason = reason or (error.reason if isinstance(error, ObshellError) else "WaitingForSecret")
    new["reason"], new["message"] = reason, f"retrying in {delay:.0f}s (attempt {streak}): {text}"
    _set_progress_conditions(new, generation, now, reason, new["message"])
    events = [Event("Warning", "Retrying", new["message"])] if streak in (1, 5) or streak % 20 == 0 else []
    return Decision(new, delay, events)


def failed(status: Mapping[str, Any], reason: str, message: str, generation: int, now: datetime) -> Decision:
    """A fault that retrying cannot fix: the request is Failed, and obshell is not called again."""
    new = _copy(status)
    new.setdefault("startTime", rfc3339(now))
    new["completionTime"] = rfc3339(now)
    _finish(new, Phase.FAILED, reason, message, generation, now)
    return Decision(new, None, [Event("Warning", "Failed", message)])


# ------------------------------------------------------------------------------------------------------
# Explanations


def describe_error(error: ObshellError | str) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, ObshellApiError):
        return f"{error.err_code or 'HTTP ' + str(error.status)}: {error.message}"
    if isinstance(error, ObshellTransportError):
        return str(error)
    return f"{error.reason}: {error}"


# Where obshell names the DAG holding an agent's lock: the ERROR lines of node 1's sub-tasks, which succeed;
# the node that fails (2, NotAllCreated) names only the agents (fact sheet §3.4, §3.5).
_LOCK_HOLDER = re.compile(r"under maintenance by DAG \[(\d+):")


def dag_failure(dag: DagDetail) -> tuple[str, str]:
    """(reason, message) for a finished DAG that did not succeed: its failing node and last log line."""
    if dag.operator.value == "CANCEL":
        return "Cancelled", f"stop DAG {dag.id} was cancelled on the agent"
    node = dag.failed_node
    log = dag.failure_log() or ""
    code_match = re.match(r"^ERROR: \[([A-Za-z0-9_.]+)\]", log)
    reason = code_match.group(1) if code_match else "DagFailed"
    where = f" at {node.name!r}" if node else ""
    message = f"stop DAG {dag.id} failed{where}" + (f": {log}" if log else "")
    holders = lock_holders(dag)
    if holders:
        ids = ", ".join(f'"{h}"' for h in holders)
        message += (
            f". Another stop or start holds the agents (DAG {', '.join(holders)}): create a new ObStopRequest "
            f"with forcePassDag: [{ids}] once you are sure it is abandoned"
        )
    return reason, message


def lock_holders(dag: DagDetail) -> list[str]:
    """The main DAG ids named as lock holders anywhere in the DAG's task logs, in order of appearance."""
    found: list[str] = []
    for node in dag.nodes or ():
        for task in node.sub_tasks or ():
            for line in task.task_logs or ():
                for holder in _LOCK_HOLDER.findall(line):
                    if holder not in found and holder != dag.id:
                        found.append(holder)
    return found


def permanent_error(error: ObshellError) -> tuple[str, str]:
    text = describe_error(error)
    if isinstance(error, ObshellApiError) and error.is_identity_refusal:
        return (
            "Agent.Identify.NotSupportOperation",
            f"obshell refused the stop: {text}. Only a cluster agent of an initialised cluster takes a stop",
        )
    if isinstance(error, ObshellApiError) and error.is_force_stop_required:
        return FORCE_STOP_REQUIRED, f"obshell refused the stop: {text}"
    if isinstance(error, ObshellApiError) and error.is_expired:
        # Not the password: the signed header's timestamp was already past on the agent's clock. The client
        # signs with the agent's own time, so this means its clock jumped, or the request took that long.
        return (
            error.reason,  # its errCode, or HTTP401 when the agent gave none
            f"obshell refused the request as expired: {text}. A signed request is valid for "
            f"{SIGNED_REQUEST_LIFETIME} s of the agent's clock, which the controller learns from its answers: "
            "the agent's clock jumped or the request took longer than that; check the agent's clock (NTP) "
            "and create a new ObStopRequest",
        )
    if isinstance(error, ObshellApiError) and error.status == 401:
        return (
            error.reason,
            f"obshell refused the credentials: {text}. Check the Secret named in spec.obshell.passwordSecretRef",
        )
    return error.reason, f"obshell refused the stop: {text}"


# ------------------------------------------------------------------------------------------------------
# Timing


def backoff(attempts: int, settings: Settings) -> float:
    """Exponential back-off: initial, twice that, four times, ... capped."""
    return float(min(settings.retry_max_seconds, settings.retry_initial_seconds * 2 ** max(0, attempts - 1)))


def poll_delay(stage_seconds: float | None, seconds_in_stage: float, settings: Settings) -> float:
    """When to look at the DAG again: at the moment its current stage is expected to end, within bounds.

    Polling at a fixed period wastes calls early in a stage and detects the end late; following the DAG's own
    pace (the mean duration of the stages seen so far) does better on both counts. Once a stage overruns, look
    at a quarter of the mean, so a slow stage is not polled in a tight loop.
    """
    low, high = settings.poll_min_seconds, settings.poll_max_seconds
    if stage_seconds is None:
        return min(high, max(low, 1.0))
    remaining = stage_seconds - seconds_in_stage
    wanted = remaining if remaining > low else stage_seconds / 4
    return min(high, max(low, wanted))


def expected_remaining(
    dag: DagDetail, seconds_in_node: float | None, node_seconds: Mapping[str, float]
) -> float | None:
    """Seconds until `dag` should finish: what is left of its current node plus the typical durations of the
    nodes after it (`node_seconds`, learned from earlier DAGs by node name). None when the DAG's nodes are
    unknown or nothing has been learned yet; a node never seen takes the mean of those that were."""
    nodes = dag.nodes or []
    if not nodes or not node_seconds:
        return None
    fallback = sum(node_seconds.values()) / len(node_seconds)

    def typical(name: str) -> float:
        return node_seconds.get(name, fallback)

    index = max(1, min(dag.stage, len(nodes)))
    current = nodes[index - 1]
    left = typical(current.name) - (seconds_in_node or 0.0) if current.state.value == "RUNNING" else 0.0
    if current.state.value in ("PENDING", "READY"):
        left = typical(current.name)
    return max(0.0, left) + sum(typical(node.name) for node in nodes[index:])


def fine_poll_seconds(last_node_seconds: float | None, settings: Settings) -> float:
    """The spacing of polls once a DAG's end is due: a quarter of its last node's typical time, at most 1 s."""
    if last_node_seconds is None:
        return min(1.0, settings.poll_max_seconds)
    return min(1.0, settings.poll_max_seconds, max(settings.poll_min_seconds, last_node_seconds / 4))


def aimed_poll_delay(remaining: float, fine: float, settings: Settings) -> float:
    """Aim the next poll one `fine` step before the DAG's expected end; once it is due, poll every `fine`.

    Compared with a fixed period this spends no calls while nothing can have happened, and detects the end
    within about `fine` seconds. Polls never come further apart than poll_max_seconds, so status stays fresh.
    """
    low, high = settings.poll_min_seconds, settings.poll_max_seconds
    wanted = remaining - fine if remaining > 2 * fine else fine
    return min(high, max(low, wanted))


# ------------------------------------------------------------------------------------------------------
# Helpers


def _copy(status: Mapping[str, Any]) -> Status:
    new = dict(status)
    new["conditions"] = [dict(c) for c in status.get("conditions") or ()]
    if "dag" in new and new["dag"] is not None:
        new["dag"] = dict(new["dag"])
    return new


def _clear_fault(status: Status) -> None:
    for key in ("lastError", "nextCheckTime", "consecutiveErrors"):
        status.pop(key, None)


def _write_dag(status: Status, dag: DagDetail) -> None:
    node = dag.current_node
    failed = dag.failed_node
    previous = status.get("dag") or {}
    status["dag"] = {
        "id": dag.id,
        "dagId": dag.dag_id,
        "name": dag.name,
        "stage": dag.stage,
        "maxStage": dag.max_stage,
        "state": dag.state.value,
        "operator": dag.operator.value,
        "startTime": dag.start_time,
        "endTime": dag.end_time,
        "currentNode": node.name if node else previous.get("currentNode", ""),
        "failedNode": failed.name if failed else "",
    }
    status["progress"] = f"{dag.stage}/{dag.max_stage}"


def _finish(status: Status, phase: Phase, reason: str, message: str, generation: int, now: datetime) -> None:
    status["phase"] = phase.value
    status["reason"], status["message"] = reason, message
    status["observedGeneration"] = generation
    _clear_fault(status)
    ok = phase is Phase.SUCCEEDED
    cond_reason = condition_reason(reason)
    set_condition(status, "Ready", ok, cond_reason, message, generation, now)
    set_condition(status, "Reconciling", False, cond_reason, message, generation, now)
    set_condition(status, "Stalled", not ok, cond_reason, message, generation, now)
    set_condition(status, "Complete", ok, cond_reason, message, generation, now)
    set_condition(status, "Failed", not ok, cond_reason, message, generation, now)


def _set_progress_conditions(
    status: Status, generation: int, now: datetime, reason: str, message: str
) -> None:
    status["observedGeneration"] = generation
    cond_reason = condition_reason(reason)
    set_condition(status, "Ready", False, cond_reason, message, generation, now)
    set_condition(status, "Reconciling", True, cond_reason, message, generation, now)


def condition_reason(text: str) -> str:
    """Condition reasons are CamelCase identifiers; obshell's dotted errCodes are squashed into one."""
    squashed = re.sub(r"[^A-Za-z0-9_]", "", text)
    return squashed if squashed[:1].isalpha() else f"E{squashed}" if squashed else "Unknown"


def set_condition(
    status: Status, kind: str, value: bool, reason: str, message: str, generation: int, now: datetime
) -> None:
    """Upsert a condition; lastTransitionTime moves only when its status changes."""
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    text = "True" if value else "False"
    for cond in conditions:
        if cond.get("type") == kind:
            if cond.get("status") != text:
                cond["lastTransitionTime"] = rfc3339(now)
            cond.update(status=text, reason=reason, message=message[:32768], observedGeneration=generation)
            return
    conditions.append(
        {
            "type": kind,
            "status": text,
            "reason": reason,
            "message": message[:32768],
            "observedGeneration": generation,
            "lastTransitionTime": rfc3339(now),
        }
    )
