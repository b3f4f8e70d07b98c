"""The controller's pure decisions: status transitions, conditions, explanations, timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from obstop.controller import answers, decisions
from obstop.controller.decisions import At, Decision, Step
from obstop.controller.settings import Settings
from obstop.controller.status import ConditionType, RequestStatus, Submission, condition_reason
from obstop.obshell import DagDetail, ObshellApiError, ObshellTransportError

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
AT = At(1, NOW)
SETTINGS = Settings()
POLL = 1.0  # the next poll, as pacing.py would have chosen it


def dag(state: str = "RUNNING", stage: int = 2, operator: str = "RUN", nodes: Any = None) -> DagDetail:
    return DagDetail.model_validate(
        {
            "id": "22130706433028869",
            "dag_id": 9,
            "name": "Stop OB",
            "stage": stage,
            "max_stage": 5,
            "state": state,
            "operator": operator,
            "start_time": "2026-11-23T20:00:00+08:00",
            "end_time": "2026-11-23T20:00:00+08:00",
            "nodes": nodes,
        }
    )


def node(name: str, state: str, logs: list[str] | None = None) -> dict[str, Any]:
    task = {"id": "x", "name": name, "state": state, "operator": "RUN", "task_logs": logs}
    return {"id": "n", "name": name, "state": state, "operator": "RUN", "sub_tasks": [task]}


def typed(status: dict[str, Any]) -> RequestStatus:
    return RequestStatus.from_wire(status)


def wire(decision: Decision) -> dict[str, Any]:
    return decision.status.to_wire()


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def submission(agent: str, agent_now: datetime) -> Submission:
    return Submission(agent=agent, requested_at=NOW, not_before=agent_now)


def submitted(status: dict[str, Any], the_dag: DagDetail) -> Decision:
    return decisions.submitted(typed(status), the_dag, AT, adopted=False, next_poll=POLL)


def observed(status: dict[str, Any], the_dag: DagDetail, at: At = AT) -> Decision:
    return decisions.observed(typed(status), the_dag, at, next_poll=POLL)


def transport_fault(status: dict[str, Any], error: ObshellTransportError) -> Decision:
    return decisions.obshell_fault(typed(status), error, AT, SETTINGS)


def test_steps_follow_the_status() -> None:
    recorded = {"agent": "a", "requestedAt": "2026-11-23T12:00:00Z", "notBefore": "2026-11-23T20:00:00+08:00"}
    assert decisions.next_step(typed({})) is Step.RECORD
    assert decisions.next_step(typed({"phase": "Pending", "submission": recorded})) is Step.SUBMIT
    assert (
        decisions.next_step(typed({"phase": "Submitted", "dag": {"id": "1"}, "submission": recorded}))
        is Step.POLL
    )
    assert decisions.next_step(typed({"phase": "Failed", "dag": {"id": "1"}})) is Step.DONE
    assert decisions.next_step(typed({"phase": "Succeeded"})) is Step.DONE


def test_submission_is_recorded_before_anything_is_sent() -> None:
    agent_now = datetime.fromisoformat("2026-11-23T20:00:07.123456789+08:00")
    decision = decisions.record_submission(typed({}), submission("http://10.0.0.1:2886", agent_now), AT)
    status = wire(decision)
    assert status["phase"] == "Pending"
    assert status["submission"] == {
        "agent": "http://10.0.0.1:2886",
        "requestedAt": "2026-11-23T12:00:00Z",
        "notBefore": "2026-11-23T20:00:07+08:00",  # the agent's clock, floored to the second
    }
    assert status["startTime"] == "2026-11-23T12:00:00Z"
    assert conditions(status) == {"Ready": "False", "Reconciling": "True"}
    assert decision.next_step_in == 0


def test_submitted_writes_the_dag_and_an_event() -> None:
    pending = wire(decisions.record_submission(typed({}), submission("agent", NOW), AT))
    decision = submitted(pending, dag("READY", 1))
    status = wire(decision)
    assert status["phase"] == "Submitted"
    assert status["dag"]["id"] == "22130706433028869"
    assert status["dag"]["dagId"] == 9
    assert status["progress"] == "1/5"
    assert [e.reason for e in decision.events] == ["Submitted"]
    assert decision.next_step_in is not None and decision.next_step_in > 0


def test_running_then_success_sets_job_like_conditions() -> None:
    status = wire(submitted({}, dag("READY", 1)))
    running = observed(status, dag("RUNNING", 3))
    assert wire(running)["phase"] == "Running"
    assert running.events == (), "a stage change is in the status, not an event (one API write less each)"
    decision = observed(wire(running), dag("SUCCEED", 5), At(1, NOW + timedelta(seconds=5)))
    done = wire(decision)
    assert decision.next_step_in is None
    assert done["phase"] == "Succeeded"
    assert done["completionTime"] == "2026-11-23T12:00:05Z"
    assert conditions(done) == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Complete": "True",
        "Failed": "False",
    }
    assert all(c["observedGeneration"] == 1 for c in done["conditions"])


def test_failed_dag_reports_its_node_and_last_log_line() -> None:
    nodes = [
        node("Inform all agents to prepare to stop observer", "SUCCEED"),
        node(
            "Make sure all agents are ready",
            "FAILED",
            ["INFO: waiting", "ERROR: [Task.SubDag.NotAllCreated]: boom"],
        ),
    ]
    status = wire(observed({}, dag("FAILED", 2, nodes=nodes)))
    assert status["phase"] == "Failed"
    assert status["reason"] == "Task.SubDag.NotAllCreated"
    assert "'Make sure all agents are ready'" in status["message"]
    assert status["message"].endswith("ERROR: [Task.SubDag.NotAllCreated]: boom")
    assert status["dag"]["failedNode"] == "Make sure all agents are ready"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TaskSubDagNotAllCreated"


def test_lock_conflict_names_the_dag_to_force_pass() -> None:
    log = "ERROR: [Task.SubDag.NotAllCreated]: 127.0.0.1:2886 is under maintenance by DAG [22130706433028861:Stop observer]"
    failed = dag("FAILED", 2, nodes=[node("Make sure all agents are ready", "FAILED", [log])])
    _, message = answers.dag_failure(failed)
    assert 'forcePassDag: ["22130706433028861"]' in message


def test_cancelled_dag_is_a_failure_with_its_own_reason() -> None:
    reason, message = answers.dag_failure(dag("FAILED", 2, operator="CANCEL"))
    assert reason == "Cancelled" and "cancelled" in message


def test_rolled_back_dag_is_not_a_success() -> None:
    assert wire(observed({}, dag("SUCCEED", 5, operator="ROLLBACK")))["phase"] == "Failed"


def test_transient_fault_keeps_the_phase_and_backs_off() -> None:
    status = wire(submitted({}, dag("RUNNING", 2)))
    error = ObshellTransportError("GET http://a/api: cannot connect", maybe_delivered=False)
    first = transport_fault(status, error)
    second = transport_fault(wire(first), error)
    assert wire(first)["phase"] == wire(second)["phase"] == "Running"
    assert (first.next_step_in, second.next_step_in) == (1.0, 2.0)
    assert wire(second)["attempts"] == 2
    assert "cannot connect" in wire(second)["lastError"]
    assert wire(second)["reason"] == "AgentUnreachable"
    cleared = wire(observed(wire(second), dag("RUNNING", 3)))
    assert "lastError" not in cleared and "nextCheckTime" not in cleared


def test_backoff_starts_over_after_a_call_that_worked() -> None:
    error = ObshellTransportError("cannot connect", maybe_delivered=False)
    status = wire(submitted({}, dag("RUNNING", 2)))
    for _ in range(4):
        decision = transport_fault(status, error)
        status = wire(decision)
    assert decision.next_step_in == 8.0 and status["consecutiveErrors"] == 4
    status = wire(observed(status, dag("RUNNING", 3)))
    assert "consecutiveErrors" not in status and status["attempts"] == 4
    again = transport_fault(status, error)
    assert again.next_step_in == 1.0 and wire(again)["attempts"] == 5


def test_backoff_is_capped() -> None:
    assert decisions.backoff(30, SETTINGS) == SETTINGS.retry_max_seconds


def test_permanent_error_explains_bad_credentials() -> None:
    error = ObshellApiError(
        401,
        "Unauthorized: OceanBase password is incorrect",
        err_code="Security.Authentication.IncorrectOceanbasePassword",
        code=10008,
    )
    reason, message = answers.permanent_error(error)
    assert reason == "Security.Authentication.IncorrectOceanbasePassword"
    assert "passwordSecretRef" in message


def test_deadline_counts_from_start_time() -> None:
    status = typed({"startTime": "2026-11-23T11:59:00Z"})
    assert decisions.deadline_exceeded(status, 30, NOW)
    assert not decisions.deadline_exceeded(status, 120, NOW)
    assert not decisions.deadline_exceeded(status, None, NOW)


def test_condition_transition_time_moves_only_on_change() -> None:
    status = RequestStatus()
    status.set_condition(ConditionType.READY, False, "A", "m", 1, NOW)
    status.set_condition(ConditionType.READY, False, "B", "m2", 1, NOW + timedelta(seconds=9))
    assert status.to_wire()["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    status.set_condition(ConditionType.READY, True, "C", "m3", 1, NOW + timedelta(seconds=9))
    assert status.to_wire()["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:09Z"


@pytest.mark.parametrize("text", ["OB.Cluster.ForceStopRequired", "1bad", "", "a-b c"])
def test_condition_reasons_are_valid_identifiers(text: str) -> None:
    import re

    assert re.fullmatch(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", condition_reason(text))


def test_a_fault_before_anything_else_still_starts_the_request() -> None:
    decision = decisions.fault(typed({}), "WaitingForSecret", "Secret default/x not found", AT, SETTINGS)
    assert wire(decision)["phase"] == "Pending"
    assert wire(decision)["startTime"] == "2026-11-23T12:00:00Z"
    assert wire(decision)["reason"] == "WaitingForSecret"


def test_a_deadline_beyond_datetimes_range_is_never_reached_and_never_raises() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    started = typed({"startTime": "2026-11-01T00:00:00Z"})
    assert decisions.deadline_exceeded(started, 100_000_000_000_000, now) is False
    assert decisions.deadline_exceeded(started, 60, now) is True


def test_acknowledging_a_generation_changes_only_the_generations() -> None:
    status = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1, "reason": "Succeeded"}],
    }
    given = typed(status)
    decision = decisions.acknowledged(given, 2)
    new = wire(decision)
    assert decision.next_step_in is None and decision.events == ()
    assert new["observedGeneration"] == 2 and new["conditions"][0]["observedGeneration"] == 2
    assert {k: v for k, v in new.items() if k not in ("observedGeneration", "conditions")} == {
        "phase": "Succeeded"
    }
    assert given.observed_generation == 1  # the input is not changed
    assert wire(decisions.acknowledged(typed({}), 2)) == {}
