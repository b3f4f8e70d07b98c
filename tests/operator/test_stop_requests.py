"""ObStopRequests end to end: a real `obstop run` process (Kopf) against a real kube-apiserver + etcd (the
session's control plane) and the obshell simulator, all over real HTTP on loopback. Nothing is mocked; obshell is
simulated because no real agent can run here. With $OBSTOP_E2E_KUBECONFIG set, the same tests run against that
cluster instead (tests/e2e has more)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from k8s_tools import as_chart_identity, refused_calls

from obstop.testing.stack import Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

CLUSTERS = 18


@pytest.fixture(scope="module")
def stack(kube_target: dict[str, Any]) -> Iterator[Stack]:
    """A namespace of the session's API server, CLUSTERS independent simulated 3-zone clusters and one controller,
    shared by this module. Each test stops its own cluster, so the tests do not see each other's state."""
    with Stack(clusters=CLUSTERS, stage_seconds=0.1, **kube_target) as s:
        # On the local control plane the controller runs as the chart's ServiceAccount, with only the rights
        # the chart grants (issue 10); against a real cluster (E2E) as the kubeconfig's user.
        user = as_chart_identity(s) if s.control_plane is not None else None
        s.start_controller()
        yield s
        leaks = _password_leaks(s)
        assert not leaks, f"the root password appeared in: {leaks}"
        if user is not None and s.control_plane is not None:
            assert refused_calls(s.control_plane, user) == [], "the chart's RBAC refused a controller call"


_next_cluster = iter(range(CLUSTERS))


@pytest.fixture
def cluster() -> int:
    """A cluster of the shared stack that no other test has touched."""
    return next(_next_cluster)


def _password_leaks(s: Stack) -> list[str]:
    found = []
    if s.password in s.controller_logs():
        found.append("controller logs")
    for item in s.custom.list_namespaced_custom_object(
        "obshell.oceanbase.com", "v1alpha1", s.namespace, "obstoprequests"
    )["items"]:
        if s.password in json.dumps(item.get("status") or {}):
            found.append(f"status of {item['metadata']['name']}")
    if any(s.password in (e.message or "") for e in s.core.list_namespaced_event(s.namespace).items):
        found.append("events")
    return found


def _stops_for(s: Stack, cluster: int) -> list[Any]:
    name = s.sim.clusters[cluster].name
    return [r for r in s.sim.stops() if r.cluster == name]


