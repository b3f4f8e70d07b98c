"""The pure parts of follow.py: the merge patch between two statuses, the resourceVersion order, and which
delivered requests have work. (The followers themselves run against the real API server: tests/reliability.)"""

from __future__ import annotations

from typing import Any

from obstop.controller.follow import has_work, kept, not_older, status_changes


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 applied, as kube-apiserver applies a merge patch (a test oracle, not product code)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def test_the_patch_turns_the_old_status_into_the_new_one_nested_keys_included() -> None:
    old = {
        "phase": "Submitted",
        "dag": {"id": "1", "stage": 1, "currentNode": "Check"},
        "lastError": "boom",
        "conditions": [{"type": "Ready", "status": "False"}],
    }
    new = {
        "phase": "Running",
        "dag": {"id": "1", "stage": 2},
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "Failed", "status": "False"}],
    }
    patch = status_changes(old, new)
    assert merge(old, patch) == new
    assert patch["dag"] == {"stage": 2, "currentNode": None}, "a nested key that went must be deleted"
    assert patch["lastError"] is None and "conditions" in patch


def test_an_unchanged_status_needs_no_write() -> None:
    status = {"phase": "Running", "dag": {"id": "1", "stage": 3}, "agents": [{"agent": "a:2886"}]}
    assert status_changes(status, {**status, "dag": dict(status["dag"])}) == {}


def test_resource_versions_compare_as_the_numbers_kube_apiserver_gives() -> None:
    assert not_older("100", "99") and not_older("99", "99")
    assert not not_older("98", "99") and not not_older(None, "1")
    assert not_older("opaque", "opaque") and not not_older("other", "opaque")


def test_work_is_a_live_request_or_an_unacknowledged_reorder_of_a_finished_one() -> None:
    def body(phase: str | None, generation: int = 1, observed: int | None = 1) -> dict[str, Any]:
        status = {"phase": phase, "observedGeneration": observed} if phase else {}
        return {"metadata": {"generation": generation}, "status": status}

    assert has_work(body(None)) and has_work(body("Running")) and has_work(body("AwaitingApproval"))
    for terminal in ("Succeeded", "Failed", "Cancelled", "Validated"):
        assert not has_work(body(terminal))
        assert has_work(body(terminal, generation=2, observed=1)), terminal


def test_a_follower_keeps_the_body_but_its_managed_fields_and_leaves_kopfs_copy_alone() -> None:
    managed = [{"manager": "obstop", "operation": "Update", "fieldsV1": {"f:status": {}}}]
    body: dict[str, Any] = {
        "apiVersion": "obshell.oceanbase.com/v1alpha1",
        "kind": "ObStopRequest",
        "metadata": {
            "name": "s",
            "namespace": "ops",
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": managed,
        },
        "spec": {"scope": {"type": "GLOBAL"}},
        "status": {"phase": "Running"},
    }
    mine = kept(body)
    assert mine == {**body, "metadata": {"name": "s", "namespace": "ops", "uid": "u", "resourceVersion": "7"}}
    assert body["metadata"]["managedFields"] is managed  # Kopf's body is not changed
    assert mine["metadata"] is not body["metadata"]
