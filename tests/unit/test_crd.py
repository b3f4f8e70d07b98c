"""The ObStopRequest CRD file itself: names, structure, documentation, CEL portability and cost bounds, and the
shape of the examples in examples/. Pure checks of the real files, no server: that a real kube-apiserver accepts
the CRD, needs its bounds and admits every example is tests/operator/test_admission.py."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "deploy" / "crds" / "obshell.oceanbase.com_obstoprequests.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBECTL = Path(os.environ.get("OBSTOP_TOOLS_BIN", ROOT / ".tools" / "bin")) / "kubectl"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d]
    assert len(documents) == 1
    return documents[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")


def test_names_scope_and_version(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "obstoprequests.obshell.oceanbase.com"
    spec = crd["spec"]
    assert spec["group"] == "obshell.oceanbase.com"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ObStopRequest",
        "listKind": "ObStopRequestList",
        "plural": "obstoprequests",
        "singular": "obstoprequest",
        "shortNames": ["obstop"],
        "categories": ["oceanbase"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_the_crd_outlives_an_uninstall_and_an_argo_cd_application(crd: dict[str, Any]) -> None:
    """Deleting the CRD deletes every request, and a Git source re-creating them stops the clusters again: Argo CD
    (which applies crds/ itself) must neither delete it with its Application nor prune it (docs/gitops.md)."""
    annotations = crd["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"
    options = set(annotations["argocd.argoproj.io/sync-options"].split(","))
    assert options == {"Delete=false", "Prune=false"}


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"]) for c in columns] == [
        ("Scope", ".spec.scope.type"),
        ("Targets", ".spec.scope.target"),
        ("Force", ".spec.force"),
        ("Phase", ".status.phase"),
        ("Approved-By", ".status.approval.approvedBy"),
        ("Stage", ".status.progress"),
        ("DAG", ".status.dag.id"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    assert {c["name"]: c["type"] for c in columns}["Force"] == "boolean"
    assert {c["name"]: c["type"] for c in columns}["Age"] == "date"


def test_field_names_are_the_contract(schema: dict[str, Any]) -> None:
    paths = {path for path, _ in walk(schema)}
    assert {
        "spec.obshell.address",
        "spec.obshell.passwordSecretRef.name",
        "spec.obshell.passwordSecretRef.key",
        "spec.obshell.caSecretRef.name",
        "spec.obshell.caSecretRef.key",
        "spec.obshell.insecureSkipTLSVerify",
        "spec.scope.type",
        "spec.scope.target",
        "spec.force",
        "spec.terminate",
        "spec.forcePassDag",
        "spec.activeDeadlineSeconds",
        "spec.deadlineAction",
        "spec.dryRun",
        "spec.approval",
        "status.phase",
        "status.observedGeneration",
        "status.startTime",
        "status.completionTime",
        "status.reason",
        "status.message",
        "status.progress",
        "status.attempts",
        "status.lastError",
        "status.nextCheckTime",
        "status.precheck.checkedAt",
        "status.precheck.lockHolders[].mainDagId",
        "status.approval.approvedBy",
        "status.approval.approvedAt",
        "status.submission.agent",
        "status.submission.requestedAt",
        "status.dag.id",
        "status.dag.dagId",
        "status.dag.name",
        "status.dag.stage",
        "status.dag.maxStage",
        "status.dag.state",
        "status.dag.operator",
        "status.dag.startTime",
        "status.dag.endTime",
        "status.dag.currentNode",
        "status.dag.failedNode",
        "status.conditions[].type",
        "status.conditions[].status",
        "status.conditions[].observedGeneration",
        "status.conditions[].lastTransitionTime",
        "status.conditions[].reason",
        "status.conditions[].message",
        "status.cancellation.by",
        "status.agents[].agent",
        "status.agents[].observerStopped",
    } <= paths
    spec = schema["properties"]["spec"]
    assert schema["required"] == ["spec"]
    assert spec["required"] == ["obshell", "scope"]
    assert spec["properties"]["scope"]["properties"]["type"]["enum"] == ["GLOBAL", "ZONE", "SERVER"]
    assert schema["properties"]["status"]["properties"]["phase"]["enum"] == [
        "Pending",
        "AwaitingApproval",
        "Submitted",
        "Running",
        "Succeeded",
        "Failed",
        "Cancelled",
        "Validated",
    ]
    assert spec["properties"]["approval"]["enum"] == ["Automatic", "Manual"]
    assert spec["properties"]["approval"]["default"] == "Automatic"
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_schema_is_structural_and_documented(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert "type" in node, f"{path or '<root>'} has no type"
        # kube-apiserver refuses anything but `type` on metadata (tests/operator/test_admission.py).
        if path != "metadata":
            assert node.get("description", "").strip(), f"{path or '<root>'} has no description"
        assert not node.get("x-kubernetes-preserve-unknown-fields"), f"{path} preserves unknown fields"
        if node["type"] == "object" and path not in ("metadata",):
            assert node.get("properties"), f"{path or '<root>'} is an object without declared properties"
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), f"{path} has no items schema"
        for key in node.get("required", []):
            assert key in node["properties"], f"{path} requires undeclared {key}"
        if "default" in node:
            assert node["type"] == {bool: "boolean", str: "string", list: "array"}[type(node["default"])], (
                path
            )


def test_every_rule_has_a_message(schema: dict[str, Any]) -> None:
    """Whether the rules compile and fit the cost budget is the real server's verdict
    (tests/operator/test_admission.py); a person reading a refusal needs each rule's own message."""
    rules = [(path, rule) for path, node in walk(schema) for rule in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 10
    for path, rule in rules:
        assert rule.get("message", "").strip(), f"{path}: rule {rule['rule']!r} has no message"


def test_rules_only_read_bounded_values(schema: dict[str, Any]) -> None:
    """A real API server refuses a CRD whose rules could cost too much: every string and list that a rule can
    reach (everything under spec) must be bounded."""
    for path, node in walk(schema["properties"]["spec"], "spec"):
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node, f"{path} is an unbounded string"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} is an unbounded list"
    for path, node in walk(schema):
        if path.startswith("status"):
            assert "x-kubernetes-validations" not in node, "status rules would run on every controller write"


