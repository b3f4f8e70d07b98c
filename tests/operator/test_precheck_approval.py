"""The pre-check and the approval gate end to end (issue 14): a real kube-apiserver, the controller as a process
(`obstop run`), obshell simulated over real HTTP, people as static users of the API server.

alice has the chart's `edit` role on ObStopRequests (she requests), bob its `approve` role (he approves): the
ClusterRoles are the chart's own (templates/user-roles.yaml, rendered by helm), and the admission policy is
deploy/policies/, as the chart installs it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from k8s_tools import CHART, tool

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import APPROVALS, GROUP, PLURAL, VERSION, Stack, approval, stop_request

ALICE, BOB = "alice", "bob"
RELEASE = "gate"


@pytest.fixture(scope="module")
def control_plane_with_people() -> Iterator[ControlPlane]:
    with ControlPlane(users={ALICE: ["requesters"], BOB: ["approvers"]}) as cp:
        yield cp


@pytest.fixture(scope="module")
def stack(control_plane_with_people: ControlPlane) -> Iterator[Stack]:
    cp = control_plane_with_people
    with Stack(stage_seconds=0.2, control_plane=cp) as s:
        s.install_approval_policy()
        grant_the_charts_user_roles(s)
        s.start_controller(env={"OBSTOP_PRECHECK_MAX_AGE_SECONDS": "2"})
        yield s


def grant_the_charts_user_roles(s: Stack) -> None:
    rendered = tool(
        "helm",
        "template",
        RELEASE,
        str(CHART),
        "--show-only",
        "templates/user-roles.yaml",
        kubeconfig=s.kubeconfig,
    ).stdout
    roles = [doc for doc in yaml.safe_load_all(rendered) if doc]
    names = {doc["metadata"]["name"] for doc in roles}
    assert names == {f"{RELEASE}-ob-stop-operator-{r}" for r in ("view", "edit", "approve")}, names
    approve = next(doc for doc in roles if doc["metadata"]["name"].endswith("-approve"))
    edit = next(doc for doc in roles if doc["metadata"]["name"].endswith("-edit"))
    # Editors request, admins approve: `approve` is aggregated into admin only, never into edit.
    assert approve["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-admin") == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-edit" not in approve["metadata"]["labels"]
    assert all("obstopapprovals" not in rule["resources"] for rule in edit["rules"])
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(s.k8s)
    for doc in roles:
        doc["metadata"].pop("labels", None)
        try:
            rbac.create_cluster_role(doc)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
    for user, role in ((ALICE, "edit"), (ALICE, "view"), (BOB, "approve"), (BOB, "view")):
        rbac.create_namespaced_role_binding(
            s.namespace,
            {
                "metadata": {"name": f"{user}-{role}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"{RELEASE}-ob-stop-operator-{role}",
                },
                "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
            },
        )


def as_user(s: Stack, user: str, method: str, plural: str, body: dict[str, Any]) -> httpx.Response:
    cp = s.control_plane
    assert cp is not None
    with cp.http(user=user) as http:
        return http.request(
            method, f"{cp.url}/apis/{GROUP}/{VERSION}/namespaces/{s.namespace}/{plural}", json=body
        )


def landed(s: Stack) -> int:
    return len(s.sim.landed_stops())


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_a_dry_run_reports_and_stops_nothing(stack: Stack) -> None:
    before = len(stack.sim.stops())
    created = as_user(
        stack, ALICE, "POST", PLURAL, stop_request("dry", stack.agent(0), force=True, dry_run=True)
    )
    assert created.status_code == 201, created.text
    status = stack.wait_for("dry", timeout=60)
    assert status["phase"] == "Validated" and status["reason"] == "Validated", status
    assert (
        condition(status, "Validated")["status"] == "True" and condition(status, "Ready")["status"] == "True"
    )
    assert "3 zone(s), 3 agent(s)" in status["message"], status["message"]
    assert len(stack.sim.stops()) == before and "submission" not in status
    events = stack.wait_for_events("dry", bool)
    assert {e["reason"] for e in events} == {"Validated"}, events


def test_a_missing_zone_is_refused_before_any_post(stack: Stack) -> None:
    """By the full pre-check of a dry run (an automatic request leaves it to obshell's POST:
    tests/operator/test_stop_requests.py)."""
    before = len(stack.sim.stops())
    stack.create(
        stop_request("nozone", stack.agent(0), scope="ZONE", targets=["zone7"], force=True, dry_run=True)
    )
    status = stack.wait_for("nozone", timeout=60)
    assert status["phase"] == "Failed" and status["reason"] == "TargetNotFound", status
    assert "zone7" in status["message"] and "zone1, zone2, zone3" in status["message"], status["message"]
    assert len(stack.sim.stops()) == before


def test_a_lock_holder_is_named_with_the_exact_force_pass_dag_before_any_post(stack: Stack) -> None:
    # A terminate stop failing in its minor freeze leaves every agent's sub-DAG parked, holding its lock (§3.5).
    stack.sim.faults.fail_stop(
        "Minor freeze before stop server", "OB.Cluster.MinorFreezeTimeout", "slow", agent=stack.agent(0, 1)
    )
    stack.create(stop_request("frozen", stack.agent(0, 1), terminate=True))
    first = stack.wait_for("frozen", timeout=60)
    assert first["phase"] == "Failed", first
    holder = first["dag"]["id"]
    posts = len(stack.sim.stops())
    stack.create(stop_request("blocked", stack.agent(0), force=True))
    status = stack.wait_for("blocked", timeout=60)
    assert status["phase"] == "Failed" and status["reason"] == "LocksHeld", status
    assert f'forcePassDag: ["{holder}"]' in status["message"], status["message"]
    assert {h["mainDagId"] for h in status["precheck"]["lockHolders"]} == {holder}
    assert len(stack.sim.stops()) == posts  # refused before any POST
    stack.create(stop_request("passing", stack.agent(0), force=True, force_pass_dag=[holder]))
    status = stack.wait_for("passing", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert any("already in spec.forcePassDag" in w for w in status["precheck"]["warnings"]), status[
        "precheck"
    ]
    stack.sim.reset()


def test_approval_waits_refuses_the_unauthorised_and_lets_the_approver_through(stack: Stack) -> None:
    before = landed(stack)
    manifest = stop_request(
        "gated", stack.agent(0), scope="SERVER", targets=[stack.agent(0)], force=True, approval="Manual"
    )
    assert as_user(stack, ALICE, "POST", PLURAL, manifest).status_code == 201
    status = stack.wait_for("gated", lambda st: st.get("phase") == "AwaitingApproval", timeout=60)
    assert "pre-check passed" in status["message"] and condition(status, "Validated")["status"] == "True"
    time.sleep(1.5)
    assert stack.get("gated")["status"]["phase"] == "AwaitingApproval" and landed(stack) == before

    # The requester cannot approve (RBAC), even naming herself.
    refused = as_user(stack, ALICE, "POST", APPROVALS, approval("by-alice", "gated", ALICE))
    assert refused.status_code == 403, refused.text
    # The approver cannot approve in someone else's name (the admission policy).
    forged = as_user(stack, BOB, "POST", APPROVALS, approval("forged", "gated", ALICE))
    assert forged.status_code in (403, 422), forged.text
    assert "spec.approvedBy must be your own user name, bob" in forged.text, forged.text
    time.sleep(1)
    assert stack.get("gated")["status"]["phase"] == "AwaitingApproval" and landed(stack) == before

    given = as_user(stack, BOB, "POST", APPROVALS, approval("by-bob", "gated", BOB))
    assert given.status_code == 201, given.text
    status = stack.wait_for("gated", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert status["approval"]["approvedBy"] == BOB and status["approval"]["name"] == "by-bob", status
    assert status["approval"]["approvedAt"] == given.json()["metadata"]["creationTimestamp"]
    assert landed(stack) == before + 1
    stack.wait_for_events(
        "gated", lambda events: {"AwaitingApproval", "Approved"} <= {e["reason"] for e in events}
    )
    stack.sim.reset()


def test_an_approval_after_the_view_went_stale_checks_again(stack: Stack) -> None:
    before = landed(stack)
    stack.create(
        stop_request(
            "stale", stack.agent(0), scope="SERVER", targets=[stack.agent(0)], force=True, approval="Manual"
        )
    )
    status = stack.wait_for("stale", lambda st: st.get("phase") == "AwaitingApproval", timeout=60)
    seen = status["precheck"]
    stack.sim.set_observer(stack.agent(0, 2), running=False)  # the cluster changes under the approver's eyes
    time.sleep(2.5)  # older than OBSTOP_PRECHECK_MAX_AGE_SECONDS=2
    assert as_user(stack, BOB, "POST", APPROVALS, approval("too-late", "stale", BOB)).status_code == 201
    status = stack.wait_for("stale", lambda st: "cluster changed" in (st.get("message") or ""), timeout=60)
    assert status["phase"] == "AwaitingApproval" and landed(stack) == before, status
    assert status["precheck"]["digest"] != seen["digest"] and "INACTIVE" in status["precheck"]["cluster"]
    assert len(status["approval"]["superseded"]) == 1 and "approvedBy" not in status["approval"]
    assert as_user(stack, BOB, "POST", APPROVALS, approval("again", "stale", BOB)).status_code == 201
    status = stack.wait_for("stale", timeout=60)
    assert status["phase"] == "Succeeded" and status["approval"]["name"] == "again", status
    assert landed(stack) == before + 1
    stack.sim.reset()