@pytest.mark.parametrize(
    ("scope", "mode", "max_stage"),
    [
        ("GLOBAL", "force", 5),
        ("GLOBAL", "terminate", 6),
        ("ZONE", "immediate", 6),
        ("SERVER", "force", 5),
        ("SERVER", "immediate", 6),
    ],
)
def test_each_scope_and_mode_succeeds_with_exactly_one_stop(
    stack: Stack, cluster: int, scope: str, mode: str, max_stage: int
) -> None:
    agents = [a.address for a in stack.sim.clusters[cluster].agents]
    targets = {"GLOBAL": [], "ZONE": ["zone2"], "SERVER": [agents[2]]}[scope]
    name = f"{scope.lower()}-{mode}"
    stack.create(
        stop_request(
            name,
            agents[0],
            scope=scope,
            targets=targets,
            force=mode == "force",
            terminate=mode == "terminate",
        )
    )
    status = stack.wait_for(name, timeout=60)

    assert status["phase"] == "Succeeded", status
    assert status["dag"]["state"] == "SUCCEED" and status["dag"]["name"] == "Stop OB"
    assert status["dag"]["maxStage"] == max_stage and status["progress"] == f"{max_stage}/{max_stage}"
    assert status["completionTime"] >= status["startTime"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert (
        conditions["Ready"] == "True" and conditions["Complete"] == "True" and conditions["Failed"] == "False"
    )
    stops = _stops_for(stack, cluster)
    assert len(stops) == 1 and stops[0].dag_id == status["dag"]["id"]
    assert stops[0].params["scope"] == {"type": scope, "target": targets}
    assert stops[0].params["forcePassDag"] == {"id": []}
    # Kopf posts events in the background, after the status patch: the Succeeded event may come a moment later.
    wait_until(
        lambda: {"Submitted", "Succeeded"} <= {e["reason"] for e in stack.events(name)}, 10, "the events"
    )


def test_failed_dag_reports_the_failing_node_and_log(stack: Stack, cluster: int) -> None:
    agent = stack.agent(cluster)
    stack.sim.faults.fail_stop(
        "Wait for all agents to execute tasks successfully", "Sim.Kill.Failed", "kill -9 refused", agent=agent
    )
    stack.create(stop_request("fails-at-node-4", agent, force=True))
    status = stack.wait_for("fails-at-node-4", timeout=60)

    assert status["phase"] == "Failed"
    assert status["reason"] == "Sim.Kill.Failed"
    assert "'Wait for all agents to execute tasks successfully'" in status["message"]
    assert "ERROR: [Sim.Kill.Failed]: kill -9 refused" in status["message"]
    assert status["dag"]["failedNode"] == "Wait for all agents to execute tasks successfully"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Failed"] == "True"
    # Kopf posts events in the background, after the status patch: the Failed event may come a moment later.
    wait_until(
        lambda: "Failed" in [e["reason"] for e in stack.events("fails-at-node-4")], 10, "a Failed event"
    )


def test_validation_error_from_obshell_fails_the_request(stack: Stack, cluster: int) -> None:
    """A zone the agent does not know: an automatic request's pre-check asks only for the locks, and obshell
    refuses the POST with OB.Zone.NotExist before it creates a DAG (a dry run names it before any POST:
    tests/operator/test_precheck_approval.py)."""
    stack.create(
        stop_request("no-such-zone", stack.agent(cluster), scope="ZONE", targets=["zone9"], terminate=True)
    )
    status = stack.wait_for("no-such-zone", timeout=30)
    assert status["phase"] == "Failed"
    assert status["reason"] == "OB.Zone.NotExist"
    assert "zone9" in status["message"] and "nothing was stopped" in status["message"], status["message"]
    assert "dag" not in status and status["precheck"]["checks"] == "Locks", status
    assert [r.error for r in _stops_for(stack, cluster)] == ["OB.Zone.NotExist"]  # refused, no DAG


def test_wrong_password_fails_without_showing_it(stack: Stack, cluster: int) -> None:
    stack.put_secret(stack.namespace, "wrong-root", {"password": "not-the-password"})
    stack.create(stop_request("wrong-password", stack.agent(cluster), force=True, secret="wrong-root"))
    status = stack.wait_for("wrong-password", timeout=30)
    assert status["phase"] == "Failed"
    assert status["reason"] == "Security.Authentication.IncorrectOceanbasePassword"
    assert "passwordSecretRef" in status["message"]
    assert "not-the-password" not in json.dumps(status) + stack.controller_logs()
    assert _stops_for(stack, cluster) == [] or all(not r.landed for r in _stops_for(stack, cluster))


def test_missing_secret_waits_then_recovers(stack: Stack, cluster: int) -> None:
    stack.create(stop_request("late-secret", stack.agent(cluster), force=True, secret="late-root"))
    waiting = stack.wait_for("late-secret", lambda s: "lastError" in s, timeout=30)
    assert waiting["phase"] == "Pending"
    assert f"Secret {stack.namespace}/late-root not found" in waiting["lastError"]
    assert waiting["reason"] == "WaitingForSecret"

    stack.put_secret(stack.namespace, "late-root", {"wrong-key": stack.password})
    missing_key = stack.wait_for("late-secret", lambda s: "has no key" in s.get("lastError", ""), timeout=30)
    assert f"Secret {stack.namespace}/late-root has no key 'password'" in missing_key["lastError"]

    stack.put_secret(stack.namespace, "late-root", {"password": stack.password})
    status = stack.wait_for("late-secret", timeout=60)
    assert status["phase"] == "Succeeded"
    assert "lastError" not in status
    assert len(_stops_for(stack, cluster)) == 1


def test_lock_conflict_then_force_pass_dag(stack: Stack, cluster: int) -> None:
    agent = stack.agent(cluster)
    # A terminate stop whose minor freeze fails leaves every agent locked by its sub-DAGs (that node does not
    # pass them, fact sheet §3.4); the next stop fails at node 2 and the holder is named in node 1's logs.
    stack.sim.faults.fail_stop("Minor freeze before stop server", "Sim.Freeze.Failed", "timeout", agent=agent)
    stack.create(stop_request("abandoned", agent, terminate=True))
    abandoned = stack.wait_for("abandoned", timeout=60)
    assert abandoned["phase"] == "Failed"
    holder = abandoned["dag"]["id"]

    stack.create(stop_request("blocked", agent, force=True))
    blocked = stack.wait_for("blocked", timeout=60)
    assert blocked["phase"] == "Failed"
    assert f'forcePassDag: ["{holder}"]' in blocked["message"]

    stack.create(stop_request("unblocked", agent, force=True, force_pass_dag=[holder]))
    unblocked = stack.wait_for("unblocked", timeout=60)
    assert unblocked["phase"] == "Succeeded", unblocked
    assert _stops_for(stack, cluster)[-1].params["forcePassDag"] == {"id": [holder]}


def test_lost_answer_is_found_on_the_agent_not_sent_again(stack: Stack, cluster: int) -> None:
    agent = stack.agent(cluster)
    stack.sim.faults.drop_responses(agent=agent, times=1)
    stack.create(stop_request("lost-answer", agent, force=True))
    status = stack.wait_for("lost-answer", timeout=60)
    assert status["phase"] == "Succeeded"
    stops = _stops_for(stack, cluster)
    assert len(stops) == 1 and stops[0].dropped and stops[0].dag_id == status["dag"]["id"]


def test_transient_errors_are_retried_and_shown(stack: Stack, cluster: int) -> None:
    agent = stack.agent(cluster)
    stack.sim.faults.error_burst(3, route="/api/v1/ob/stop", agent=agent)
    stack.create(stop_request("flaky-agent", agent, force=True))
    status = stack.wait_for("flaky-agent", timeout=60)
    assert status["phase"] == "Succeeded"
    assert status["attempts"] >= 3
    assert len([r for r in _stops_for(stack, cluster) if r.landed]) == 1


def test_deadline_fails_a_request_that_runs_too_long(stack: Stack, cluster: int) -> None:
    agent = stack.agent(cluster)
    stack.sim.faults.delay(30, route="/api/v1/task/dag", agent=agent)
    try:
        stack.create(stop_request("too-slow", agent, force=True, deadline=2))
        status = stack.wait_for("too-slow", timeout=60)
    finally:
        stack.sim.faults.clear()
    assert status["phase"] == "Failed"
    assert status["reason"] == "DeadlineExceeded"
    assert "activeDeadlineSeconds=2" in status["message"]


def test_invalid_requests_are_refused_at_admission(stack: Stack, cluster: int) -> None:
    from kubernetes.client.exceptions import ApiException

    bad = stop_request("bad-global", stack.agent(cluster))  # GLOBAL without force or terminate
    with pytest.raises(ApiException) as refused:
        stack.create(bad)
    assert refused.value.status == 422
    assert "force" in refused.value.body and "terminate" in refused.value.body

    stack.create(
        stop_request("immutable", stack.agent(cluster), scope="ZONE", targets=["zone1"], terminate=True)
    )
    with pytest.raises(ApiException) as changed:
        stack.custom.patch_namespaced_custom_object(
            "obshell.oceanbase.com",
            "v1alpha1",
            stack.namespace,
            "obstoprequests",
            "immutable",
            {"spec": {"force": True, "terminate": False}},
        )
    assert changed.value.status == 422 and "immutable" in changed.value.body
    assert stack.wait_for("immutable", timeout=60)["phase"] == "Succeeded"


def test_controller_restart_mid_dag_resumes_without_a_second_stop(kube_target: dict[str, Any]) -> None:
    with Stack(stage_seconds=0.5, **kube_target) as s:
        s.start_controller()
        s.create(stop_request("restart", s.agent(), terminate=True))
        s.wait_for("restart", lambda st: st.get("phase") == "Running" and st["dag"]["stage"] >= 2, timeout=60)
        s.stop_controller(kill=True)  # SIGKILL: no chance to clean up
        s.start_controller()
        status = s.wait_for("restart", timeout=60)
        assert status["phase"] == "Succeeded"
        assert len(s.sim.stops()) == 1


def test_killed_between_recording_and_status_still_one_stop(kube_target: dict[str, Any]) -> None:
    """SIGKILL right after the stop landed: the DAG id never reached status, the restarted controller finds it."""
    with Stack(stage_seconds=0.5, **kube_target) as s:
        s.start_controller()
        s.sim.faults.delay(3, route="/api/v1/ob/stop")  # the stop lands at once, its answer comes 3 s later
        s.create(stop_request("crash-after-post", s.agent(), force=True))
        deadline_stops = s.wait_for("crash-after-post", lambda st: "submission" in st, timeout=30)
        assert "dag" not in deadline_stops
        wait_until(s.sim.stops, 10, "the stop lands")
        assert len(s.sim.stops()) == 1
        s.stop_controller(kill=True)
        s.sim.faults.clear()
        s.start_controller()
        status = s.wait_for("crash-after-post", timeout=60)
        assert status["phase"] == "Succeeded"
        assert len(s.sim.stops()) == 1


def test_delete_while_controller_is_down_does_not_hang(kube_target: dict[str, Any]) -> None:
    with Stack(**kube_target) as s:
        s.start_controller()
        s.create(stop_request("to-delete", s.agent(), force=True))
        s.wait_for("to-delete", timeout=60)
        assert not s.get("to-delete")["metadata"].get("finalizers")
        s.stop_controller()
        s.delete("to-delete")
        from kubernetes.client.exceptions import ApiException

        with pytest.raises(ApiException) as gone:
            s.get("to-delete")
        assert gone.value.status == 404


def test_two_requests_racing_on_one_cluster_never_share_a_dag(stack: Stack, cluster: int) -> None:
    """Created together against the same agent: each sends its own stop; obshell lets one win (the other fails
    on the agents' locks or on the stopped observer), and neither reports the other's DAG as its own."""
    agent = stack.agent(cluster)
    stack.create(stop_request("race-a", agent, terminate=True))
    stack.create(stop_request("race-b", agent, terminate=True))
    a, b = stack.wait_for("race-a", timeout=60), stack.wait_for("race-b", timeout=60)
    assert sorted([a["phase"], b["phase"]]) == ["Failed", "Succeeded"]
    winner, loser = (a, b) if a["phase"] == "Succeeded" else (b, a)
    assert loser.get("dag", {}).get("id") != winner["dag"]["id"]
    assert loser["reason"] in ("Task.SubDag.NotAllCreated", "OB.Cluster.ForceStopRequired"), loser
    assert len([r for r in _stops_for(stack, cluster) if r.params.get("terminate")]) == 2


def test_a_request_past_its_not_after_is_never_begun(stack: Stack, cluster: int) -> None:
    """A request re-created long after its stop (a GitOps sync after the CRD was deleted, a restore) must not stop
    the cluster again: past spec.notAfter it fails as Expired before any call to the agent."""
    agent = stack.agent(cluster)
    stale = stop_request("resurrected", agent, force=True)
    stale["spec"]["notAfter"] = "2026-01-01T00:00:00Z"
    stack.create(stale)
    status = stack.wait_for("resurrected", timeout=30)
    assert status["phase"] == "Failed" and status["reason"] == "Expired", status
    assert "spec.notAfter (2026-01-01T00:00:00Z) has passed" in status["message"]
    assert "submission" not in status and "dag" not in status
    assert _stops_for(stack, cluster) == []
    assert stack.sim.load()[agent]["times"] == [], "the agent was called"


def test_a_request_before_its_not_after_runs(stack: Stack, cluster: int) -> None:
    from datetime import UTC, datetime, timedelta

    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = stop_request("in-time", stack.agent(cluster), force=True)
    fresh["spec"]["notAfter"] = later
    stack.create(fresh)
    assert stack.wait_for("in-time", timeout=60)["phase"] == "Succeeded"
    assert len(_stops_for(stack, cluster)) == 1
