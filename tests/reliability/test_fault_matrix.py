"""Fault matrix: the request keeps working and nothing is lost while the agent, the network or the Kubernetes
API misbehave for real (refused connections, slow and dropped answers, 5xx, key rotation, clock skew, refused
writes, cut watches, a changed Secret). Each case states its expected outcome, checks what the status tells a
person, and checks the simulator's record: never a second stop.

One real `obstop run` serves the whole module; each test has its own simulated cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import Clusters, conditions, landed_on, stops_on

from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(120)

CLUSTERS = 20
STOP_ROUTE = "/api/v1/ob/stop"
DAG_ROUTE = "/api/v1/task/dag/2"  # GETs of local DAGs (generic ids start with 2)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack(clusters=CLUSTERS, stage_seconds=0.15) as s:
        s.start_controller()
        yield s


@pytest.fixture(scope="module")
def clusters() -> Clusters:
    return Clusters(CLUSTERS)


@pytest.fixture
def cluster(stack: Stack, clusters: Clusters) -> Iterator[int]:
    index = clusters.take()
    yield index
    stack.sim.faults.clear()
    stack.sim.set_clock_offset(0)
    assert stack.api is not None
    stack.api.clear_faults()
    for agent in stack.sim.clusters[index].agents:
        stack.sim.agent_up(agent.address)
    assert stack.controller is not None and stack.controller.poll() is None, "the controller crashed"


def _slow_stages(stack: Stack, cluster: int, seconds: float = 0.6) -> None:
    """Make this cluster's DAGs take `seconds` per stage, so a fault can be injected while one runs."""
    stack.sim.clusters[cluster].stage_seconds = seconds


def _still_running(stack: Stack, dag_id: str) -> bool:
    """The DAG has not finished on the agent (so the fault really hit a running request)."""
    return stack.sim.dag_wire(dag_id, details=False)["state"] not in ("SUCCEED", "FAILED")


def _submitted(status: dict[str, Any]) -> bool:
    """The controller knows the DAG (Submitted or Running; it may not poll again before the DAG should end)."""
    return bool((status.get("dag") or {}).get("id"))


