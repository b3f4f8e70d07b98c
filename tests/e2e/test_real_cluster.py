"""The main scenarios against a real Kubernetes cluster (kind, k3s, any), when OBSTOP_E2E_KUBECONFIG names its
kubeconfig; skipped otherwise (no real API server can run on the CI machines).

The controller runs locally (`obstop run --namespace <test namespace>`) and the obshell simulator on loopback, so
only the Kubernetes side is real: the CRD's schema and CEL rules as the real API server enforces them, the status
subresource, watches, events. The CRD is created (or replaced) cluster-wide; each run uses its own namespace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.testing.stack import Stack, stop_request

KUBECONFIG = os.environ.get("OBSTOP_E2E_KUBECONFIG")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not KUBECONFIG, reason="OBSTOP_E2E_KUBECONFIG is not set: no real cluster to test against"
    ),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    namespace = f"obstop-e2e-{uuid.uuid4().hex[:8]}"
    with Stack(kubeconfig=Path(str(KUBECONFIG)), namespace=namespace, clusters=4, stage_seconds=0.3) as s:
        s.start_controller()
        try:
            yield s
        finally:
            s.stop_controller()
            s.core.delete_namespace(namespace)


def test_force_stop_succeeds_once(stack: Stack) -> None:
    agent = stack.agent(0)
    stack.create(stop_request("e2e-global-force", agent, force=True))
    status = stack.wait_for("e2e-global-force", timeout=120)
    assert status["phase"] == "Succeeded"
    assert len([r for r in stack.sim.stops() if r.agent == agent]) == 1


def test_failed_dag_is_reported(stack: Stack) -> None:
    agent = stack.agent(1)
    stack.sim.faults.fail_stop("Make sure all agents are ready", "Sim.E2E", "injected", agent=agent)
    stack.create(stop_request("e2e-fails", agent, force=True))
    status = stack.wait_for("e2e-fails", timeout=120)
    assert status["phase"] == "Failed" and status["reason"] == "Sim.E2E"


def test_real_server_refuses_invalid_requests(stack: Stack) -> None:
    from kubernetes.client.exceptions import ApiException

    for bad in (
        stop_request("e2e-bad-1", stack.agent(2)),  # GLOBAL without force or terminate
        stop_request("e2e-bad-2", stack.agent(2), force=True, terminate=True),
        stop_request("e2e-bad-3", stack.agent(2), scope="SERVER", targets=["10.0.0.1:99999"], force=True),
    ):
        with pytest.raises(ApiException) as refused:
            stack.create(bad)
        assert refused.value.status == 422


def test_zone_stop_and_immutability(stack: Stack) -> None:
    from kubernetes.client.exceptions import ApiException

    stack.create(stop_request("e2e-zone", stack.agent(3), scope="ZONE", targets=["zone1"], terminate=True))
    with pytest.raises(ApiException) as changed:
        stack.custom.patch_namespaced_custom_object(
            "obshell.oceanbase.com",
            "v1alpha1",
            stack.namespace,
            "obstoprequests",
            "e2e-zone",
            {"spec": {"terminate": False, "force": True}},
        )
    assert changed.value.status == 422
    assert stack.wait_for("e2e-zone", timeout=120)["phase"] == "Succeeded"
