"""Fault matrix: the request keeps working and nothing is lost while the agent, the network or the Kubernetes
API misbehave for real (refused connections, slow and dropped answers, 5xx, key rotation, clock skew, refused
writes, 5xx bursts, cut watches, in-stream 410 Expired, a changed Secret). Each case states its expected
outcome, checks what the status tells a person, and checks the simulator's record: never a second stop.

One real `obstop run` serves the whole module, against the session's real kube-apiserver + etcd, through the
fault-injecting proxy (obstop.testing.apiproxy) for the Kubernetes-side faults; each test has its own
simulated cluster. Process faults of the control plane itself (kube-apiserver or etcd SIGKILLed) are in
test_control_plane_crashes.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import (
    conditions,
    control_plane_of,
    dag_running,
    landed_on,
    proxy_of,
    stops_on,
    submitted,
)

from obstop.testing.apiproxy import status_body
from obstop.testing.stack import GROUP, PLURAL, VERSION, Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

CLUSTERS = 20
STAGE_SECONDS = 0.15
STOP_ROUTE = "/api/v1/ob/stop"
DAG_ROUTE = "/api/v1/task/dag/2"  # GETs of local DAGs (generic ids start with 2)


@pytest.fixture(scope="module")
def stack(proxied_stack: Stack) -> Stack:
    """One controller for the whole module (conftest.py: proxied_stack)."""
    proxied_stack.start_controller()
    return proxied_stack


@pytest.fixture
def cluster(stack: Stack, matrix_cluster: int) -> Iterator[int]:
    yield matrix_cluster
    assert stack.controller is not None and stack.controller.poll() is None, "the controller crashed"


def _slow_stages(stack: Stack, cluster: int, seconds: float = 0.6) -> None:
    """Make this cluster's DAGs take `seconds` per stage, so a fault can be injected while one runs."""
    stack.sim.clusters[cluster].stage_seconds = seconds


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
    waiting = stack.wait_for("agent-down-at-submit", lambda s: "lastError" in s)
    assert waiting["phase"] == "Pending" and waiting["reason"] == "AgentUnreachable"
    assert "cannot connect" in waiting["lastError"] and "retrying in" in waiting["message"]
    assert conditions(waiting)["Ready"] == "False" and conditions(waiting)["Reconciling"] == "True"
    stack.wait_for("agent-down-at-submit", lambda s: s.get("attempts", 0) >= 2)
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
    running = stack.wait_for("owner-down", submitted)
    stack.sim.agent_down(agent)
    assert dag_running(stack, running["dag"]["id"])
    down = stack.wait_for("owner-down", lambda s: "lastError" in s)
    assert down["phase"] in ("Submitted", "Running") and down["dag"]["id"] == running["dag"]["id"]
    assert down["reason"] == "AgentUnreachable" and "cannot connect" in down["lastError"]

    stack.sim.agent_up(agent)
    status = _succeeded_once(stack, "owner-down", cluster)
    assert status["dag"]["id"] == running["dag"]["id"]


def test_5xx_bursts_at_every_step(stack: Stack, cluster: int) -> None:
    """500s on every route (info, stop, DAG) in turn. Expected: retried with the error shown, then Succeeded."""
    agent = stack.agent(cluster)
    stack.sim.faults.error_burst(2, route="/api/v1/info", agent=agent)
    stack.sim.faults.error_burst(2, route=STOP_ROUTE, agent=agent)
    stack.sim.faults.error_burst(2, route=DAG_ROUTE, agent=agent)
    stack.create(stop_request("burst", agent, force=True))
    shown = stack.wait_for("burst", lambda s: "lastError" in s)
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
    timed_out = stack.wait_for("slow-answer", lambda s: "timed out" in s.get("lastError", ""))
    assert timed_out["reason"] == "AgentUnreachable" and "dag" not in timed_out
    _succeeded_once(stack, "slow-answer", cluster)
    assert len(stops_on(stack, cluster)) == 1
    stack.wait_for_events(
        "slow-answer", lambda events: any("found on the agent" in e["message"] for e in events)
    )


