"""What obshell's answers mean for a request: explanations a person reads, and which DAG is whose. Pure.

The facts are obshell's, cited to its source (github.com/oceanbase/obshell) and to docs/troubleshooting.md.
"""

from __future__ import annotations

import re

from obstop.controller.status import AgentProgress, Reason
from obstop.obshell import DagDetail, DagState, ObshellApiError, ObshellError, ObshellTransportError, ids
from obstop.obshell.client import DEFAULT_LIFETIME

# The name of the main DAG that POST /api/v1/ob/stop creates (obshell agent/executor/ob/stop.go).
STOP_DAG_NAME = "Stop OB"

# The main stop DAG's nodes, in order (obshell agent/executor/ob/stop.go buildStopTemplate). The per-zone stop
# API of 4.4.1+ (executor/ob/stop_zone.go), the CLI and the dashboard make DAGs of the same name: only the nodes
# and their order tell which stop a "Stop OB" DAG is.
_INFORM = "Inform all agents to prepare to stop observer"
_READY = "Make sure all agents are ready"
_FREEZE = "Minor freeze before stop server"
_ADVANCE = "Advance agents to execute the task"
_WAIT = "Wait for all agents to execute tasks successfully"
_STOP_SQL = "Execute stop sql"
_END = "Inform all agents to end the task"

# The oldest obshell the client can talk to: auth v2 came with 4.2.3.0; 4.2.2 speaks only v1 (obshell
# agent/secure/auth.go, the SDKs' auth v1 path).
MIN_OBSHELL_VERSION = (4, 2, 3, 0)
CLUSTER_AGENT = "CLUSTER AGENT"
# How many "record not found" answers in a row make a followed DAG gone: obshell answers 404 for any lookup
# error (agent/executor/task/dag.go GetDagDetail), so one answer proves nothing.
DAG_NOT_FOUND_TRIES = 3
# A signed request's lifetime (the client's, as the official SDKs use).
SIGNED_REQUEST_LIFETIME = DEFAULT_LIFETIME

# Where obshell names the DAG holding an agent's lock: the ERROR lines of node 1's sub-tasks, which succeed;
# the node that fails (2, NotAllCreated) names only the agents (agent/executor/ob/sub_dag.go).
_LOCK_HOLDER = re.compile(r"under maintenance by DAG \[(\d+):")
_LOG_CODE = re.compile(r"^ERROR: \[([A-Za-z0-9_.]+)\]")


def stop_dag_nodes(*, force: bool, terminate: bool) -> list[str]:
    """The node names of the main DAG that POST /api/v1/ob/stop creates for this mode."""
    middle = [_FREEZE] if terminate else []
    tail = [] if force or terminate else [_STOP_SQL]
    return [_INFORM, _READY, *middle, _ADVANCE, _WAIT, *tail, _END]


def dag_matches(dag: DagDetail, *, force: bool, terminate: bool) -> bool:
    """Could `dag` be the one our stop of this mode created? Name and stages; nodes when it was read with them."""
    wanted = stop_dag_nodes(force=force, terminate=terminate)
    if dag.name != STOP_DAG_NAME or dag.max_stage != len(wanted):
        return False
    return dag.nodes is None or [node.name for node in dag.nodes] == wanted


MAX_AGENT_ROWS = 64  # the CRD's maxItems: a bounded status, whatever the cluster's size
_MAX_LOG = 512
# The sub-DAG node that kills an agent's observer (obshell agent/executor/ob/stop_obsvr.go buildSubStopTemplate).
STOP_OBSERVER_NODE = "Stop observer"


def agent_rows(dag: DagDetail) -> list[AgentProgress] | None:
    """Each agent the DAG works on: the last main-DAG node with a task for it, that task's state, its last log
    line if it failed. From the DAG read with details alone (no call per agent); None without details."""
    if dag.nodes is None:
        return None
    sub_dags = (dag.additional_data or {}).get("sub_dags")
    rows: dict[str, AgentProgress] = {}
    if isinstance(sub_dags, dict):
        for agent, sub_id in sub_dags.items():
            rows[str(agent)] = AgentProgress(agent=str(agent), sub_dag=str(sub_id))
    for node in dag.nodes:
        for task in node.sub_tasks or ():
            if task.execute_agent is None:
                continue
            agent = agent_address(task.execute_agent.ip, task.execute_agent.port)
            row = rows.setdefault(agent, AgentProgress(agent=agent))
            row.node, row.state = node.name, task.state.value
            failed = task.state is DagState.FAILED and task.task_logs
            row.last_log = task.task_logs[-1][:_MAX_LOG] if failed and task.task_logs else None
    return sorted(rows.values(), key=lambda r: r.agent)[:MAX_AGENT_ROWS]


