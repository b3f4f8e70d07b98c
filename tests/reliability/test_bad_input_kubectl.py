"""Bad input as a person meets it: the pinned kubectl, with its default validation (server-side field
validation, Strict), against the session's real kube-apiserver, whose admission runs the CRD's schema and CEL
rules. The CRD is installed as docs/install.md says (`kubectl apply --server-side -f deploy/crds/`). Each
refusal must reach the person's terminal with the server's own message. The full matrix runs as dry-runs in
tests/operator/test_admission.py; this is the smaller table that goes through kubectl. Nothing is mocked."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import minimal_request

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "kubectl"
pytestmark = pytest.mark.timeout(180)

SERVER_TARGETS = "SERVER targets must be obshell agent addresses"
ADDRESS_FORM = "the address must be host[:port]"
IMMUTABLE = "spec is immutable: create a new ObStopRequest for a different stop"


@dataclass
class Kubectl:
    kubeconfig: Path
    cache: Path
    namespace: str

    def __call__(
        self, *args: str, manifest: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache),
             "-n", self.namespace, *args],
            input=yaml.safe_dump(manifest) if manifest is not None else None,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )  # fmt: skip

    def apply(self, manifest: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
        return self("apply", *flags, "-f", "-", manifest=manifest)

    def stored(self, name: str) -> dict[str, Any] | None:
        result = self("get", "obstoprequest", name, "-o", "json")
        if result.returncode != 0:
            assert "NotFound" in result.stderr, result.stderr
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found


@pytest.fixture(scope="module")
def kubectl(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is missing: run ./dev setup")
    run = Kubectl(
        control_plane.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"), f"obstop-{secrets.token_hex(4)}"
    )
    for args in (
        ("create", "namespace", run.namespace),
        ("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "deploy" / "crds")),
        ("wait", "--for=condition=Established", "crd/obstoprequests.obshell.oceanbase.com", "--timeout=60s"),
    ):
        done = run(*args)
        assert done.returncode == 0, done.stderr
    yield run


request = minimal_request  # a valid ZONE stop named `name`, with top-level spec keys replaced


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
    (
        "force-string",
        {"force": "yes"},
        "spec.force",
        'Invalid value: "string": spec.force in body must be of type boolean',
    ),
    (
        "zone-no-targets",
        {"scope": {"type": "ZONE", "target": []}},
        "spec.scope.target",
        "a ZONE or SERVER stop",
    ),
    (
        "duplicate-zones",
        {"scope": {"type": "ZONE", "target": ["zone1", "zone1"]}},
        "spec.scope.target[1]",
        'Duplicate value: "zone1"',
    ),
    ("bad-ipv4", servers("10.0.0.256:2886"), "spec.scope.target", SERVER_TARGETS),
    ("ipv6-no-brackets", servers("fd00::2:2886"), "spec.scope.target", SERVER_TARGETS),
    ("port-out-of-range", servers("10.0.0.2:65536"), "spec.scope.target", SERVER_TARGETS),
    (
        "huge-list",
        servers(*(f"10.0.{i // 250}.{i % 250}:2886" for i in range(257))),
        "spec.scope.target",
        "Too many: 257: must have at most 256 items",
    ),
    ("long-address", address("a" * 513), "spec.obshell.address", "Too long: may not be more than 512 bytes"),
    ("address-port", address("10.0.0.1:99999"), "spec.obshell.address", ADDRESS_FORM),
    (
        "global-neither",
        {"scope": {"type": "GLOBAL"}},
        "spec",
        "a GLOBAL stop needs force: true or terminate: true",
    ),
    (
        "force-and-terminate",
        {"force": True, "terminate": True},
        "spec",
        "force and terminate cannot both be true",
    ),
    (
        "deadline-zero",
        {"activeDeadlineSeconds": 0},
        "spec.activeDeadlineSeconds",
        "should be greater than or equal to 1",
    ),
    (
        "dag-id-letters",
        {"forcePassDag": ["2abc"]},
        "spec.forcePassDag[0]",
        "should match '^[1-5][0-9]{1,60}$'",
    ),
]


@pytest.mark.parametrize(("name", "spec", "field", "words"), REFUSED, ids=[case[0] for case in REFUSED])
def test_kubectl_shows_why_a_request_is_refused(
    kubectl: Kubectl, name: str, spec: dict[str, Any], field: str, words: str
) -> None:
    result = kubectl.apply(request(name, **spec))
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith(f'The ObStopRequest "{name}" is invalid: '), result.stderr
    # One cause is printed inline; several as a list, one `* field: message` a line.
    lines = result.stderr.removeprefix(f'The ObStopRequest "{name}" is invalid: ').strip().splitlines()
    causes = [line.removeprefix("* ") for line in lines if line.strip()]
    assert any(c.startswith(f"{field}: ") and words in c for c in causes), result.stderr
    assert kubectl.stored(name) is None


def test_several_causes_are_listed_one_a_line(kubectl: Kubectl) -> None:
    result = kubectl.apply(request("many-faults", force="yes", activeDeadlineSeconds=0))
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert lines[0] == 'The ObStopRequest "many-faults" is invalid: '
    assert sorted(lines[1:3]) == [
        "* spec.activeDeadlineSeconds: Invalid value: 0: spec.activeDeadlineSeconds in body should be greater "
        "than or equal to 1",
        '* spec.force: Invalid value: "string": spec.force in body must be of type boolean: "string"',
    ]


EDITS: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("force-flipped", lambda spec: spec.update(force=True)),
    ("other-zone", lambda spec: spec["scope"].update(target=["zone2"])),
    ("other-agent", lambda spec: spec["obshell"].update(address="10.0.0.9:2886")),
]


@pytest.mark.parametrize(("name", "edit"), EDITS, ids=[case[0] for case in EDITS])
def test_a_changed_spec_is_refused_after_creation(
    kubectl: Kubectl, name: str, edit: Callable[[dict[str, Any]], None]
) -> None:
    original = request(f"immutable-{name}")
    created = kubectl.apply(original)
    assert created.returncode == 0, created.stderr
    changed = request(f"immutable-{name}")
    edit(changed["spec"])
    result = kubectl.apply(changed)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        f'The ObStopRequest "immutable-{name}" is invalid: spec: Invalid value: {IMMUTABLE}'
    ), result.stderr
    stored = kubectl.stored(f"immutable-{name}")
    assert stored is not None and stored["spec"]["scope"]["target"] == ["zone1"]
    assert stored["spec"]["obshell"]["address"] == "10.0.0.1:2886" and stored["spec"]["force"] is False


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
def test_valid_edge_cases_are_accepted(kubectl: Kubectl, name: str, spec: dict[str, Any]) -> None:
    result = kubectl.apply(request(name, **spec))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"obstoprequest.obshell.oceanbase.com/{name} created"
    wanted, stored = request(name, **spec)["spec"], kubectl.stored(name)
    assert stored is not None
    assert stored["spec"]["scope"]["type"] == wanted["scope"]["type"]
    assert stored["spec"]["scope"]["target"] == wanted["scope"].get("target", [])
    assert stored["spec"]["obshell"]["address"] == wanted["obshell"]["address"]


def test_an_unknown_field_is_refused_by_kubectls_strict_validation(kubectl: Kubectl) -> None:
    result = kubectl.apply(request("with-extra", color="red"))
    assert result.returncode != 0
    assert result.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": ObStopRequest in version "v1alpha1" '
        'cannot be handled as a ObStopRequest: strict decoding error: unknown field "spec.color"'
    )
    assert kubectl.stored("with-extra") is None


def test_with_validate_warn_an_unknown_field_is_dropped_with_a_warning(kubectl: Kubectl) -> None:
    result = kubectl.apply(request("with-extra-warned", color="red"), "--validate=warn")
    assert result.returncode == 0, result.stderr
    assert 'Warning: unknown field "spec.color"' in result.stderr
    stored = kubectl.stored("with-extra-warned")
    assert stored is not None and "color" not in stored["spec"]
