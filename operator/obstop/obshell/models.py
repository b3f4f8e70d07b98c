"""obshell's wire DTOs (ob/param/ob.go, ob/agent/engine/task/task_dto.go, ob/agent/meta/agent.go) as pydantic models.

Parsing is tolerant of extra keys (newer agents add fields) and strict about the ones we rely on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class ScopeType(StrEnum):
    GLOBAL = "GLOBAL"
    ZONE = "ZONE"
    SERVER = "SERVER"


class DagState(StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCEED = "SUCCEED"

    @property
    def finished(self) -> bool:
        return self in (DagState.FAILED, DagState.SUCCEED)


class DagOperator(StrEnum):
    RUN = "RUN"
    RETRY = "RETRY"
    ROLLBACK = "ROLLBACK"
    CANCEL = "CANCEL"
    PASS = "PASS"  # noqa: S105 - a DAG operator, not a password


class Scope(_Wire):
    type: ScopeType
    target: list[str] = Field(default_factory=list)


class StopParams(_Wire):
    """Body of POST /api/v1/ob/stop. `force_pass_dag` goes on the wire as {"id": [...]}."""

    scope: Scope
    force: bool = False
    terminate: bool = False
    force_pass_dag: list[str] = Field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {
            "scope": {"type": self.scope.type.value, "target": list(self.scope.target)},
            "force": self.force,
            "terminate": self.terminate,
            "forcePassDag": {"id": list(self.force_pass_dag)},
        }


class AgentAddress(_Wire):
    ip: str
    port: int


class TaskDetail(_Wire):
    id: str
    task_id: int = 0
    name: str = ""
    state: DagState
    operator: DagOperator
    start_time: str = ""
    end_time: str = ""
    additional_data: dict[str, Any] | None = None
    execute_times: int = 0
    execute_agent: AgentAddress | None = None
    task_logs: list[str] | None = None


class NodeDetail(_Wire):
    id: str
    node_id: int = 0
    name: str = ""
    state: DagState
    operator: DagOperator
    start_time: str = ""
    end_time: str = ""
    additional_data: dict[str, Any] | None = None
    sub_tasks: list[TaskDetail] | None = None


class DagDetail(_Wire):
    id: str
    dag_id: int = 0
    name: str = ""
    stage: int = 0
    max_stage: int = 0
    maintenance_type: int = 0
    maintenance_key: str = ""
    state: DagState
    operator: DagOperator
    start_time: str = ""
    end_time: str = ""
    additional_data: dict[str, Any] | None = None
    nodes: list[NodeDetail] | None = None

    @field_validator("id")
    @classmethod
    def _id_is_digits(cls, value: str) -> str:
        if not value.isascii() or not value.isdigit():
            raise ValueError("generic id must be decimal digits")
        return value

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def succeeded(self) -> bool:
        """Ran to completion (RUN), or was passed by hand (PASS). A rolled-back stop is not a stop."""
        return self.state is DagState.SUCCEED and self.operator in (DagOperator.RUN, DagOperator.PASS)

    @property
    def current_node(self) -> NodeDetail | None:
        """The node at `stage` (1-based), when details were asked for."""
        if not self.nodes or not 1 <= self.stage <= len(self.nodes):
            return None
        return self.nodes[self.stage - 1]

    def failure_log(self) -> str | None:
        """The last log line of the first failed sub-task of the first failed node, as the SDKs report it."""
        for node in self.nodes or ():
            if node.state is not DagState.FAILED:
                continue
            for task in node.sub_tasks or ():
                if task.state is DagState.FAILED and task.task_logs:
                    return task.task_logs[-1]
            return None
        return None

    @property
    def failed_node(self) -> NodeDetail | None:
        return next((n for n in self.nodes or () if n.state is DagState.FAILED), None)


class AgentInfo(_Wire):
    """GET /api/v1/info."""

    ip: str
    port: int
    zone: str = ""
    identity: str = ""
    version: str = ""
    supported_auth: list[str] = Field(default_factory=list, alias="supportedAuth")
    security: bool = False


class ObAgent(_Wire):
    """One agent of the cluster in GET /api/v1/ob/info `agent_info` (its sqlite agent table: present with OB down)."""

    ip: str
    port: int
    zone: str = ""
    identity: str = ""
    version: str = ""

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


class ObServer(_Wire):
    """One observer of `obcluster_info.topology` (read from OB: absent while OB is down)."""

    svr_ip: str
    svr_port: int = 0
    sql_port: int = 0
    agent_port: int = 0
    with_rootserver: bool = False
    status: str = ""  # ACTIVE, INACTIVE, or STOPPED once stop_time is set (ALTER SYSTEM STOP ...)
    build_version: str = ""

    @property
    def agent_address(self) -> str:
        ip = self.svr_ip
        return f"[{ip}]:{self.agent_port}" if ":" in ip else f"{ip}:{self.agent_port}"


class ObClusterInfo(_Wire):
    id: int = 0
    name: str = ""
    version: str = ""
    topology: dict[str, list[ObServer]] | None = None  # zone -> observers; empty with OB down
    is_shared_storage: bool = False


class ObInfo(_Wire):
    """GET /api/v1/ob/info (fact sheet §5)."""

    agent_info: list[ObAgent] = Field(default_factory=list)
    obcluster_info: ObClusterInfo | None = None

    @property
    def zones(self) -> list[str]:
        return list(dict.fromkeys(agent.zone for agent in self.agent_info if agent.zone))

    @property
    def topology(self) -> dict[str, list[ObServer]]:
        info = self.obcluster_info
        return dict(info.topology or {}) if info is not None else {}


class AgentIdentity(_Wire):
    ip: str
    port: int
    identity: str = ""


class AgentStatus(_Wire):
    """GET /api/v1/status."""

    agent: AgentIdentity
    state: int = 0
    version: str = ""
    ob_state: int = Field(0, alias="obState")
    under_maintenance: bool = Field(False, alias="underMaintenance")
