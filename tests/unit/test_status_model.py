"""The typed status model (controller/status.py) is the CRD's status schema, field for field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from obstop.controller.resource import Phase
from obstop.controller.status import (
    Approval,
    Condition,
    ConditionType,
    DagStatus,
    LockHolder,
    Precheck,
    RequestStatus,
    Submission,
)

CRD = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "obshell.oceanbase.com_obstoprequests.yaml"


def status_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    return schema


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_status_field_of_the_crd_is_in_the_model_and_back() -> None:
    schema = status_schema()["properties"]
    assert wire_names(RequestStatus) == set(schema)
    assert wire_names(Submission) == set(schema["submission"]["properties"])
    assert wire_names(DagStatus) == set(schema["dag"]["properties"])
    assert wire_names(Condition) == set(schema["conditions"]["items"]["properties"])
    assert wire_names(Precheck) == set(schema["precheck"]["properties"])
    assert wire_names(LockHolder) == set(
        schema["precheck"]["properties"]["lockHolders"]["items"]["properties"]
    )
    assert wire_names(Approval) == set(schema["approval"]["properties"])


def test_the_phases_are_the_crds() -> None:
    assert [p.value for p in Phase] == status_schema()["properties"]["phase"]["enum"]


def test_a_status_round_trips_through_the_wire_form() -> None:
    wire = {
        "phase": "Running",
        "observedGeneration": 2,
        "startTime": "2026-12-01T10:00:00Z",
        "reason": "Running",
        "message": "stage 2/5",
        "progress": "2/5",
        "attempts": 1,
        "submission": {
            "agent": "http://10.0.0.1:2886",
            "requestedAt": "2026-12-01T10:00:01Z",
            "notBefore": "2026-12-01T18:00:00+08:00",
            "receiver": "10.0.0.1:2886",
            "obshellVersion": "4.4.1.0",
        },
        "dag": {"id": "21", "dagId": 1, "name": "Stop OB", "stage": 2, "maxStage": 5, "state": "RUNNING"},
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Running",
                "message": "stage 2/5",
                "observedGeneration": 2,
                "lastTransitionTime": "2026-12-01T10:00:01Z",
            },
            {"type": "SomeoneElses", "status": "Unknown", "reason": "", "message": ""},
        ],
    }
    status = RequestStatus.from_wire(wire)
    assert status.phase is Phase.RUNNING and status.condition(ConditionType.READY) is not None
    back = status.to_wire()
    for dag_default in ("startTime", "endTime", "currentNode", "failedNode", "operator"):
        back["dag"].pop(dag_default)
    assert back == wire
