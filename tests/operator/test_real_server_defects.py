"""Defects that only a real kube-apiserver shows, each confirmed here before its fix: a real `obstop run` on the
session's control plane, the obshell simulator, real HTTP on loopback. Nothing is mocked."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def metrics_port() -> int:
    """Where the module's controller serves /metrics."""
    return _free_port()


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, metrics_port: int) -> Iterator[Stack]:
    with Stack(clusters=2, stage_seconds=0.1, control_plane=control_plane) as s:
        s.start_controller(env={"OBSTOP_HEALTH_PORT": str(metrics_port)})
        yield s


def _gauge(port: int, phase: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(rf'^obstop_requests\{{phase="{phase}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_deleted_request_is_forgotten(stack: Stack, metrics_port: int) -> None:
    """Without a finalizer Kopf runs no delete handler for a request deleted outright: the controller must still
    forget it (no more waking it, no more counting it)."""
    stack.create(stop_request("forgotten", stack.agent(0), force=True, secret="never-created"))
    stack.wait_for("forgotten", lambda s: "lastError" in s, timeout=30)
    assert _gauge(metrics_port, "Pending") == 1
    stack.delete("forgotten")
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: _gauge(metrics_port, "Pending") == 0, 10, "the gauge drops", interval=0.1)
    assert _gauge(metrics_port, "Pending") == 0, "the deleted request is still counted"
    mark = len(stack.controller_logs())
    time.sleep(7)  # more than twice OBSTOP_STALL_SECONDS (3 in Stack): a remembered request would be woken
    later = stack.controller_logs()[mark:]
    assert "forgotten" not in later, later


def test_an_event_message_over_1024_bytes_is_posted_cut(stack: Stack) -> None:
    """kube-apiserver refuses an Event whose message is over 1,024 bytes; Kopf cuts at 1,024 characters, so a long
    non-ASCII obshell message lost the Failed event. It is posted, cut to fit, and the status keeps it whole."""
    message = "停止失败" * 150  # 600 characters, 1,800 bytes in UTF-8
    agent = stack.agent(1)
    stack.sim.faults.fail_stop(4, "Sim.Long.Message", message, agent=agent)
    stack.create(stop_request("long-message", agent, force=True))
    status = stack.wait_for("long-message", timeout=60)
    assert status["phase"] == "Failed" and message in status["message"]
    failed = wait_until(
        lambda: [e for e in stack.events("long-message") if e["reason"] == "Failed"],
        10,
        "the Failed event (refused by the API server?)",
        interval=0.1,
    )
    assert len(failed[0]["message"].encode()) <= 1024
    assert failed[0]["message"].startswith(status["message"][:100])


def test_a_reordered_set_list_is_acknowledged_not_left_progressing(stack: Stack) -> None:
    """The real server compares `x-kubernetes-list-type: set` lists without regard to order, so reordering
    scope.target passes the immutability rule and bumps the generation. A reorder names the same stop: the
    controller does nothing again, and the status and every condition describe the new generation (what kstatus
    and the Argo CD health check compare), so the request does not show as progressing for good."""
    agent = stack.agent(0)
    agents = [a.address for a in stack.sim.clusters[0].agents]
    stack.create(stop_request("reordered", agent, scope="SERVER", targets=agents[1:], force=True))
    assert stack.wait_for("reordered", timeout=60)["phase"] == "Succeeded"
    stops = len(stack.sim.stops())
    stack.custom.patch_namespaced_custom_object(
        "obshell.oceanbase.com",
        "v1alpha1",
        stack.namespace,
        "obstoprequests",
        "reordered",
        {"spec": {"scope": {"type": "SERVER", "target": list(reversed(agents[1:]))}}},
    )
    body = stack.get("reordered")
    generation = body["metadata"]["generation"]
    assert generation == 2  # the server took the reorder as a change

    def current(status: dict[str, object]) -> bool:
        conditions = status.get("conditions") or []
        return status.get("observedGeneration") == generation and all(
            c["observedGeneration"] == generation  # type: ignore[index]
            for c in conditions  # type: ignore[union-attr]
        )

    status = stack.wait_for("reordered", current, timeout=30)
    assert status["phase"] == "Succeeded"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert len(stack.sim.stops()) == stops, "a reorder sent another stop"


def test_an_unbounded_deadline_is_refused_at_admission(stack: Stack) -> None:
    """A valid int64 such as 100000000000000 made timedelta overflow in the controller, on every retry."""
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as refused:
        stack.create(stop_request("forever", stack.agent(0), force=True, deadline=100_000_000_000_000))
    assert refused.value.status == 422
    assert "spec.activeDeadlineSeconds" in refused.value.body and "31536000" in refused.value.body
