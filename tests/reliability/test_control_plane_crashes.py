"""The control plane itself crashes mid-request: kube-apiserver or etcd is SIGKILLed and restarted (same ports,
same data) while a real `obstop run` holds a stop whose DAG id the API server never got to store. Expected in
each case: the request ends Succeeded, its status and events name the DAG that the agent ran, exactly one
stop reached the agent, and the controller process kept running.

Each test runs on a ControlPlane of its own (it kills it), with the controller connected straight to it, so
the outage is what a controller in a cluster meets: refused connections while kube-apiserver is gone, calls
that hang until they time out while etcd is gone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest
from reliability_support import (
    assert_one_stop,
    control_plane_of,
    controller_audit,
    dag_running,
    landed_on,
)

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

STOP_ROUTE = "/api/v1/ob/stop"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack(clusters=1, stage_seconds=0.5) as s:
        s.start_controller()
        yield s


def _failed_patches(stack: Stack, name: str, error: str) -> list[str]:
    """The controller's log lines of a status write of the request that failed with `error` (an httpx error's name, e.g. ReadTimeout)."""
    pattern = re.compile(rf"\[{stack.namespace}/{name}\] could not write the status \(.*{error}.*\)")
    return pattern.findall(stack.controller_logs())


def _stop_answered_during_outage(stack: Stack, name: str, kill: Callable[[], None]) -> str:
    """A terminate stop whose answer the agent holds for 2 s: `kill` once the stop has landed, so the answer
    with the DAG id reaches the controller during the outage. Returns the DAG id once it finished on the
    agent (the outage lasts at least that long)."""
    agent = stack.agent(0)
    stack.sim.faults.delay(2.0, route=STOP_ROUTE, agent=agent, method="POST", times=1)
    stack.create(stop_request(name, agent, terminate=True))
    landed = wait_until(lambda: landed_on(stack, 0), what="the stop lands")
    dag_id = landed[0].dag_id
    assert dag_id is not None
    assert "dag" not in (stack.get(name).get("status") or {}), "the answer was not held"
    kill()
    wait_until(lambda: not dag_running(stack, dag_id), timeout=60, what="the DAG finishes on the agent")
    return dag_id


def _etcd_reported_down(cp: ControlPlane) -> bool:
    """kube-apiserver's /readyz fails its etcd check."""
    try:
        with cp.http(timeout=10) as client:
            answer = client.get(f"{cp.url}/readyz", params={"verbose": "1"})
    except httpx.HTTPError:
        return False
    return answer.status_code != 200 and "[-]etcd" in answer.text


def _assert_finished(stack: Stack, name: str, dag_id: str) -> None:
    """Succeeded with the DAG that ran, one stop, and what a person reads (status message, the request's
    events, which Kopf posted with retries through the outage) names that DAG."""
    status = stack.wait_for(name, timeout=120)
    assert status["phase"] == "Succeeded", status
    assert status["dag"]["id"] == dag_id and status["progress"] == "6/6", status
    assert dag_id in status["message"], status["message"]
    assert_one_stop(stack, 0, status)

    def reasons() -> set[str]:
        found = {e["reason"] for e in stack.events(name) if dag_id in (e["message"] or "")}
        return found if {"Submitted", "Succeeded"} <= found else set()

    wait_until(reasons, what=f"Submitted and Succeeded events naming DAG {dag_id}")
    assert stack.controller is not None and stack.controller.poll() is None, "the controller exited"
    assert "WatchingError" not in stack.controller_logs()


def test_kube_apiserver_sigkilled_mid_request_and_restarted(stack: Stack) -> None:
    """kube-apiserver is SIGKILLed with the stop's answer in flight: the DAG id comes back while nothing listens
    on the API port, the controller's status write is refused (it keeps the step's outcome and writes it again
    with back-off, 1+2+4+... s) and the DAG
    completes on the agent. kube-apiserver is restarted on the same port. Expected: the controller's watches
    reconnect to the new process; Succeeded with the DAG that ran (6/6), one stop, the controller running."""
    cp = control_plane_of(stack)
    dag_id = _stop_answered_during_outage(stack, "apiserver-killed", cp.kill_apiserver)
    wait_until(
        lambda: _failed_patches(
            stack, "apiserver-killed", "ConnectError|ReadError|WriteError|RemoteProtocolError"
        ),
        what="the controller's status write is refused",
    )
    restarted_at = len(cp.audit_events())
    cp.start_apiserver()

    _assert_finished(stack, "apiserver-killed", dag_id)
    watches = controller_audit(cp, since=restarted_at, verb="watch", resource="obstoprequests")
    assert watches, "the controller never watched the restarted server"
    relists = controller_audit(cp, since=restarted_at, verb="list", resource="obstoprequests")
    print(f"\nafter the restart: {len(watches)} watch and {len(relists)} list call(s) of the requests")


def test_etcd_sigkilled_mid_request_and_restarted(stack: Stack) -> None:
    """etcd is SIGKILLed with the stop's answer in flight: kube-apiserver stays up but reports etcd failing on
    /readyz, and the status write with the DAG id hangs until the controller's 30 s request timeout (then it
    writes again).
    The outage lasts until that timeout was seen; etcd is restarted with its data. Expected: Succeeded with the
    DAG that ran (6/6), one stop, the controller running."""
    cp = control_plane_of(stack)
    dag_id = _stop_answered_during_outage(stack, "etcd-killed", cp.kill_etcd)
    wait_until(lambda: _etcd_reported_down(cp), timeout=60, what="kube-apiserver reports etcd down")
    wait_until(
        lambda: _failed_patches(stack, "etcd-killed", "ReadTimeout|HTTP 5"),
        timeout=120,
        what="the controller's status write times out",
    )
    cp.start_etcd()

    _assert_finished(stack, "etcd-killed", dag_id)
