"""`kubectl obstop` (the kubectl-obstop console script) run through the pinned kubectl, as a user runs it, against
a real kube-apiserver with a real controller (`obstop run`) and the simulator. Nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s_tools import TOOLS, as_chart_identity, refused_calls

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack

pytestmark = pytest.mark.timeout(180)
PLUGIN = Path(sys.executable).parent / "kubectl-obstop"


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> Iterator[Stack]:
    if not PLUGIN.exists() or not (TOOLS / "kubectl").exists():
        pytest.skip("kubectl-obstop or kubectl is missing: run ./dev setup")
    with Stack(control_plane=control_plane, clusters=3, stage_seconds=0.5) as s:
        user = as_chart_identity(s)  # the controller with only the chart's rights (cancel included)
        s.start_controller()
        yield s
        assert refused_calls(control_plane, user) == [], "the chart's RBAC refused a controller call"


def kubectl(s: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl obstop ...`: kubectl finds the plugin on PATH, as it would for a user."""
    # kubectl passes no flags of its own to a plugin: the kubeconfig comes from $KUBECONFIG, as for a user.
    path = f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(s.kubeconfig)}
    result = subprocess.run(
        [str(TOOLS / "kubectl"), "obstop", "-n", s.namespace, *args],
        capture_output=True, text=True, timeout=150, env=env, check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def test_kubectl_lists_the_plugin(stack: Stack) -> None:
    listed = subprocess.run(
        [str(TOOLS / "kubectl"), "plugin", "list"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    assert "kubectl-obstop" in listed.stdout, listed.stdout + listed.stderr


def test_create_and_wait_prints_each_change_and_exits_0(stack: Stack) -> None:
    run = kubectl(
        stack, "create", "from-flags", "--address", stack.agent(0), "--secret", "obshell-root",
        "--scope", "ZONE", "--target", "zone1", "--mode", "force", "--wait", "--timeout", "90",
    )  # fmt: skip
    lines = run.stdout.splitlines()
    assert lines[0] == f"obstoprequest.obshell.oceanbase.com/from-flags created in {stack.namespace}"
    assert "Succeeded" in lines[-1], run.stdout
    spec = stack.get("from-flags")["spec"]
    assert spec["scope"] == {"type": "ZONE", "target": ["zone1"]} and spec["force"] is True
    status = kubectl(stack, "status", "from-flags").stdout
    assert status.startswith("phase: Succeeded") and "AGENT" in status, status
    assert stack.agent(0) in status


def test_cancel_ends_a_running_stop_cancelled(stack: Stack) -> None:
    stack.sim.clusters[1].stage_seconds = 5.0  # slow enough to cancel mid-way
    kubectl(
        stack,
        "create",
        "to-cancel",
        "--address",
        stack.agent(1),
        "--secret",
        "obshell-root",
        "--mode",
        "force",
    )
    stack.wait_for("to-cancel", lambda s: s.get("phase") in ("Submitted", "Running"), timeout=60)
    cancelled = kubectl(stack, "cancel", "to-cancel")
    assert "cancel asked for" in cancelled.stdout
    watched = kubectl(stack, "watch", "to-cancel", "--timeout", "90", check=False)
    assert watched.returncode == 3, watched.stdout + watched.stderr
    status = stack.get("to-cancel")["status"]
    assert status["phase"] == "Cancelled" and status["reason"] == "CancelledOnRequest", status
    assert "observers already stopped" in status["message"]
    events = stack.wait_for_events(
        "to-cancel", lambda events: any(e["reason"] == "Cancelled" for e in events)
    )
    assert [e["reason"] for e in events].count("Cancelled") == 1, events


def test_bad_flags_are_refused_before_anything_is_created(stack: Stack) -> None:
    refused = kubectl(stack, "create", "bad", "--address", stack.agent(2), "--secret", "s", check=False)
    assert refused.returncode == 1 and "GLOBAL stop needs force or terminate" in refused.stderr, (
        refused.stderr
    )
    missing = kubectl(stack, "status", "no-such-request", check=False)
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr, missing.stderr
    printed = kubectl(
        stack, "create", "p", "--address", stack.agent(2), "--secret", "s", "--mode", "terminate", "--print"
    )
    assert json.loads(printed.stdout)["spec"]["terminate"] is True
    assert shutil.which("kubectl-obstop", path=str(PLUGIN.parent))


def test_precheck_reports_and_stops_nothing(stack: Stack) -> None:
    before = len(stack.sim.stops())
    run = kubectl(
        stack, "precheck", "looked-at", "--address", stack.agent(2), "--secret", "obshell-root",
        "--scope", "ZONE", "--target", "zone2", "--mode", "force", "--timeout", "90",
    )  # fmt: skip
    assert "Validated" in run.stdout.splitlines()[-1], run.stdout
    assert stack.get("looked-at")["spec"]["dryRun"] is True
    assert len(stack.sim.stops()) == before  # nothing was sent


def test_approve_in_ones_own_name_lets_a_manual_request_run(stack: Stack) -> None:
    kubectl(
        stack, "create", "needs-ok", "--address", stack.agent(2), "--secret", "obshell-root",
        "--scope", "ZONE", "--target", "zone3", "--mode", "force", "--approval", "Manual",
    )  # fmt: skip
    stack.wait_for("needs-ok", lambda s: s.get("phase") == "AwaitingApproval", timeout=60)
    approved = kubectl(stack, "approve", "needs-ok", "--comment", "CHG-1")
    assert "needs-ok approved by" in approved.stdout, approved.stdout
    status = stack.wait_for("needs-ok", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["approval"]["approvedBy"] == approved.stdout.rsplit(" ", 1)[-1].strip()
