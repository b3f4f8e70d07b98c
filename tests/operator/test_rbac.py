"""The Helm chart's RBAC against what the controller really calls.

A real `obstop run` goes through a request's whole life (success, failure, a missing Secret, a deletion) against
the emulated API server, which records every call with its User-Agent (Kopf's `kopf/...`, the controller's own
kubernetes client `obstop/...`). Every call must be granted by the chart's rules, and every rule must have been
used, except those listed in UNUSED_BY_DESIGN.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from obstop.testing.stack import Stack, stop_request

ROOT = Path(__file__).resolve().parents[2]
HELM = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "helm"

# Granted on purpose though this scenario does not exercise it (each with its reason).
UNUSED_BY_DESIGN: dict[tuple[str, str, str], str] = {}


def chart_rules(values: list[str]) -> set[tuple[str, str, str]]:
    if not HELM.exists():
        pytest.skip(f"{HELM} is missing: run ./dev setup")
    rendered = subprocess.run(
        [str(HELM), "template", "rbac", str(ROOT / "deploy/helm/ob-stop-operator"), *values],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    granted = set()
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] in ("ClusterRole", "Role"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            granted.add((group, resource, verb))
    return granted


def controller_calls(s: Stack) -> set[tuple[str, str, str]]:
    assert s.api is not None
    return {
        (c.group, c.rbac_resource, c.verb)
        for c in s.api.calls()
        if c.user_agent.startswith(("kopf/", "obstop/"))
    }


def exercise(s: Stack, *controller_args: str) -> None:
    s.start_controller(*controller_args)
    s.create(stop_request("ok", s.agent(0), force=True))
    s.create(stop_request("late-secret", s.agent(1), force=True, secret="late"))
    s.wait_for("late-secret", lambda st: "lastError" in st, timeout=30)
    s.put_secret(s.namespace, "late", {"password": s.password})
    s.sim.faults.fail_stop(2, "Sim.Rbac", "fails", agent=s.agent(2))
    s.create(stop_request("fails", s.agent(2), force=True))
    for name in ("ok", "late-secret", "fails"):
        s.wait_for(name, timeout=60)
    s.delete("ok")


@pytest.mark.timeout(120)
def test_cluster_wide_rbac_grants_exactly_what_is_called() -> None:
    with Stack(clusters=3, stage_seconds=0.05) as s:
        exercise(s)
        used = controller_calls(s)
        s.stop_controller()
    granted = chart_rules([])
    assert used, "no controller calls were recorded"
    assert used - granted == set(), "the controller calls what the chart does not grant"
    assert granted - used - set(UNUSED_BY_DESIGN) == set(), "the chart grants what the controller never calls"


@pytest.mark.timeout(120)
def test_namespaced_rbac_grants_what_a_namespaced_controller_calls() -> None:
    with Stack(clusters=3, stage_seconds=0.05, namespace="team-a") as s:
        exercise(s, "--namespace", "team-a")
        used = controller_calls(s)
        s.stop_controller()
    granted = chart_rules(["--set", "watchNamespaces={team-a}"])
    assert used - granted == set(), "a namespaced controller calls what the chart does not grant"
    assert ("", "namespaces", "watch") in used  # Kopf follows namespaces in this mode
