"""The controller's pure decisions: status transitions, conditions, explanations, timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from obstop.controller import reconcile
from obstop.controller.reconcile import Step
from obstop.controller.settings import Settings
from obstop.obshell import DagDetail, ObshellApiError, ObshellTransportError

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings()


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


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_steps_follow_the_status() -> None:
    assert reconcile.next_step({}) is Step.RECORD
    assert reconcile.next_step({"phase": "Pending", "submission": {"agent": "a"}}) is Step.SUBMIT
    assert reconcile.next_step({"phase": "Submitted", "dag": {"id": "1"}, "submission": {}}) is Step.POLL
    assert reconcile.next_step({"phase": "Failed", "dag": {"id": "1"}}) is Step.DONE
    assert reconcile.next_step({"phase": "Succeeded"}) is Step.DONE


def test_submission_is_recorded_before_anything_is_sent() -> None:
    agent_now = datetime.fromisoformat("2026-11-23T20:00:07.123456789+08:00")
    decision = reconcile.record_submission({}, "http://10.0.0.1:2886", agent_now, 1, NOW)
    status = decision.status
    assert status["phase"] == "Pending"
    assert status["submission"] == {
        "agent": "http://10.0.0.1:2886",
        "requestedAt": "2026-11-23T12:00:00Z",
        "notBefore": "2026-11-23T20:00:07+08:00",  # the agent's clock, floored to the second
    }
    assert status["startTime"] == "2026-11-23T12:00:00Z"
    assert conditions(status) == {"Ready": "False", "Reconciling": "True"}
    assert decision.delay == 0


def test_submitted_writes_the_dag_and_an_event() -> None:
    pending = reconcile.record_submission({}, "agent", NOW, 1, NOW).status
    decision = reconcile.submitted(pending, dag("READY", 1), 1, NOW, SETTINGS, adopted=False)
    assert decision.status["phase"] == "Submitted"
    assert decision.status["dag"]["id"] == "22130706433028869"
    assert decision.status["dag"]["dagId"] == 9
    assert decision.status["progress"] == "1/5"
    assert [e.reason for e in decision.events] == ["Submitted"]
    assert decision.delay is not None and decision.delay > 0


def test_running_then_success_sets_job_like_conditions() -> None:
    status = reconcile.submitted({}, dag("READY", 1), 1, NOW, SETTINGS, adopted=False).status
    running = reconcile.observed(status, dag("RUNNING", 3), 1, NOW, SETTINGS, stage_seconds=None)
    assert running.status["phase"] == "Running"
    assert [e.reason for e in running.events] == ["Progress"]
    done = reconcile.observed(
        running.status, dag("SUCCEED", 5), 1, NOW + timedelta(seconds=5), SETTINGS, stage_seconds=1
    )
    assert done.delay is None
    assert done.status["phase"] == "Succeeded"
    assert done.status["completionTime"] == "2026-11-23T12:00:05Z"
    assert conditions(done.status) == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Complete": "True",
        "Failed": "False",
    }
    assert all(c["observedGeneration"] == 1 for c in done.status["conditions"])


def test_failed_dag_reports_its_node_and_last_log_line() -> None:
    nodes = [
        node("Inform all agents to prepare to stop observer", "SUCCEED"),
        node(
            "Make sure all agents are ready",
            "FAILED",
            ["INFO: waiting", "ERROR: [Task.SubDag.NotAllCreated]: boom"],
        ),
    ]
    decision = reconcile.observed({}, dag("FAILED", 2, nodes=nodes), 1, NOW, SETTINGS, stage_seconds=None)
    assert decision.status["phase"] == "Failed"
    assert decision.status["reason"] == "Task.SubDag.NotAllCreated"
    assert "'Make sure all agents are ready'" in decision.status["message"]
    assert decision.status["message"].endswith("ERROR: [Task.SubDag.NotAllCreated]: boom")
    assert decision.status["dag"]["failedNode"] == "Make sure all agents are ready"
    ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TaskSubDagNotAllCreated"


def test_lock_conflict_names_the_dag_to_force_pass() -> None:
    log = "ERROR: [Task.SubDag.NotAllCreated]: 127.0.0.1:2886 is under maintenance by DAG [22130706433028861:Stop observer]"
    failed = dag("FAILED", 2, nodes=[node("Make sure all agents are ready", "FAILED", [log])])
    _, message = reconcile.dag_failure(failed)
    assert 'forcePassDag: ["22130706433028861"]' in message


def test_cancelled_dag_is_a_failure_with_its_own_reason() -> None:
    reason, message = reconcile.dag_failure(dag("FAILED", 2, operator="CANCEL"))
    assert reason == "Cancelled" and "cancelled" in message


def test_rolled_back_dag_is_not_a_success() -> None:
    decision = reconcile.observed(
        {}, dag("SUCCEED", 5, operator="ROLLBACK"), 1, NOW, SETTINGS, stage_seconds=None
    )
    assert decision.status["phase"] == "Failed"


def test_transient_fault_keeps_the_phase_and_backs_off() -> None:
    status = reconcile.submitted({}, dag("RUNNING", 2), 1, NOW, SETTINGS, adopted=False).status
    error = ObshellTransportError("GET http://a/api: cannot connect", maybe_delivered=False)
    first = reconcile.fault(status, error, 1, NOW, SETTINGS)
    second = reconcile.fault(first.status, error, 1, NOW, SETTINGS)
    assert first.status["phase"] == second.status["phase"] == "Running"
    assert (first.delay, second.delay) == (1.0, 2.0)
    assert second.status["attempts"] == 2
    assert "cannot connect" in second.status["lastError"]
    assert second.status["reason"] == "AgentUnreachable"
    cleared = reconcile.observed(second.status, dag("RUNNING", 3), 1, NOW, SETTINGS, stage_seconds=None)
    assert "lastError" not in cleared.status and "nextCheckTime" not in cleared.status


def test_backoff_starts_over_after_a_call_that_worked() -> None:
    error = ObshellTransportError("cannot connect", maybe_delivered=False)
    status = reconcile.submitted({}, dag("RUNNING", 2), 1, NOW, SETTINGS, adopted=False).status
    for _ in range(4):
        decision = reconcile.fault(status, error, 1, NOW, SETTINGS)
        status = decision.status
    assert decision.delay == 8.0 and status["consecutiveErrors"] == 4
    status = reconcile.observed(status, dag("RUNNING", 3), 1, NOW, SETTINGS, stage_seconds=None).status
    assert "consecutiveErrors" not in status and status["attempts"] == 4
    again = reconcile.fault(status, error, 1, NOW, SETTINGS)
    assert again.delay == 1.0 and again.status["attempts"] == 5


def test_backoff_is_capped() -> None:
    assert reconcile.backoff(30, SETTINGS) == SETTINGS.retry_max_seconds


def test_permanent_error_explains_bad_credentials() -> None:
    error = ObshellApiError(
        401,
        "Unauthorized: OceanBase password is incorrect",
        err_code="Security.Authentication.IncorrectOceanbasePassword",
        code=10008,
    )
    reason, message = reconcile.permanent_error(error)
    assert reason == "Security.Authentication.IncorrectOceanbasePassword"
    assert "passwordSecretRef" in message


def test_deadline_counts_from_start_time() -> None:
    status = {"startTime": "2026-11-23T11:59:00Z"}
    assert reconcile.deadline_exceeded(status, 30, NOW)
    assert not reconcile.deadline_exceeded(status, 120, NOW)
    assert not reconcile.deadline_exceeded(status, None, NOW)


@pytest.mark.parametrize(
    ("stage_seconds", "in_stage", "expected"),
    [
        (None, 0.0, 1.0),  # pace unknown: look again in a second
        (2.0, 0.5, 1.5),  # expected end of the current stage
        (2.0, 3.0, 0.5),  # overran: a quarter of the pace
        (100.0, 0.0, 5.0),  # capped by poll_max_seconds
        (0.01, 0.0, 0.2),  # floored by poll_min_seconds
    ],
)
def test_poll_delay_follows_the_dag_pace(
    stage_seconds: float | None, in_stage: float, expected: float
) -> None:
    assert reconcile.poll_delay(stage_seconds, in_stage, SETTINGS) == pytest.approx(expected)


def test_condition_transition_time_moves_only_on_change() -> None:
    status: dict[str, Any] = {}
    reconcile.set_condition(status, "Ready", False, "A", "m", 1, NOW)
    reconcile.set_condition(status, "Ready", False, "B", "m2", 1, NOW + timedelta(seconds=9))
    assert status["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    reconcile.set_condition(status, "Ready", True, "C", "m3", 1, NOW + timedelta(seconds=9))
    assert status["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:09Z"


@pytest.mark.parametrize("text", ["OB.Cluster.ForceStopRequired", "1bad", "", "a-b c"])
def test_condition_reasons_are_valid_identifiers(text: str) -> None:
    import re

    assert re.fullmatch(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", reconcile.condition_reason(text))


def test_a_fault_before_anything_else_still_starts_the_request() -> None:
    decision = reconcile.fault({}, "Secret default/x not found", 1, NOW, SETTINGS)
    assert decision.status["phase"] == "Pending"
    assert decision.status["startTime"] == "2026-11-23T12:00:00Z"
    assert decision.status["reason"] == "WaitingForSecret"


def test_a_deadline_beyond_datetimes_range_is_never_reached_and_never_raises() -> None:
    from datetime import UTC, datetime

    from obstop.controller.reconcile import deadline_exceeded

    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert deadline_exceeded({"startTime": "2026-11-01T00:00:00Z"}, 100_000_000_000_000, now) is False
    assert deadline_exceeded({"startTime": "2026-11-01T00:00:00Z"}, 60, now) is True


def test_acknowledging_a_generation_changes_only_the_generations() -> None:
    from obstop.controller.reconcile import acknowledged

    status = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1, "reason": "Succeeded"}],
    }
    new = acknowledged(status, 2)
    assert new.delay is None and new.events == []
    assert new.status["observedGeneration"] == 2 and new.status["conditions"][0]["observedGeneration"] == 2
    assert {k: v for k, v in new.status.items() if k not in ("observedGeneration", "conditions")} == {
        "phase": "Succeeded"
    }
    assert status["observedGeneration"] == 1  # the input is not changed
    assert acknowledged({}, 2).status == {}
