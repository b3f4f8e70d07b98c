"""Crash matrix: the controller process (a real `obstop run`) is SIGKILLed at each point of a request's life,
then restarted. Every case must end in the right terminal phase with exactly one stop landed on the agent.

Nothing is mocked: the API server is the session's real kube-apiserver + etcd; the controller reaches it
through the fault-injecting proxy. The kill points are made deterministic by holding one HTTP request at the
simulated agent (the request is executed, its answer waits) or by having the proxy refuse calls to the real
server, and killing once that request is known to be held. The last case is a crash the controller does to
itself: Kopf ends the process on an in-stream watch ERROR other than 410.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import (
    assert_one_stop,
    conditions,
    dag_running,
    hold_next,
    landed_on,
    proxy_of,
    rule_taken,
    stops_on,
    submitted,
)

from obstop.testing.stack import Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

CLUSTERS = 8
STAGE_SECONDS = 0.2
TIME_ROUTE = "/api/v1/info"  # the record step asks the agent who it is, and learns its clock
LOOKUP_ROUTE = "/api/v1/task/dag/agent/unfinish"
STOP_ROUTE = "/api/v1/ob/stop"


@pytest.fixture(scope="module")
def stack(proxied_stack: Stack) -> Stack:
    """The module's stack (conftest.py: proxied_stack); each test starts and kills its own controller."""
    return proxied_stack


@pytest.fixture
def cluster(stack: Stack, matrix_cluster: int) -> Iterator[int]:
    """A fresh cluster of the shared stack, and a controller that is killed (then faults cleared) after."""
    stack.start_controller()
    yield matrix_cluster
    stack.stop_controller(kill=True)


def _restart_and_finish(stack: Stack, name: str) -> dict[str, Any]:
    stack.stop_controller(kill=True)
    stack.sim.faults.clear()
    stack.start_controller()
    return stack.wait_for(name, timeout=90)


def test_killed_before_the_submission_is_recorded(stack: Stack, cluster: int) -> None:
    """Killed while asking the agent's clock: nothing written, nothing sent. Expected: Succeeded, one stop."""
    agent = stack.agent(cluster)
    hold_next(stack, TIME_ROUTE, agent)
    stack.create(stop_request("crash-before-record", agent, force=True))
    wait_until(lambda: rule_taken(stack, TIME_ROUTE), what="controller asks the agent's clock")
    assert "submission" not in (stack.get("crash-before-record").get("status") or {})

    status = _restart_and_finish(stack, "crash-before-record")
    assert status["phase"] == "Succeeded", status
    assert_one_stop(stack, cluster, status)


def test_killed_after_recording_before_the_stop_call(stack: Stack, cluster: int) -> None:
    """status.submission is written, the stop is not sent yet: the Secret cannot be read for the next step.
    Expected: the restarted controller finds no DAG on the agent and sends the stop once: Succeeded."""
    proxy = proxy_of(stack)
    agent = stack.agent(cluster)
    # Hold the clock question briefly: by then the Secret was read for this step; refuse the next reads.
    stack.sim.faults.delay(1.0, route=TIME_ROUTE, agent=agent, times=1)
    stack.create(stop_request("crash-before-post", agent, force=True))
    wait_until(lambda: rule_taken(stack, TIME_ROUTE), what="controller asks the agent's clock")
    proxy.inject(500, verb="get", resource="secrets", times=None)
    status = stack.wait_for("crash-before-post", lambda s: "submission" in s and "lastError" in s)
    assert f"cannot read Secret {stack.namespace}/obshell-root: HTTP 500" in status["lastError"], status
    assert "dag" not in status
    assert stops_on(stack, cluster) == []

    stack.stop_controller(kill=True)
    proxy.clear_faults()
    status = _restart_and_finish(stack, "crash-before-post")
    assert status["phase"] == "Succeeded", status
    assert_one_stop(stack, cluster, status)


def test_killed_after_the_agent_accepted_before_status_was_written(stack: Stack, cluster: int) -> None:
    """The stop landed (its DAG runs) but the answer is held; the DAG id never reached status.
    Expected: the restarted controller adopts that DAG instead of sending another stop."""
    agent = stack.agent(cluster)
    hold_next(stack, STOP_ROUTE, agent, method="POST")
    stack.create(stop_request("crash-after-accept", agent, terminate=True))
    wait_until(lambda: landed_on(stack, cluster), what="the stop lands")
    assert "dag" not in stack.get("crash-after-accept")["status"]

    status = _restart_and_finish(stack, "crash-after-accept")
    assert status["phase"] == "Succeeded", status
    assert_one_stop(stack, cluster, status)
    submitted = [e["message"] for e in stack.events("crash-after-accept") if e["reason"] == "Submitted"]
    assert any("found on the agent after an unanswered submission" in m for m in submitted), submitted


