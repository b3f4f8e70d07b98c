"""The Argo CD health check (deploy/argocd/health.lua), run in Lua 5.1 (the dialect of Argo CD's gopher-lua)
against ObStopRequests whose status comes from the controller's own decision functions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lupa.lua51
import pytest
import yaml

from obstop.controller import decisions
from obstop.controller.decisions import At
from obstop.controller.status import RequestStatus
from obstop.testing.stack import manifest

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "deploy" / "argocd" / "health.lua"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the check as Argo CD does: `obj` is a global, the chunk returns the health table."""
    lua = lupa.lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return {key: str(value) for key, value in result.items()}


def request(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj = manifest(
        "stop-zone1", {"scope": {"type": "ZONE", "target": ["zone1"]}}, namespace="ops", generation=generation
    )
    if status is not None:
        obj["status"] = status
    return obj


def test_a_request_without_status_is_progressing() -> None:
    assert health(request(None))["status"] == "Progressing"
    assert health(request({}))["status"] == "Progressing"


def test_pending_as_the_controller_writes_it_is_progressing() -> None:
    status = decisions.begin(RequestStatus(), At(1, NOW)).status.to_wire()
    assert "message" not in status  # only the Ready condition says what is happening
    assert health(request(status)) == {
        "status": "Progressing",
        "message": "Pending: waiting to submit the stop to obshell",
    }


@pytest.mark.parametrize("phase", ["Submitted", "Running"])
def test_submitted_and_running_are_progressing_with_the_stage(phase: str) -> None:
    status = {
        "phase": phase,
        "progress": "3/5",
        "message": "stage 3/5: Stop observer",
        "observedGeneration": 1,
    }
    assert health(request(status)) == {
        "status": "Progressing",
        "message": f"{phase} (stage 3/5): stage 3/5: Stop observer",
    }


def test_succeeded_is_healthy() -> None:
    status = decisions.begin(RequestStatus(), At(1, NOW)).status.to_wire()
    status.update(phase="Succeeded", message="stop DAG 21 succeeded (5/5 stages)")
    assert health(request(status)) == {"status": "Healthy", "message": "stop DAG 21 succeeded (5/5 stages)"}


def test_failed_is_degraded_with_the_controllers_reason_and_message() -> None:
    message = "obshell refused the stop: OB.Cluster.ForceStopRequired: The current observer is not available"
    status = decisions.failed(
        RequestStatus(), "OB.Cluster.ForceStopRequired", message, At(1, NOW)
    ).status.to_wire()
    assert status["phase"] == "Failed"
    assert health(request(status)) == {
        "status": "Degraded",
        "message": f"OB.Cluster.ForceStopRequired: {message}",
    }


def test_failed_without_a_message_still_says_why() -> None:
    assert health(request({"phase": "Failed", "reason": "DeadlineExceeded"})) == {
        "status": "Degraded",
        "message": "DeadlineExceeded",
    }


def test_a_status_of_an_older_generation_is_progressing() -> None:
    status = {"phase": "Succeeded", "observedGeneration": 1}
    assert health(request(status, generation=2))["status"] == "Progressing"


def test_a_dry_run_is_healthy_and_awaiting_approval_is_suspended() -> None:
    from obstop.controller import precheck
    from obstop.controller.resource import parse_spec
    from obstop.obshell import AgentInfo

    raw = {
        "obshell": {"address": "10.0.0.1", "passwordSecretRef": {"name": "pw"}},
        "scope": {"type": "GLOBAL"},
    }
    verdict = precheck.evaluate(
        parse_spec({**raw, "force": True}), precheck.Survey(AgentInfo(ip="10.0.0.1", port=2886)), NOW
    )
    dry = precheck.checked(
        RequestStatus(), parse_spec({**raw, "force": True, "dryRun": True}), verdict, At(1, NOW), poll=5
    )
    assert not isinstance(dry, RequestStatus)
    result = health(request(dry.status.to_wire()))
    assert result["status"] == "Healthy" and result["message"].startswith("dry run, nothing was stopped"), (
        result
    )
    manual = precheck.checked(
        RequestStatus(), parse_spec({**raw, "force": True, "approval": "Manual"}), verdict, At(1, NOW), poll=5
    )
    assert not isinstance(manual, RequestStatus)
    result = health(request(manual.status.to_wire()))
    assert result["status"] == "Suspended" and "waiting for an ObStopApproval" in result["message"], result


def test_an_unknown_phase_is_unknown() -> None:
    assert health(request({"phase": "Paused"}))["status"] == "Unknown"


def test_docs_gitops_snippet_is_the_same_lua() -> None:
    """docs/gitops.md shows the argocd-cm entry; it must carry exactly deploy/argocd/health.lua."""
    text = (ROOT / "docs" / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    config_maps = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]
    (argocd_cm,) = [doc for doc in config_maps if doc.get("metadata", {}).get("name") == "argocd-cm"]
    key = "resource.customizations.health.obshell.oceanbase.com_ObStopRequest"
    assert argocd_cm["data"][key] == HEALTH_LUA.read_text()


def _conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"] if c["observedGeneration"] == 1}


def test_flux_kstatus_conditions_are_as_docs_gitops_says() -> None:
    """docs/gitops.md tells Flux users which conditions each phase carries; hold it to the controller's code."""
    text = (ROOT / "docs" / "gitops.md").read_text()
    rows = {
        cells[0]: dict(
            zip(["Ready", "Reconciling", "Stalled", "Complete", "Failed"], cells[1:6], strict=True)
        )
        for line in text.splitlines()
        if line.startswith("| ")
        and (cells := [c.strip() for c in line.strip("|").split("|")])[0]
        in ("Pending / Submitted / Running", "Failed")
    }
    expected = {name: {k: v for k, v in row.items() if v != "-"} for name, row in rows.items()}
    pending = decisions.begin(RequestStatus(), At(1, NOW)).status.to_wire()
    assert _conditions(pending) == expected["Pending / Submitted / Running"]
    failed = decisions.failed(
        RequestStatus.from_wire(pending), "DeadlineExceeded", "not finished in time", At(1, NOW)
    ).status.to_wire()
    assert _conditions(failed) == expected["Failed"]


ACKNOWLEDGED = "obshell.oceanbase.com/failure-acknowledged"


def test_an_acknowledged_failure_is_a_healthy_record_that_still_says_why() -> None:
    """A Failed request kept in Git as the record of a stop keeps its Application Degraded; annotated, it is
    Healthy, and its message still says it failed and why."""
    message = "stop DAG 21 failed at 'Stop observer': ERROR: [Agent.NoMaster] no master"
    status = decisions.failed(RequestStatus(), "Agent.NoMaster", message, At(1, NOW)).status.to_wire()
    obj = request(status)
    obj["metadata"]["annotations"] = {ACKNOWLEDGED: "true"}
    assert health(obj) == {
        "status": "Healthy",
        "message": f"Failed (acknowledged): Agent.NoMaster: {message}",
    }


@pytest.mark.parametrize("value", ["false", "", "yes", None])
def test_only_true_acknowledges_a_failure(value: str | None) -> None:
    obj = request(
        decisions.failed(
            RequestStatus(), "DeadlineExceeded", "not finished in time", At(1, NOW)
        ).status.to_wire()
    )
    obj["metadata"]["annotations"] = {} if value is None else {ACKNOWLEDGED: value}
    assert health(obj)["status"] == "Degraded"


@pytest.mark.parametrize("phase", ["Pending", "Submitted", "Running"])
def test_the_annotation_does_not_hide_a_stop_in_progress(phase: str) -> None:
    obj = request({"phase": phase, "observedGeneration": 1})
    obj["metadata"]["annotations"] = {ACKNOWLEDGED: "true"}
    assert health(obj)["status"] == "Progressing"


@pytest.mark.parametrize(
    ("reason", "expected"), [("CancelledOnRequest", "Healthy"), ("DeadlineCancelled", "Degraded")]
)
def test_a_cancel_on_request_is_healthy_and_at_the_deadline_degraded(reason: str, expected: str) -> None:
    """Someone asked for the cancel: no alarm. The deadline cancelled it: the stop did not happen in time."""
    from obstop.controller.status import Reason

    message = "stop DAG 21 cancelled at stage 2/5; observers already stopped: none"
    status = decisions.cancelled(RequestStatus(), Reason(reason), message, At(1, NOW)).status.to_wire()
    result = health(request(status))
    assert result["status"] == expected
    assert result["message"] == f"Cancelled: {message}"