def agent_address(ip: str, port: int) -> str:
    """An agent as ip:port ([v6]:port), the form obshell's generic ids and sub_dags keys use."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def agent_of(generic_id: str) -> str | None:
    """The ip:port a local DAG id encodes (obshell agent/engine/task/task_dto.go ConvertToGenericID)."""
    try:
        return ids.decode(generic_id).agent
    except ValueError:
        return None


def observer_stopped(sub_dag: DagDetail) -> bool:
    """Whether an agent's sub-DAG (read with details) killed its observer."""
    return any(n.name == STOP_OBSERVER_NODE and n.state is DagState.SUCCEED for n in sub_dag.nodes or ())


def parse_version(text: str) -> tuple[int, ...] | None:
    """obshell's four-part version ("4.4.1.0", maybe with a "-<release>" suffix) as integers; None if not one."""
    parts = text.split("-", 1)[0].strip().split(".")
    if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts) + (0,) * (4 - len(parts))


def unsupported_agent(version: str, supported_auth: list[str], identity: str) -> tuple[str, str] | None:
    """(reason, message) when the agent cannot take a stop from this controller at all, else None."""
    parsed = parse_version(version)
    if (parsed is not None and parsed < MIN_OBSHELL_VERSION) or (
        supported_auth and "v2" not in supported_auth
    ):
        return (
            Reason.UNSUPPORTED_OBSHELL_VERSION,
            f"obshell {version or '(unknown version)'} speaks only auth v1; the controller signs requests with "
            "auth v2, which obshell has from 4.2.3.0 on: upgrade obshell, then create a new ObStopRequest",
        )
    if identity and identity != CLUSTER_AGENT:
        return (
            Reason.NOT_A_CLUSTER_AGENT,
            f"the agent's identity is {identity!r}: obshell stops a cluster only through a {CLUSTER_AGENT!r} "
            "(an initialised cluster's agent); nothing was sent",
        )
    return None


def describe_error(error: ObshellError) -> str:
    if isinstance(error, ObshellApiError):
        return f"{error.err_code or 'HTTP ' + str(error.status)}: {error.message}"
    if isinstance(error, ObshellTransportError):
        return str(error)
    return f"{error.reason}: {error}"


def dag_failure(dag: DagDetail) -> tuple[str, str]:
    """(reason, message) for a finished DAG that did not succeed: its failing node and last log line."""
    if dag.operator.value == "CANCEL":
        return Reason.CANCELLED, f"stop DAG {dag.id} was cancelled on the agent"
    node = dag.failed_node
    log = dag.failure_log() or ""
    code_match = _LOG_CODE.match(log)
    reason = code_match.group(1) if code_match else Reason.DAG_FAILED
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


NOTHING_STOPPED = "; obshell created no stop DAG: nothing was stopped"


def stop_refused(error: ObshellApiError, *, none_landed: bool) -> tuple[str, str]:
    """(reason, message) for a stop POST that obshell answered with an error envelope: it validates the scope,
    the targets and the observer before it creates a DAG (agent/api/obcluster_handler.go obStopHandler,
    agent/executor/ob/stop.go HandleObStop), so this POST stopped nothing; `none_landed`: no earlier POST of the
    request did either (none was sent, or none is on the agent)."""
    reason, message = permanent_error(error)
    return reason, message + (NOTHING_STOPPED if none_landed and error.enveloped else "")


def permanent_error(error: ObshellError) -> tuple[str, str]:
    """(reason, message) for an error that retrying cannot fix."""
    text = describe_error(error)
    if isinstance(error, ObshellApiError) and error.is_identity_refusal:
        return (
            Reason.NOT_A_CLUSTER_AGENT,
            f"obshell refused the stop: {text}. Only a cluster agent of an initialised cluster takes a stop",
        )
    if isinstance(error, ObshellApiError) and error.is_force_stop_required:
        return Reason.FORCE_STOP_REQUIRED, f"obshell refused the stop: {text}"
    if isinstance(error, ObshellApiError) and error.is_expired:
        # Not the password: the signed header's timestamp was already past on the agent's clock. The client
        # signs with the agent's own time, so this means its clock jumped, or the request took that long.
        return (
            error.reason,
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
