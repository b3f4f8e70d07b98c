"""The Helm chart's RBAC against what the controller really calls, judged by a real kube-apiserver.

The chart is installed for real (`helm install` with the pinned Helm 4, into a real control plane); the controller
(a real `obstop run`) then runs with a token of the chart's own ServiceAccount (TokenRequest, as
`kubectl create token` gets it), so only the RBAC objects the chart created authorize it. It goes through a
request's whole life (success, failure, a missing Secret, a deletion), and the real audit log records every call
with its user. Every call must have been allowed (no 403), and every rule the chart grants must have been used,
except those listed in UNUSED_BY_DESIGN. Nothing is mocked; obshell is the simulator.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from k8s_tools import CHART, calls_of, install_chart, run_as, tool

from obstop.testing.controlplane import AuditEvent, ControlPlane
from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(180)

# Granted on purpose though this scenario does not exercise it (each with its reason).
UNUSED_BY_DESIGN: dict[tuple[str, str, str], str] = {}


def run(name: str, *args: str, kubeconfig: Path) -> str:
    return tool(name, *args, kubeconfig=kubeconfig).stdout


def exercise(s: Stack, kubeconfig: Path, *controller_args: str, env: dict[str, str] | None = None) -> None:
    s.start_controller(*controller_args, kubeconfig=kubeconfig, env=env)
    s.create(stop_request("ok", s.agent(0), force=True))
    s.create(stop_request("late-secret", s.agent(1), force=True, secret="late"))
    s.wait_for("late-secret", lambda st: "lastError" in st, timeout=60)
    s.put_secret(s.namespace, "late", {"password": s.password})
    s.sim.faults.fail_stop(2, "Sim.Rbac", "fails", agent=s.agent(2))
    s.create(stop_request("fails", s.agent(2), force=True))
    for name in ("ok", "late-secret", "fails"):
        s.wait_for(name, timeout=60)
    # A request waiting for its approval lists the ObStopApprovals (and never finishes here). After the others:
    # its pre-check would otherwise see their stops holding the agents' locks.
    s.create(stop_request("approve-me", s.agent(0), force=True, approval="Manual"))
    s.wait_for("approve-me", lambda st: st.get("reason") == "AwaitingApproval", timeout=60)
    time.sleep(1)  # its next look for an approval (OBSTOP_APPROVAL_POLL_SECONDS=0.3)
    s.delete("ok")
    s.stop_controller()


def as_rules(events: list[AuditEvent]) -> set[tuple[str, str, str]]:
    return {
        (e.api_group, f"{e.resource}/{e.subresource}" if e.subresource else e.resource, e.verb)
        for e in events
        if e.resource  # discovery (/api, /apis) is granted to every authenticated user
    }


def check(cp: ControlPlane, s: Stack, account: str, granted: set[tuple[str, str, str]]) -> None:
    events = calls_of(cp, f"system:serviceaccount:{s.namespace}:{account}")
    assert events, "the audit log shows no call by the chart's ServiceAccount"
    refused = sorted(
        {(e.verb, e.resource, e.subresource, e.namespace, e.code) for e in events if e.code == 403}
    )
    assert refused == [], f"the chart's RBAC refused calls the controller makes: {refused}"
    used = as_rules(events)
    assert used - granted == set(), "the controller calls what the chart does not grant"
    assert granted - used - set(UNUSED_BY_DESIGN) == set(), "the chart grants what the controller never calls"


@pytest.fixture
def own_control_plane() -> Iterator[ControlPlane]:
    """Cluster-wide mode sees every namespace: a control plane of its own, so no other test's objects show."""
    with ControlPlane() as cp:
        yield cp


def test_cluster_wide_rbac_grants_exactly_what_is_called(own_control_plane: ControlPlane) -> None:
    with Stack(clusters=3, stage_seconds=0.05, control_plane=own_control_plane) as s:
        s.watch_namespace = False
        account, granted = install_chart(s, "rbac-wide")
        exercise(s, run_as(s, account))
        check(own_control_plane, s, account, granted)


def test_namespaced_rbac_grants_what_a_namespaced_controller_calls(control_plane: ControlPlane) -> None:
    with Stack(clusters=3, stage_seconds=0.05, control_plane=control_plane) as s:
        release = f"rbac-{s.namespace}"
        account, granted = install_chart(s, release, "--set", f"watchNamespaces={{{s.namespace}}}")
        exercise(s, run_as(s, account))
        check(control_plane, s, account, granted)
        assert ("", "namespaces", "watch") in granted  # Kopf follows namespaces in this mode
        run("helm", "uninstall", release, "--namespace", s.namespace, kubeconfig=s.kubeconfig)


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_rbac_with_peering_and_repeated_syncs(control_plane: ControlPlane, mode: str) -> None:
    """With peering the controller creates its (Cluster)KopfPeering at start (no Helm hook): the chart grants
    exactly that, and repeated upgrades (what an Argo CD sync does) never replace the object under running
    replicas. Cluster-wide mode sees every namespace, so it gets a control plane of its own."""
    with contextlib.ExitStack() as scope:
        cp = control_plane if mode == "namespaced" else scope.enter_context(ControlPlane())
        s = scope.enter_context(Stack(clusters=3, stage_seconds=0.05, control_plane=cp))
        release = f"peer-{s.namespace}"
        values = ["--set", "replicas=2,peering.enabled=true"]
        if mode == "namespaced":
            values += ["--set", f"watchNamespaces={{{s.namespace}}}"]
        else:
            s.watch_namespace = False
        account, granted = install_chart(s, release, *values)
        deployment = yaml.safe_load(
            run("kubectl", "get", "deployments", "-n", s.namespace, "-o", "yaml", kubeconfig=s.kubeconfig)
        )["items"][0]
        env = {
            e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        peering = env["OBSTOP_PEERING"]
        kind, where = (
            ("kopfpeerings", ("-n", s.namespace)) if mode == "namespaced" else ("clusterkopfpeerings", ())
        )
        get_peering = ("get", kind, peering, *where, "-o", "jsonpath={.metadata.uid}")
        exercise(s, run_as(s, account), env={"OBSTOP_PEERING": peering})
        check(cp, s, account, granted)
        assert ("kopf.dev", kind, "create") in granted
        uid = run("kubectl", *get_peering, kubeconfig=s.kubeconfig)
        assert uid
        for _ in range(2):
            run(
                "helm",
                "upgrade",
                release,
                str(CHART),
                "-n",
                s.namespace,
                "--reuse-values",
                kubeconfig=s.kubeconfig,
            )
        assert run("kubectl", *get_peering, kubeconfig=s.kubeconfig) == uid