def test_connection_dropped_after_the_stop_and_after_the_lookup(stack: Stack, cluster: int) -> None:
    """The agent executes the stop and closes the connection without an answer; the first lookup for the
    DAG loses its answer too. Expected: it looks again (never sends again), adopts the DAG, Succeeded."""
    agent = stack.agent(cluster)
    stack.sim.faults.drop_responses(agent=agent, times=1)
    stack.sim.faults.drop_responses(
        route="/api/v1/task/dag/agent/unfinish", agent=agent, method="GET", times=1
    )
    stack.create(stop_request("dropped", agent, force=True))
    dropped = stack.wait_for("dropped", lambda s: "connection failed" in s.get("lastError", ""))
    assert dropped["reason"] == "AgentUnreachable"
    _succeeded_once(stack, "dropped", cluster)
    assert len(stops_on(stack, cluster)) == 1 and stops_on(stack, cluster)[0].dropped


def test_rsa_key_rotated_mid_request(stack: Stack, cluster: int) -> None:
    """Every agent of the cluster gets a new key pair while the DAG runs. Expected: the client re-fetches the
    key and carries on; Succeeded with no error left and one stop."""
    agent = stack.agent(cluster)
    _slow_stages(stack, cluster)
    stack.create(stop_request("rotated", agent, terminate=True))
    running = stack.wait_for("rotated", submitted)
    for each in stack.sim.clusters[cluster].agents:
        stack.sim.rotate_key(each.address)
    assert dag_running(stack, running["dag"]["id"])
    _succeeded_once(stack, "rotated", cluster)


def test_agent_clock_ahead_beyond_the_header_lifetime_is_harmless(stack: Stack, cluster: int) -> None:
    """The agent's clock is 5 minutes ahead: a header signed with the controller's clock would have expired on
    arrival (obshell 4.2.x would call it just "unauthorized"). The client signs with the agent's clock, learnt
    from its answers. Expected: Succeeded, one stop."""
    stack.sim.set_clock_offset(300)
    stack.create(stop_request("skewed", stack.agent(cluster), force=True))
    _succeeded_once(stack, "skewed", cluster)


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


def _request_lists(stack: Stack) -> int:
    """How many times the controller listed the requests (Kopf lists at start and after a 410 only)."""
    return len(proxy_of(stack).recorded(verb="list", resource="obstoprequests", namespace=stack.namespace))


def test_conflicts_on_status_writes(stack: Stack, cluster: int) -> None:
    """The proxy answers 409 Conflict to the first three status writes of the request (the /status
    subresource, which Kopf patches after the object's annotations). Kopf does not retry a 4xx: it drops the
    step's status and throttles the object, but the annotations the real server accepted are a change, so the
    handler runs again. Expected: Succeeded with one stop, the three refusals really answered, later status
    writes accepted."""
    proxy = proxy_of(stack)
    proxy.inject(
        409, verb="patch", resource="obstoprequests", subresource="status", name="conflicts", times=3
    )
    stack.create(stop_request("conflicts", stack.agent(cluster), force=True))
    _succeeded_once(stack, "conflicts", cluster)
    writes = proxy.recorded(verb="patch", resource="obstoprequests", subresource="status", name="conflicts")
    assert [w.status for w in writes[:3]] == [409, 409, 409], writes
    assert any(w.status == 200 for w in writes[3:]), writes


def test_a_normal_stop_writes_the_status_only_when_it_changes(stack: Stack, cluster: int) -> None:
    """A terminate stop with no fault, through the proxy that records every call. Expected: the controller's
    writes to the request are merge patches of its status, one per change a person can see at most (Pending,
    Submitted, each stage, the terminal phase: 3 + maxStage), never the object itself (no annotation, no touch);
    two events (Submitted, Succeeded). Kopf's change handler wrote three times
    per step whether anything changed or not."""
    stack.sim.clusters[cluster].stage_seconds = 0.4
    proxy = proxy_of(stack)
    stack.create(stop_request("quiet-writes", stack.agent(cluster), terminate=True))
    status = _succeeded_once(stack, "quiet-writes", cluster)
    writes = proxy.recorded(verb="patch", resource="obstoprequests", name="quiet-writes")
    assert {w.subresource for w in writes} == {"status"}, writes
    assert 3 <= len(writes) <= 3 + int(status["dag"]["maxStage"]), writes
    events = stack.wait_for_events("quiet-writes", lambda events: len(events) >= 2)
    assert sorted(e["reason"] for e in events) == ["Submitted", "Succeeded"]