def test_killed_while_polling(stack: Stack, cluster: int) -> None:
    """Killed with a GET of the DAG in flight. Expected: the restarted controller polls the same DAG."""
    agent = stack.agent(cluster)
    stack.sim.faults.delay(0.6, route="/api/v1/task/dag/2", agent=agent)  # slow the DAG down to poll it
    stack.create(stop_request("crash-while-polling", agent, terminate=True))
    status = stack.wait_for("crash-while-polling", lambda s: bool((s.get("dag") or {}).get("id")))
    dag_route = f"/api/v1/task/dag/{status['dag']['id']}"
    hold_next(stack, dag_route, agent, method="GET")
    wait_until(lambda: rule_taken(stack, dag_route), what="a poll of the DAG is in flight")

    status = _restart_and_finish(stack, "crash-while-polling")
    assert status["phase"] == "Succeeded", status
    assert status["dag"]["maxStage"] == 6 and status["progress"] == "6/6"
    assert_one_stop(stack, cluster, status)


def test_killed_while_the_status_write_with_the_dag_id_fails(stack: Stack, cluster: int) -> None:
    """The stop landed, but the API server refuses every status write (500), so the DAG id is never stored;
    the controller is killed while retrying the write (Kopf retries a 5xx with backoff). Expected: the restarted
    controller adopts the DAG."""
    proxy = proxy_of(stack)
    agent = stack.agent(cluster)
    # The stop executes at once; its answer waits 1 s, time enough to make the API server refuse writes.
    stack.sim.faults.delay(1.0, route=STOP_ROUTE, agent=agent, method="POST", times=1)
    stack.create(stop_request("crash-while-writing", agent, force=True))
    wait_until(lambda: landed_on(stack, cluster), what="the stop lands")
    proxy.inject(500, verb="patch", resource="obstoprequests", name="crash-while-writing", times=None)
    wait_until(
        lambda: proxy.recorded(
            verb="patch", resource="obstoprequests", name="crash-while-writing", status=500
        ),
        what="the controller tries to write the status",
    )
    assert "dag" not in stack.get("crash-while-writing")["status"]

    stack.stop_controller(kill=True)
    proxy.clear_faults()
    status = _restart_and_finish(stack, "crash-while-writing")
    assert status["phase"] == "Succeeded", status
    assert_one_stop(stack, cluster, status)


def test_killed_repeatedly_at_every_stage(stack: Stack, cluster: int) -> None:
    """SIGKILL once per stage of a terminate stop (6 stages). Expected: Succeeded, one stop, every stage seen."""
    agent = stack.agent(cluster)
    stack.sim.faults.delay(0.3, route="/api/v1/task/dag/2", agent=agent)
    stack.create(stop_request("crash-every-stage", agent, terminate=True))
    for stage in range(1, 6):
        stack.wait_for("crash-every-stage", lambda s, n=stage: (s.get("dag") or {}).get("stage", 0) >= n)
        stack.stop_controller(kill=True)
        stack.start_controller()
    status = stack.wait_for("crash-every-stage", timeout=60)
    assert status["phase"] == "Succeeded", status
    assert conditions(status)["Complete"] == "True"
    assert_one_stop(stack, cluster, status)


def test_a_watch_error_other_than_410_ends_the_process(stack: Stack, cluster: int) -> None:
    """kube-apiserver ends a watch with an in-stream ERROR event carrying a Status other than 410 Expired (here
    500, as on a storage error), injected by the proxy into the request watch while a DAG runs. Kopf treats
    every such ERROR as fatal: its watcher raises WatchingError and `obstop run` exits (a known defect,
    tracked separately). Expected, as it really happens: the process exits non-zero with the error in its
    log; restarted (as kubelet restarts the pod), the controller follows the same DAG to Succeeded, one stop."""
    proxy = proxy_of(stack)
    agent = stack.agent(cluster)
    stack.sim.clusters[cluster].stage_seconds = 1.0
    stack.create(stop_request("watch-error", agent, terminate=True))
    running = stack.wait_for("watch-error", submitted)
    message = "Internal error occurred: etcdserver: injected failure"
    error = proxy.watch_error(500, message, resource="obstoprequests", namespace=stack.namespace)
    assert dag_running(stack, running["dag"]["id"])
    assert proxy.cut_watches() >= 1  # the watch reconnects now, and gets the ERROR
    controller = stack.controller
    assert controller is not None
    exit_code = controller.wait(60)
    assert error.hits == 1
    assert exit_code != 0, "the controller exited cleanly on a fatal watch error"
    log = stack.controller_logs()
    assert "WatchingError" in log and message in log, log[-3000:]

    stack.start_controller()
    status = stack.wait_for("watch-error", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["dag"]["id"] == running["dag"]["id"]
    assert_one_stop(stack, cluster, status)
