"""Bad input as a person meets it: `kubectl apply` (the pinned kubectl, `--validate=false` because the emulated
API server serves no OpenAPI document) against the emulated API server, whose admission is the project's CRD
validator (schema + CEL). Each refusal must reach the person's terminal with its own message. The full
61-case table runs against the validator directly in tests/unit/test_admission.py; this is the smaller table
that goes through HTTP and kubectl."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from obstop.testing.kube import ApiServerThread
from obstop.testing.stack import crd_path

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "kubectl"
pytestmark = pytest.mark.timeout(120)

SERVER_TARGETS = "SERVER targets must be obshell agent addresses"
ADDRESS_FORM = "the address must be host[:port]"


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServerThread]:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is missing: run ./dev setup")
    with ApiServerThread() as server:
        server.apply(yaml.safe_load(crd_path().read_text()))
        yield server


def kubectl(
    api: ApiServerThread, *args: str, manifest: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(api.kubeconfig), "-n", "default", *args],
        input=yaml.safe_dump(manifest) if manifest is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def apply(api: ApiServerThread, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl(api, "apply", "--validate=false", "-f", "-", manifest=manifest)


def request(name: str, **spec: Any) -> dict[str, Any]:
    """A valid ZONE stop named `name`, with top-level spec keys replaced by `spec`."""
    body: dict[str, Any] = {
        "obshell": {"address": "10.0.0.1:2886", "passwordSecretRef": {"name": "obshell-root"}},
        "scope": {"type": "ZONE", "target": ["zone1"]},
    }
    body.update(spec)
    return {
        "apiVersion": "obshell.oceanbase.com/v1alpha1",
        "kind": "ObStopRequest",
        "metadata": {"name": name},
        "spec": body,
    }


def servers(*targets: str) -> dict[str, Any]:
    return {"scope": {"type": "SERVER", "target": list(targets)}, "force": True}


def address(text: str) -> dict[str, Any]:
    return {"obshell": {"address": text, "passwordSecretRef": {"name": "obshell-root"}}}


# (name, spec changes, the field and the words kubectl must print)
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown-scope",
        {"scope": {"type": "CLUSTER", "target": []}},
        "spec.scope.type",
        'Unsupported value: "CLUSTER"',
    ),
    ("force-string", {"force": "yes"}, "spec.force", "must be of type boolean"),
    ("zone-no-targets", {"scope": {"type": "ZONE", "target": []}}, "spec.scope.target", "ZONE"),
    (
        "duplicate-zones",
        {"scope": {"type": "ZONE", "target": ["zone1", "zone1"]}},
        "spec.scope.target[1]",
        "Duplicate value",
    ),
    ("bad-ipv4", servers("10.0.0.256:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv6-no-brackets", servers("fd00::2:2886"), "spec.scope.target", SERVER_TARGETS),
    ("port-out-of-range", servers("10.0.0.2:65536"), "spec.scope.target", SERVER_TARGETS),
    (
        "huge-list",
        servers(*(f"10.0.{i // 250}.{i % 250}:2886" for i in range(257))),
        "spec.scope.target",
        "Too many",
    ),
    ("long-address", address("a" * 513), "spec.obshell.address", "Too long"),
    ("address-port", address("10.0.0.1:99999"), "spec.obshell.address", ADDRESS_FORM),
    ("global-neither", {"scope": {"type": "GLOBAL"}}, "spec", "force"),
    ("force-and-terminate", {"force": True, "terminate": True}, "spec", "terminate"),
    (
        "deadline-zero",
        {"activeDeadlineSeconds": 0},
        "spec.activeDeadlineSeconds",
        "should be greater than or equal to 1",
    ),
    ("dag-id-letters", {"forcePassDag": ["2abc"]}, "spec.forcePassDag[0]", "should match"),
]


@pytest.mark.parametrize(("name", "spec", "field", "words"), REFUSED, ids=[case[0] for case in REFUSED])
def test_kubectl_shows_why_a_request_is_refused(
    api: ApiServerThread, name: str, spec: dict[str, Any], field: str, words: str
) -> None:
    result = apply(api, request(name, **spec))
    assert result.returncode != 0, result.stdout
    assert f'The ObStopRequest "{name}" is invalid' in result.stderr
    assert field in result.stderr and words in result.stderr, result.stderr
    assert api.get("obshell.oceanbase.com/v1alpha1", "ObStopRequest", name, "default") is None


EDITS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("force-flipped", lambda spec: spec.update(force=True)),
    ("other-zone", lambda spec: spec["scope"].update(target=["zone2"])),
    ("other-agent", lambda spec: spec["obshell"].update(address="10.0.0.9:2886")),
]


@pytest.mark.parametrize(("name", "edit"), EDITS, ids=[case[0] for case in EDITS])
def test_a_changed_spec_is_refused_after_creation(
    api: ApiServerThread, name: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    original = request(f"immutable-{name}")
    assert apply(api, original).returncode == 0
    changed = request(f"immutable-{name}")
    edit(changed["spec"])
    result = apply(api, changed)
    assert result.returncode != 0
    assert "spec is immutable: create a new ObStopRequest for a different stop" in result.stderr, (
        result.stderr
    )


ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("ipv6-server", servers("[fd00::2]:2886", "10.0.0.2")),
    ("dns-https-address", address("https://obshell-0.obshell.oceanbase.svc:2886")),
    ("bracketed-ipv6-address", address("[fd00::1]")),
    ("most-targets", servers(*(f"10.0.{i // 250}.{i % 250}:2886" for i in range(256)))),
    (
        "global-terminate-deadline",
        {"scope": {"type": "GLOBAL"}, "terminate": True, "activeDeadlineSeconds": 1},
    ),
    ("zone-name-128", {"scope": {"type": "ZONE", "target": ["z" * 128]}}),
]


@pytest.mark.parametrize(("name", "spec"), ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_valid_edge_cases_are_accepted(api: ApiServerThread, name: str, spec: dict[str, Any]) -> None:
    result = apply(api, request(name, **spec))
    assert result.returncode == 0, result.stderr
    assert f"obstoprequest.obshell.oceanbase.com/{name} created" in result.stdout


def test_unknown_fields_are_dropped_not_stored(api: ApiServerThread) -> None:
    result = apply(api, request("with-extra", color="red"))
    assert result.returncode == 0, result.stderr
    stored = api.get("obshell.oceanbase.com/v1alpha1", "ObStopRequest", "with-extra", "default")
    assert stored is not None and "color" not in stored["spec"]