def test_every_status_write_refused_with_409_for_a_while(stack: Stack, cluster: int) -> None:
    """409 Conflict to the first four status writes of the request, the submission record and the DAG id among
    them. The controller keeps each step's outcome and writes it again with back-off (1+2+4 s) instead of
    dropping it. Expected: Succeeded with one stop; the refusals logged without the API's text; and nothing but
    the status is ever written to the request (no annotation, no touch)."""
    proxy = proxy_of(stack)
    refusal = proxy.inject(
        409, verb="patch", resource="obstoprequests", subresource="status", name="refused", times=4
    )
    stack.create(stop_request("refused", stack.agent(cluster), force=True))
    _succeeded_once(stack, "refused", cluster)
    assert refusal.exhausted
    log = stack.controller_logs()
    refused = [
        line
        for line in log.splitlines()
        if f"[{stack.namespace}/refused] could not write the status (" in line
    ]
    said = re.compile(
        r"could not write the status \(ApiError HTTP 409(?: [A-Za-z]+)?\);"
    )  # status, reason only
    assert len(refused) == 4 and all(said.search(line) for line in refused), refused
    patched = {w.subresource for w in proxy.recorded(verb="patch", resource="obstoprequests", name="refused")}
    assert patched == {"status"}, patched


def test_api_server_5xx_on_status_writes_and_secret_reads(stack: Stack, cluster: int) -> None:
    """503 on the first two status writes (Kopf retries them with backoff) and 500 on the first three reads of
    the Secret (the controller retries the step). Expected: Succeeded with one stop; the retried steps are
    counted in status.attempts."""
    proxy = proxy_of(stack)
    proxy.inject(503, verb="patch", resource="obstoprequests", subresource="status", name="api-5xx", times=2)
    proxy.inject(500, verb="get", resource="secrets", namespace=stack.namespace, times=3)
    stack.create(stop_request("api-5xx", stack.agent(cluster), force=True))
    status = _succeeded_once(stack, "api-5xx", cluster)
    assert status["attempts"] >= 3, status
    assert len(proxy.recorded(verb="get", resource="secrets", status=500)) == 3
    assert len(proxy.recorded(verb="patch", name="api-5xx", subresource="status", status=503)) == 2


def test_watch_refused_with_5xx_while_a_request_is_created(stack: Stack, cluster: int) -> None:
    """The request watch is cut and its reconnections are answered 503 four times (Kopf retries with backoff,
    1+1+2+3 s); the request is created meanwhile. Expected: once the watch is back (from the same
    resourceVersion, no relist) the real server replays the creation; Succeeded with one stop."""
    proxy = proxy_of(stack)
    lists = _request_lists(stack)
    refusal = proxy.inject(503, verb="watch", resource="obstoprequests", namespace=stack.namespace, times=4)
    assert proxy.cut_watches() >= 1
    stack.create(stop_request("watch-5xx", stack.agent(cluster), force=True))
    wait_until(lambda: refusal.exhausted, timeout=60, what="four watch reconnections refused")
    _succeeded_once(stack, "watch-5xx", cluster)
    assert _request_lists(stack) == lists


def test_watch_streams_cut_repeatedly(stack: Stack, cluster: int) -> None:
    """Every watch stream is cut after each status change. Expected: Kopf resumes each watch from its last
    resourceVersion (no relist); Succeeded, one stop."""
    proxy = proxy_of(stack)
    agent = stack.agent(cluster)
    lists = _request_lists(stack)
    _slow_stages(stack, cluster, 0.4)
    stack.create(stop_request("cut-watch", agent, terminate=True))
    cuts = 0
    for status in stack.watch("cut-watch", timeout=60):  # cut after every status change the controller makes
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        cuts += proxy.cut_watches()
    assert cuts >= 3
    _succeeded_once(stack, "cut-watch", cluster)
    assert _request_lists(stack) == lists


