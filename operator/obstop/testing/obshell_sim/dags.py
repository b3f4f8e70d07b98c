"""Simulated task DAGs (ob/agent/executor/ob/sub_dag.go, ob/agent/engine/task/task_dto.go, ob/agent/engine/task/task.go): the records an agent keeps and their wire form."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from obstop.obshell import ids
from obstop.testing.obshell_sim import clock
from obstop.testing.obshell_sim.wire import EPOCH, go_time

STOP_DAG = "Stop OB"
SUB_STOP_DAG = "Stop observer"

NODE_INFORM = "Inform all agents to prepare to stop observer"
NODE_READY = "Make sure all agents are ready"
NODE_MINOR_FREEZE = "Minor freeze before stop server"
NODE_ADVANCE = "Advance agents to execute the task"
NODE_WAIT = "Wait for all agents to execute tasks successfully"
NODE_STOP_SQL = "Execute stop sql"
NODE_END = "Inform all agents to end the task"

SUB_NODE_PREPARE = "Start preparations"
SUB_NODE_KILL = "Stop observer"
SUB_NODE_WAIT_END = "Wait for task to end"

MAINTENANCE_NONE = 1
MAINTENANCE_GLOBAL = 2


class State(enum.StrEnum):
    PENDING = "PENDING"
    READY = "READY"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SUCCEED = "SUCCEED"


class Operator(enum.StrEnum):
    RUN = "RUN"
    RETRY = "RETRY"
    ROLLBACK = "ROLLBACK"
    CANCEL = "CANCEL"
    PASS = "PASS"  # noqa: S105 - a DAG operator, not a password


def stop_node_names(*, force: bool, terminate: bool) -> list[str]:
    """The main stop DAG's nodes per mode: force 5, terminate 6, immediate 6."""
    names = [NODE_INFORM, NODE_READY]
    if terminate:
        names.append(NODE_MINOR_FREEZE)
    names += [NODE_ADVANCE, NODE_WAIT]
    if not force and not terminate:
        names.append(NODE_STOP_SQL)
    names.append(NODE_END)
    return names


def zone_stop_node_names(*, freeze_server: bool) -> list[str]:
    """The DAG of the per-zone stop route (4.4.1.0+, executor/ob/stop_zone.go; fact sheet §5), also named "Stop
    OB": the stop sql comes third, and every observer of the zone is killed; 6 nodes, 7 with the freeze."""
    names = [NODE_INFORM, NODE_READY, NODE_STOP_SQL]
    if freeze_server:
        names.append(NODE_MINOR_FREEZE)
    return [*names, NODE_ADVANCE, NODE_WAIT, NODE_END]


@dataclass
class SubTask:
    generic_id: str
    task_id: int
    name: str
    execute_agent: tuple[str, int]
    state: State = State.PENDING
    operator: Operator = Operator.RUN
    start_time: datetime = field(default_factory=clock.now)
    end_time: datetime = field(default_factory=clock.now)
    logs: list[str] | None = None
    execute_times: int = 0
    additional_data: dict[str, Any] | None = None

    def log(self, line: str) -> None:
        if self.logs is None:
            self.logs = []
        self.logs.append(line)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.generic_id,
            "task_id": self.task_id,
            "name": self.name,
            "state": self.state.value,
            "operator": self.operator.value,
            "start_time": go_time(self.start_time),
            "end_time": go_time(self.end_time),
            "additional_data": None,  # merged into the DAG level and hidden (task_dto.go SetVisible, ob/agent/engine/task/task_dto.go)
            "execute_times": self.execute_times,
            "execute_agent": {"ip": self.execute_agent[0], "port": self.execute_agent[1]},
            "task_logs": list(self.logs) if self.logs is not None else None,
        }


@dataclass
class Node:
    generic_id: str
    node_id: int
    name: str
    state: State = State.PENDING
    operator: Operator = Operator.RUN
    start_time: datetime = field(default_factory=clock.now)
    end_time: datetime = field(default_factory=clock.now)
    sub_tasks: list[SubTask] = field(default_factory=list)
    additional_data: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.generic_id,
            "node_id": self.node_id,
            "name": self.name,
            "state": self.state.value,
            "operator": self.operator.value,
            "start_time": go_time(self.start_time),
            "end_time": go_time(self.end_time),
            "additional_data": None,  # merged into the DAG level and hidden (task_dto.go SetVisible, ob/agent/engine/task/task_dto.go)
            "sub_tasks": [task.to_wire() for task in self.sub_tasks],
        }


@dataclass
class Dag:
    """One DAG on one agent. `finished` is obshell's is_finished flag (what the unfinished lists use)."""

    generic_id: str
    dag_id: int
    name: str
    nodes: list[Node]
    maintenance_type: int = MAINTENANCE_NONE
    stage: int = 1
    state: State = State.READY
    operator: Operator = Operator.RUN
    start_time: datetime = field(default_factory=clock.now)
    end_time: datetime = field(default_factory=clock.now)
    finished: bool = False
    additional_data: dict[str, Any] | None = None
    # Stop parameters of a main DAG (simulator bookkeeping, not on the wire).
    params: dict[str, Any] | None = None
    # Wall-clock time (time.time()) when the DAG last became SUCCEED/FAILED: benchmarks measure from here.
    terminal_at: float | None = None

    @property
    def max_stage(self) -> int:
        return len(self.nodes)

    @property
    def current(self) -> Node:
        return self.nodes[min(self.stage, len(self.nodes)) - 1]

    @property
    def terminal(self) -> bool:
        return self.state in (State.SUCCEED, State.FAILED)

    @property
    def main_dag_id(self) -> str | None:
        data = self.additional_data or {}
        value = data.get("main_dag_id")
        return value if isinstance(value, str) else None

    def to_wire(self, *, details: bool) -> dict[str, Any]:
        return {
            "id": self.generic_id,
            "dag_id": self.dag_id,
            "name": self.name,
            "stage": self.stage,
            "max_stage": self.max_stage,
            "maintenance_type": self.maintenance_type,
            "maintenance_key": "",
            "state": self.state.value,
            "operator": self.operator.value,
            "start_time": go_time(self.start_time),
            "end_time": go_time(self.end_time),
            "additional_data": self.merged_data() if details else self.additional_data,
            "nodes": [node.to_wire() for node in self.nodes] if details else None,
        }

    def merged_data(self) -> dict[str, Any] | None:
        """With details, DAG-level additional_data is the merge of node- and sub-task-level data (ob/agent/engine/task/task_dto.go)."""
        merged: dict[str, Any] = dict(self.additional_data or {})
        parts = [node.additional_data for node in self.nodes]
        parts += [task.additional_data for node in self.nodes for task in node.sub_tasks]
        for part in parts:
            for key, value in (part or {}).items():
                if isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key] = {**merged[key], **value}
                else:
                    merged[key] = value
        return merged or None

    def reset_times(self) -> None:
        """RETRY/ROLLBACK/CANCEL reset both times to the Unix epoch (server time zone)."""
        self.start_time = self.end_time = EPOCH


class IdAllocator:
    """Per-agent counters for DAG, node and sub-task ids, encoded as that agent's generic ids."""

    def __init__(self, ip: str, port: int) -> None:
        self.ip, self.port = ip, port
        self._next = {"dag": 1, "node": 1, "task": 1}

    def allocate(self, what: str) -> tuple[int, str]:
        local = self._next[what]
        self._next[what] = local + 1
        return local, ids.agent_dag_id(self.ip, self.port, local).encode()

    def reset(self) -> None:
        self._next = {"dag": 1, "node": 1, "task": 1}
