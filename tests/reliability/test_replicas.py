"""Two controller replicas at once (Kopf peering, `obstop run --peering NAME`): never two stops for a request.

Both replicas are real `obstop run` processes against the session's real kube-apiserver, each watching the
stack's namespace only. Kopf's peering CRDs come from the Helm chart (rendered with the pinned helm) and are
applied with the pinned kubectl, as `helm install` would; the namespaced KopfPeering object is created by the
replicas themselves at start (both start at once, so they race to create it).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from reliability_support import control_plane_of, landed_on, stops_on

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack, stop_request
from obstop.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin")
HELM, KUBECTL = TOOLS / "helm", TOOLS / "kubectl"
CHART = ROOT / "deploy" / "helm" / "ob-stop-operator"
PEERING = "obstop-ha"


def _kubectl(cp: ControlPlane, *args: str, manifests: str | None = None) -> str:
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cp.kubeconfig), *args],
        input=manifests, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def _install_peering_crds(s: Stack) -> None:
    """Apply the chart's peering CRDs and wait until the real server serves them."""
    rendered = subprocess.run(
        [str(HELM), "template", "ha", str(CHART), "--set", "peering.enabled=true",
         "--show-only", "templates/peering-crds.yaml"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    cp = control_plane_of(s)
    _kubectl(cp, "apply", "-f", "-", manifests=rendered)
    _kubectl(cp, "wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev")


def _peers(s: Stack, peering: str) -> dict[str, Any]:
    """The live peers Kopf lists in the KopfPeering object's status (none while the object is not created)."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = s.custom.get_namespaced_custom_object("kopf.dev", "v1", s.namespace, "kopfpeerings", peering)
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    peers: dict[str, Any] = obj.get("status") or {}
    return peers


def _submissions(log: str, namespace: str) -> set[str]:
    """Names of the requests for which this replica sent (or adopted) a stop."""
    pattern = rf"\[{re.escape(namespace)}/([\w-]+)\] (?:stop DAG \S+ submitted|adopting stop DAG)"
    return set(re.findall(pattern, log))


def _kill(s: Stack, *procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
    s.controller = None


def _one_stop_each_succeeded(s: Stack, names: list[str], statuses: dict[str, dict[str, Any]]) -> None:
    for index, name in enumerate(names):
        assert statuses[name]["phase"] == "Succeeded", statuses[name]
        assert len(landed_on(s, index)) == 1 and len(stops_on(s, index)) == 1, name


@pytest.mark.skipif(not (HELM.exists() and KUBECTL.exists()), reason="the pinned helm/kubectl: ./dev setup")
def test_two_replicas_at_once_never_submit_twice(control_plane: ControlPlane) -> None:
    """Two replicas start at once and meet in a KopfPeering that exactly one of them creates; four requests.
    Expected: each is handled by exactly one replica (the leader), all Succeeded. Then the leader gets SIGTERM
    (a rolling update) while four more run: the other replica takes over and finishes them. Every cluster got
    exactly one stop."""
    with Stack(control_plane=control_plane, clusters=8, stage_seconds=0.2) as s:
        _install_peering_crds(s)
        first = s.start_controller("--peering", PEERING)
        s.controller = None  # Stack tracks one controller; the test owns both
        second = s.start_controller("--peering", PEERING)
        try:
            wait_until(
                lambda: len(_peers(s, PEERING)) == 2,
                timeout=60,
                what="both replicas announce themselves in the peering object",
            )
            names = [f"ha-{index}" for index in range(4)]
            for index, name in enumerate(names):
                s.create(stop_request(name, s.agent(index), force=True))
            statuses = {name: s.wait_for(name, timeout=60) for name in names}
            logs = [(s.workdir / f"controller-{run}.log").read_text() for run in (1, 2)]
            acted = [_submissions(log, s.namespace) for log in logs]
            created = f"created the peering object KopfPeering {s.namespace}/{PEERING}"
            assert sum(created in log for log in logs) == 1, "not exactly one replica created the peering"
            assert acted[0] | acted[1] == set(names), acted
            assert not acted[0] & acted[1], f"both replicas acted on {acted[0] & acted[1]}"

            # The leader leaves (a rolling update: SIGTERM) while its requests run: the other one finishes them.
            leader, follower = (first, second) if acted[0] else (second, first)
            follower_log = s.workdir / f"controller-{2 if acted[0] else 1}.log"
            later = [f"ha-{index}" for index in range(4, 8)]
            for index, name in enumerate(later, start=4):
                s.sim.clusters[index].stage_seconds = 1.0  # six stages: still running when the leader leaves
                s.create(stop_request(name, s.agent(index), terminate=True))
            for name in later:
                s.wait_for(name, lambda st: st.get("phase") == "Running")
            leader.terminate()
            assert leader.wait(30) == 0
            statuses.update({name: s.wait_for(name, timeout=90) for name in later})
            names += later
            assert follower.poll() is None
            finished = follower_log.read_text()
            for name in later:
                assert re.search(rf"\[{s.namespace}/{name}\] stop DAG \S+ finished: Succeeded", finished), (
                    name
                )
        finally:
            _kill(s, first, second)
        _one_stop_each_succeeded(s, names, statuses)


@pytest.mark.skipif(not (HELM.exists() and KUBECTL.exists()), reason="the pinned helm/kubectl: ./dev setup")
def test_a_replica_paused_by_peering_stops_following(control_plane: ControlPlane) -> None:
    """A replica (priority 1) follows four running stops; a second one with a higher priority (2) joins, as in a
    rolling update, and Kopf pauses the first. The controller schedules its own steps (follow.py), so Kopf's
    pause must stop them too: the paused replica begins no step once Kopf paused it (main.PeeringPause).
    Expected: the new replica finishes every request, the paused one says it is paused and reports none
    finished after its pause, and every cluster got exactly one stop."""
    with Stack(control_plane=control_plane, clusters=4, stage_seconds=2.0) as s:
        _install_peering_crds(s)
        first = s.start_controller("--peering", PEERING, env={"OBSTOP_PEERING_PRIORITY": "1"})
        s.controller = None  # Stack tracks one controller; the test owns both
        second = None
        try:
            wait_until(
                lambda: len(_peers(s, PEERING)) == 1, timeout=60, what="the first replica announces itself"
            )
            names = [f"paused-{index}" for index in range(4)]
            for index, name in enumerate(names):
                s.create(stop_request(name, s.agent(index), terminate=True))
            for name in names:
                s.wait_for(name, lambda st: st.get("phase") == "Running")
            first_log = s.workdir / "controller-1.log"
            second = s.start_controller("--peering", PEERING, env={"OBSTOP_PEERING_PRIORITY": "2"})
            s.controller = None
            wait_until(
                lambda: "Pausing operations in favour of" in first_log.read_text(),
                timeout=60,
                what="Kopf pauses the first replica",
            )
            paused_at = len(first_log.read_text())
            statuses = {name: s.wait_for(name, timeout=90) for name in names}
            after_pause = first_log.read_text()[paused_at:]
            taken_over = (s.workdir / "controller-2.log").read_text()
            for name in names:
                assert not re.search(rf"\[{s.namespace}/{name}\] stop DAG \S+ finished", after_pause), (
                    after_pause
                )
                assert re.search(rf"\[{s.namespace}/{name}\] stop DAG \S+ finished: Succeeded", taken_over), (
                    name
                )
            assert "paused by peering: no request begins a step until resumed" in first_log.read_text()
            assert first.poll() is None and second.poll() is None
        finally:
            _kill(s, first, second)
        _one_stop_each_succeeded(s, names, statuses)