def _seen(stack: Stack, name: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    return stack.wait_for(name, predicate, timeout=timeout)


def _succeeded_once(stack: Stack, name: str, cluster: int) -> dict[str, Any]:
    status = stack.wait_for(name, timeout=60)
    assert status["phase"] == "Succeeded", status
    assert "lastError" not in status and conditions(status)["Ready"] == "True"
    landed = landed_on(stack, cluster)
    assert len(landed) == 1 and landed[0].dag_id == status["dag"]["id"], [r.to_wire() for r in landed]
    return status


# ------------------------------------------------------------------------------------------------------
# obshell side


def test_agent_refusing_connections_at_submission_then_recovering(stack: Stack, cluster: int) -> None:
    """Expected: Pending with AgentUnreachable / 'cannot connect' while it is down; Succeeded once it is back."""
    agent = stack.agent(cluster)
    stack.sim.agent_down(agent)
    stack.create(stop_request("agent-down-at-submit", agent, force=True))
    waiting = _seen(stack, "agent-down-at-submit", lambda s: "lastError" in s)
    assert waiting["phase"] == "Pending" and waiting["reason"] == "AgentUnreachable"
    assert "cannot connect" in waiting["lastError"] and "retrying in" in waiting["message"]
    assert conditions(waiting)["Ready"] == "False" and conditions(waiting)["Reconciling"] == "True"
    _seen(stack, "agent-down-at-submit", lambda s: s.get("attempts", 0) >= 2)
    assert stops_on(stack, cluster) == []

    stack.sim.agent_up(agent)
    status = _succeeded_once(stack, "agent-down-at-submit", cluster)
    assert status["attempts"] >= 2


def test_dag_owner_down_mid_dag_and_back(stack: Stack, cluster: int) -> None:
    """The agent that owns the DAG goes away while it runs. Expected: still Submitted or Running, lastError says the agent
    is unreachable; once it is back the same DAG is followed to Succeeded."""
    agent = stack.agent(cluster)
    _slow_stages(stack, cluster)
    stack.create(stop_request("owner-down", agent, terminate=True))
    running = _seen(stack, "owner-down", _submitted)
    stack.sim.agent_down(agent)
    assert _still_running(stack, running["dag"]["id"])
    down = _seen(stack, "owner-down", lambda s: "lastError" in s)
    assert down["phase"] in ("Submitted", "Running") and down["dag"]["id"] == running["dag"]["id"]
    assert down["reason"] == "AgentUnreachable" and "cannot connect" in down["lastError"]

    stack.sim.agent_up(agent)
    status = _succeeded_once(stack, "owner-down", cluster)
    assert status["dag"]["id"] == running["dag"]["id"]


def test_5xx_bursts_at_every_step(stack: Stack, cluster: int) -> None:
    """500s on every route (time, stop, DAG) in turn. Expected: retried with the error shown, then Succeeded."""
    agent = stack.agent(cluster)
    stack.sim.faults.error_burst(2, route="/api/v1/time", agent=agent)
    stack.sim.faults.error_burst(2, route=STOP_ROUTE, agent=agent)
    stack.sim.faults.error_burst(2, route=DAG_ROUTE, agent=agent)
    stack.create(stop_request("burst", agent, force=True))
    shown = _seen(stack, "burst", lambda s: "lastError" in s)
    assert shown["reason"] == "Common.Unexpected" and "Internal Server Error" in shown["lastError"]
    status = _succeeded_once(stack, "burst", cluster)
    assert status["attempts"] >= 6
    assert len(stops_on(stack, cluster)) == 1  # the two refused POSTs never reached the stop handler


def test_stop_answer_slower_than_the_timeout(stack: Stack, cluster: int) -> None:
    """The stop lands but its answer comes after the client's 3 s timeout. Expected: 'timed out' is shown, the
    DAG is then found on the agent (not sent again) and followed to Succeeded."""
    agent = stack.agent(cluster)
    stack.sim.faults.delay(5, route=STOP_ROUTE, agent=agent, method="POST", times=1)
    stack.create(stop_request("slow-answer", agent, force=True))
    timed_out = _seen(stack, "slow-answer", lambda s: "timed out" in s.get("lastError", ""))
    assert timed_out["reason"] == "AgentUnreachable" and "dag" not in timed_out
    _succeeded_once(stack, "slow-answer", cluster)
    assert len(stops_on(stack, cluster)) == 1
    assert any("found on the agent" in e["message"] for e in stack.events("slow-answer"))


def test_connection_dropped_after_the_stop_and_after_the_lookup(stack: Stack, cluster: int) -> None:
    """The agent executes the stop and closes the connection without an answer; the first lookup for the
    DAG loses its answer too. Expected: it looks again (never sends again), adopts the DAG, Succeeded."""
    agent = stack.agent(cluster)
    stack.sim.faults.drop_responses(agent=agent, times=1)
    stack.sim.faults.drop_responses(
        route="/api/v1/task/dag/agent/unfinish", agent=agent, method="GET", times=1
    )
    stack.create(stop_request("dropped", agent, force=True))
    dropped = _seen(stack, "dropped", lambda s: "connection failed" in s.get("lastError", ""))
    assert dropped["reason"] == "AgentUnreachable"
    _succeeded_once(stack, "dropped", cluster)
    assert len(stops_on(stack, cluster)) == 1 and stops_on(stack, cluster)[0].dropped


def test_rsa_key_rotated_mid_request(stack: Stack, cluster: int) -> None:
    """Every agent of the cluster gets a new key pair while the DAG runs. Expected: the client re-fetches the
    key and carries on; Succeeded with no error left and one stop."""
    agent = stack.agent(cluster)
    _slow_stages(stack, cluster)
    stack.create(stop_request("rotated", agent, terminate=True))
    running = _seen(stack, "rotated", _submitted)
    for each in stack.sim.clusters[cluster].agents:
        stack.sim.rotate_key(each.address)
    assert _still_running(stack, running["dag"]["id"])
    _succeeded_once(stack, "rotated", cluster)


def test_clock_skew_beyond_the_header_lifetime(stack: Stack, cluster: int) -> None:
    """The agent's clock is 5 minutes ahead: every signed header has expired on arrival. Expected: Failed with
    a message that names the clocks (not the password), no stop landed, the controller still running."""
    agent = stack.agent(cluster)
    stack.sim.set_clock_offset(300)
    stack.create(stop_request("skewed", agent, force=True))
    status = stack.wait_for("skewed", timeout=30)
    assert status["phase"] == "Failed", status
    assert status["reason"] == "Security.Authentication.Expired"
    assert "clock" in status["message"] and "passwordSecretRef" not in status["message"]
    assert landed_on(stack, cluster) == []


def test_agent_clock_behind_is_harmless(stack: Stack, cluster: int) -> None:
    """The agent's clock is an hour behind ours. Expected: Succeeded, one stop (skew within the lifetime's
    direction does not matter; the submission's notBefore is the agent's own clock)."""
    stack.sim.set_clock_offset(-3600)
    stack.create(stop_request("behind", stack.agent(cluster), force=True))
    _succeeded_once(stack, "behind", cluster)


def test_dag_that_never_finishes_hits_the_deadline(stack: Stack, cluster: int) -> None:
    """The DAG is never picked up by the agent's engine. Expected: Failed DeadlineExceeded naming the DAG and
    its state; the stop was sent once and never again."""
    stack.sim.clusters[cluster].stage_seconds = 3600.0  # the engine never moves this cluster's DAGs on
    stack.create(stop_request("never-ends", stack.agent(cluster), force=True, deadline=3))
    status = stack.wait_for("never-ends", timeout=30)
    assert status["phase"] == "Failed" and status["reason"] == "DeadlineExceeded", status
    assert "activeDeadlineSeconds=3" in status["message"] and status["dag"]["id"] in status["message"]
    assert conditions(status)["Failed"] == "True"
    assert len(stops_on(stack, cluster)) == 1


# ------------------------------------------------------------------------------------------------------
# Kubernetes side


def test_conflicts_on_status_writes(stack: Stack, cluster: int) -> None:
    """The API server answers 409 Conflict to the first status writes. Kopf drops a step's outcome on a refused
    patch and would never call the handler again; the controller's waker touches the overdue request
    (OBSTOP_STALL_SECONDS=3 in Stack). Expected: Succeeded, one stop."""
    assert stack.api is not None
    stack.api.inject(409, verb="patch", resource="obstoprequests", name="conflicts", times=3)
    stack.create(stop_request("conflicts", stack.agent(cluster), force=True))
    status = stack.wait_for("conflicts", timeout=20)
    assert status["phase"] == "Succeeded"
    assert len(stack.api.calls(verb="patch", resource="obstoprequests", name="conflicts")) > 3


def test_api_server_5xx(stack: Stack, cluster: int) -> None:
    """500/503 on status writes and on reading the Secret. Expected: the Secret error is shown while it lasts,
    then Succeeded with one stop."""
    assert stack.api is not None
    stack.api.inject(503, verb="patch", resource="obstoprequests", name="api-5xx", times=2)
    stack.api.inject(500, verb="get", resource="secrets", times=3)
    stack.create(stop_request("api-5xx", stack.agent(cluster), force=True))
    _succeeded_once(stack, "api-5xx", cluster)


def test_watch_streams_cut_repeatedly(stack: Stack, cluster: int) -> None:
    """Every watch stream is cut at each stage. Expected: Succeeded, one stop."""
    assert stack.api is not None
    agent = stack.agent(cluster)
    _slow_stages(stack, cluster, 0.4)
    stack.create(stop_request("cut-watch", agent, terminate=True))
    cuts = 0
    for status in stack.watch("cut-watch", timeout=60):  # cut after every status change the controller makes
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        cuts += stack.api.cut_watches()
    assert cuts >= 3
    _succeeded_once(stack, "cut-watch", cluster)


def test_secret_deleted_mid_request_then_restored(stack: Stack, cluster: int) -> None:
    """The Secret disappears while the DAG runs. Expected: still Running with lastError naming the Secret;
    once it is back, Succeeded with the same DAG and one stop."""
    agent = stack.agent(cluster)
    secret = f"root-{cluster}"
    stack.put_secret(stack.namespace, secret, {"password": stack.password})
    _slow_stages(stack, cluster)
    stack.create(stop_request("secret-gone", agent, terminate=True, secret=secret))
    running = _seen(stack, "secret-gone", _submitted)
    stack.core.delete_namespaced_secret(secret, stack.namespace)
    assert _still_running(stack, running["dag"]["id"])
    waiting = _seen(stack, "secret-gone", lambda s: "lastError" in s)
    assert waiting["phase"] in ("Submitted", "Running") and waiting["reason"] == "WaitingForSecret"
    assert f"Secret default/{secret} not found" in waiting["lastError"]

    stack.put_secret(stack.namespace, secret, {"password": stack.password})
    _succeeded_once(stack, "secret-gone", cluster)


def test_secret_changed_to_a_wrong_password_mid_request(stack: Stack, cluster: int) -> None:
    """Someone puts a wrong password in the Secret while the DAG runs. The stop is already under way at the
    agent, so failing the request would misreport it. Expected: still Submitted or Running, lastError saying obshell refused
    the credentials and pointing at the Secret; once the Secret is fixed, Succeeded; the stop is never sent
    again."""
    agent = stack.agent(cluster)
    secret = f"root-{cluster}"
    stack.put_secret(stack.namespace, secret, {"password": stack.password})
    _slow_stages(stack, cluster)
    stack.create(stop_request("secret-changed", agent, terminate=True, secret=secret))
    running = _seen(stack, "secret-changed", _submitted)
    stack.put_secret(stack.namespace, secret, {"password": "wrong-password-123"})
    assert _still_running(stack, running["dag"]["id"])
    refused = stack.wait_for(
        "secret-changed", lambda s: "refused the credentials" in s.get("lastError", ""), timeout=30
    )
    assert refused["phase"] in ("Submitted", "Running"), refused
    assert refused["reason"] == "Security.Authentication.IncorrectOceanbasePassword"
    assert "passwordSecretRef" in refused["lastError"]
    stack.put_secret(stack.namespace, secret, {"password": stack.password})
    status = stack.wait_for("secret-changed", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert len(stops_on(stack, cluster)) == 1


def test_held_requests_do_not_block_other_requests(stack: Stack, cluster: int) -> None:
    """One agent holds every answer for a long time. Expected: a request to another cluster still Succeeds."""
    slow_agent = stack.agent(cluster)
    stack.sim.faults.delay(20, agent=slow_agent)
    stack.create(stop_request("held", slow_agent, force=True))
    other = cluster + 1 if cluster + 1 < CLUSTERS else 0
    stack.create(stop_request("not-held", stack.agent(other), force=True))
    status = stack.wait_for("not-held", timeout=30)
    assert status["phase"] == "Succeeded"
    assert (stack.get("held").get("status") or {}).get("phase") not in ("Succeeded", "Failed")
