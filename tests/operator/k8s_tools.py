"""The project's pinned kubectl and helm (installed by ./dev into .tools/bin), run against a kubeconfig."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from obstop.testing.controlplane import AuditEvent, ControlPlane
    from obstop.testing.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin")
CHART = ROOT / "deploy" / "helm" / "ob-stop-operator"


def tool(
    name: str, *args: str, kubeconfig: Path, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `name` (kubectl or helm) with `--kubeconfig`; with `check`, fail the test on a non-zero exit, showing
    its output. Skips when the binary is missing (./dev setup installs it)."""
    binary = TOOLS / name
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run ./dev setup")
    result = subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, f"{name} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def install_chart(s: Stack, release: str, *values: str) -> tuple[str, set[tuple[str, str, str]]]:
    """`helm install` into the stack's namespace; the ServiceAccount's user name and the rules the chart granted
    it (read back from the server, not from the templates)."""
    tool(
        "helm",
        "install",
        release,
        str(CHART),
        "--namespace",
        s.namespace,
        "--set",
        "image.repository=registry.invalid/obstop",  # no kubelet runs here: the pod is never pulled
        *values,
        kubeconfig=s.kubeconfig,
    )

    def stored(kinds: str) -> list[dict[str, Any]]:
        out = tool(
            "kubectl",
            "get",
            kinds,
            "--all-namespaces",
            "-l",
            f"app.kubernetes.io/instance={release}",
            "-o",
            "yaml",
            kubeconfig=s.kubeconfig,
        ).stdout
        items: list[dict[str, Any]] = yaml.safe_load(out)["items"]
        return items

    # Only the roles bound to the controller's ServiceAccount: the chart's roles for people (aggregated into
    # view/edit/admin, templates/user-roles.yaml) are bound to no one by the chart.
    bound = {
        (
            b["roleRef"]["kind"],
            b["roleRef"]["name"],
            b["metadata"].get("namespace", "") if b["roleRef"]["kind"] == "Role" else "",
        )
        for b in stored("clusterrolebindings,rolebindings")
        if any(subject["kind"] == "ServiceAccount" for subject in b.get("subjects") or ())
    }
    granted = set()
    for role in stored("clusterroles,roles"):
        if (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace", "")) not in bound:
            continue
        for rule in role.get("rules") or ():
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        granted.add((group, resource, verb))
    accounts = yaml.safe_load(
        tool(
            "kubectl", "get", "serviceaccounts", "-n", s.namespace, "-o", "yaml", kubeconfig=s.kubeconfig
        ).stdout
    )["items"]
    (account,) = [a["metadata"]["name"] for a in accounts if a["metadata"]["name"].startswith(release)]
    return account, granted


def run_as(s: Stack, account: str) -> Path:
    """A kubeconfig with a real token of the ServiceAccount (TokenRequest, as `kubectl create token` gets it)."""
    token = tool(
        "kubectl", "create", "token", account, "-n", s.namespace, "--duration", "2h", kubeconfig=s.kubeconfig
    ).stdout.strip()
    assert s.control_plane is not None
    return s.control_plane.write_kubeconfig(s.workdir / f"{account}.kubeconfig", token=token)


def calls_of(cp: ControlPlane, user: str) -> list[AuditEvent]:
    return [e for e in cp.audit_events() if e.user == user]


def as_chart_identity(s: Stack) -> str:
    """Install the chart's RBAC for a controller watching the stack's namespace (namespaced mode) and make the
    stack's controller run with a token of the chart's ServiceAccount: operator scenarios then run with only
    the rights the chart grants. Returns the ServiceAccount's user name, to read its calls from the audit log."""
    account, _ = install_chart(s, f"sa-{s.namespace}", "--set", f"watchNamespaces={{{s.namespace}}}")
    s.controller_kubeconfig = run_as(s, account)
    return f"system:serviceaccount:{s.namespace}:{account}"


def refused_calls(cp: ControlPlane, user: str) -> list[tuple[str, str, str, str]]:
    """The calls of `user` that the API server refused for want of rights (403), from the audit log."""
    events = calls_of(cp, user)
    assert events, f"the audit log shows no call by {user}"
    return sorted({(e.verb, e.resource, e.subresource, e.namespace) for e in events if e.code == 403})