def test_spec_is_immutable_by_a_transition_rule(schema: dict[str, Any]) -> None:
    spec_rules = schema["properties"]["spec"]["x-kubernetes-validations"]
    assert {
        "rule": "self == oldSelf",
        "message": "spec is immutable: create a new ObStopRequest for a different stop",
    } in (spec_rules)


def test_kubectl_can_decode_the_crd_offline(crd: dict[str, Any], tmp_path: Path) -> None:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is not installed (./dev setup installs it)")
    # `label --local` decodes the file with kubectl's own scheme and needs no server.
    result = subprocess.run(
        [str(KUBECTL), "label", "--local", "-f", str(CRD_PATH), "checked=yes", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    decoded = json.loads(result.stdout)
    assert decoded["metadata"]["labels"].pop("checked") == "yes"
    assert decoded == crd


# --- examples ---------------------------------------------------------------------------------------------


def load_example(path: Path) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(documents) == 1, f"{path.name}: one manifest per file"
    return documents[0]  # type: ignore[no-any-return]


def test_the_examples_cover_every_scope_and_mode() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "secret.yaml",
        "global-force.yaml",
        "global-terminate.yaml",
        "zone-immediate.yaml",
        "server-force.yaml",
        "with-force-pass-dag.yaml",
        "https-agent.yaml",
        "dry-run.yaml",
        "manual-approval.yaml",
        "approval.yaml",
    } <= names
    requests = [load_example(p) for p in EXAMPLES if p.name != "secret.yaml"]
    requests = [r for r in requests if r["kind"] == "ObStopRequest"]  # approval.yaml is an ObStopApproval
    kinds = {
        (r["spec"]["scope"]["type"], r["spec"].get("force", False), r["spec"].get("terminate", False))
        for r in requests
    }
    assert {
        ("GLOBAL", True, False),
        ("GLOBAL", False, True),
        ("ZONE", False, False),
        ("SERVER", True, False),
    } <= kinds


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.name != "secret.yaml"], ids=lambda p: p.name)
def test_every_example_is_a_commented_request_without_a_namespace(path: Path) -> None:
    example = load_example(path)
    assert path.read_text().startswith("# "), f"{path.name} has no header comment"
    assert example["apiVersion"] == "obshell.oceanbase.com/v1alpha1"
    assert "namespace" not in example["metadata"]
    if example["kind"] == "ObStopApproval":  # approves examples/manual-approval.yaml
        assert (
            example["spec"]["requestName"]
            == load_example(ROOT / "examples" / "manual-approval.yaml")["metadata"]["name"]
        )
        return
    assert example["kind"] == "ObStopRequest"
    assert example["spec"]["obshell"]["passwordSecretRef"]["name"] == "obshell-root"
    assert "status" not in example


def test_the_secret_example() -> None:
    secret = load_example(ROOT / "examples" / "secret.yaml")
    assert (ROOT / "examples" / "secret.yaml").read_text().startswith("# ")
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "obshell-root"
    # Its owner says where the password may go (docs/security.md): the agents the request examples call.
    allowed = {
        a.strip()
        for a in secret["metadata"]["annotations"]["obshell.oceanbase.com/allowed-agents"].split(",")
    }
    addresses = {
        load_example(p)["spec"]["obshell"]["address"]
        for p in EXAMPLES
        if p.name not in ("secret.yaml", "approval.yaml")
    }
    assert "10.0.0.11:2886" in allowed and "10.0.0.11:2886" in addresses
    assert secret["stringData"] == {"password": "change-me"}