def _real_expired_event(stack: Stack) -> dict[str, Any]:
    """What the real kube-apiserver streams to a watch of the requests from a compacted resourceVersion."""
    cp = control_plane_of(stack)
    url = f"{cp.url}/apis/{GROUP}/{VERSION}/namespaces/{stack.namespace}/{PLURAL}"
    params = {"watch": "true", "resourceVersion": "1", "timeoutSeconds": "5"}
    with cp.http() as client, client.stream("GET", url, params=params) as answer:
        assert answer.status_code == 200  # the error comes in the stream, not as the HTTP status
        event: dict[str, Any] = json.loads(next(answer.iter_lines()))
    return event


def test_in_stream_410_expired_makes_kopf_relist(stack: Stack, cluster: int) -> None:
    """The request watch ends with an in-stream ERROR 410 Expired while the DAG runs: the very event the real
    server sends for a too-old resourceVersion (read from it first), injected by the proxy on the next
    reconnection. Expected: Kopf lists the requests again and watches from the new list (the controller keeps
    running); the running request is followed to Succeeded with one stop."""
    proxy = proxy_of(stack)
    real = _real_expired_event(stack)
    assert real["type"] == "ERROR" and real["object"]["code"] == 410 and real["object"]["reason"] == "Expired"
    assert status_body(410, real["object"]["message"]) == real["object"]  # the proxy sends the same Status

    _slow_stages(stack, cluster)
    stack.create(stop_request("expired", stack.agent(cluster), terminate=True))
    running = stack.wait_for("expired", submitted)
    lists = _request_lists(stack)
    expired = proxy.watch_error(410, real["object"]["message"], resource="obstoprequests")
    assert proxy.cut_watches() >= 1
    assert dag_running(stack, running["dag"]["id"])
    wait_until(lambda: expired.hits == 1, what="the reconnected watch gets the 410")
    wait_until(lambda: _request_lists(stack) == lists + 1, what="Kopf lists the requests again")
    status = _succeeded_once(stack, "expired", cluster)
    assert status["dag"]["id"] == running["dag"]["id"]
    assert "WatchingError" not in stack.controller_logs()


def test_secret_deleted_mid_request_then_restored(stack: Stack, cluster: int) -> None:
    """The Secret disappears while the DAG runs. Expected: still Running with lastError naming the Secret;
    once it is back, Succeeded with the same DAG and one stop."""
    agent = stack.agent(cluster)
    secret = f"root-{cluster}"
    stack.put_secret(stack.namespace, secret, {"password": stack.password})
    _slow_stages(stack, cluster)
    stack.create(stop_request("secret-gone", agent, terminate=True, secret=secret))
    running = stack.wait_for("secret-gone", submitted)
    stack.core.delete_namespaced_secret(secret, stack.namespace)
    assert dag_running(stack, running["dag"]["id"])
    waiting = stack.wait_for("secret-gone", lambda s: "lastError" in s)
    assert waiting["phase"] in ("Submitted", "Running") and waiting["reason"] == "WaitingForSecret"
    assert f"Secret {stack.namespace}/{secret} not found" in waiting["lastError"]

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
    running = stack.wait_for("secret-changed", submitted)
    stack.put_secret(stack.namespace, secret, {"password": "wrong-password-123"})
    assert dag_running(stack, running["dag"]["id"])
    refused = stack.wait_for(
        "secret-changed", lambda s: "refused the credentials" in s.get("lastError", ""), timeout=30
    )
    assert refused["phase"] in ("Submitted", "Running"), refused
    assert refused["reason"] == "Security.Authentication.IncorrectOceanbasePassword"
    assert "passwordSecretRef" in refused["lastError"]
    assert "rotated while the cluster stops" in refused["lastError"]  # a rotation is explained, not a failure
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
