"""What a person does with kubectl, against the emulated API server with a real controller running:
apply an example (its address rewritten to a simulated agent), get, describe, wait. Uses the pinned kubectl that
./dev installs, never whatever is on PATH."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from obstop.testing.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "kubectl"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is missing: run ./dev setup")
    with Stack(clusters=2, stage_seconds=0.1) as s:
        s.start_controller()
        yield s


def kubectl(
    s: Stack, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(s.kubeconfig), "-n", s.namespace, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def example(name: str, address: str) -> str:
    manifest = yaml.safe_load((ROOT / "examples" / name).read_text())
    manifest["spec"]["obshell"]["address"] = address
    return yaml.safe_dump(manifest)


def test_apply_get_wait_describe(stack: Stack) -> None:
    agent = stack.agent(0)
    applied = kubectl(
        stack, "apply", "--validate=false", "-f", "-", stdin=example("global-force.yaml", agent)
    )
    name = yaml.safe_load((ROOT / "examples" / "global-force.yaml").read_text())["metadata"]["name"]
    assert f"obstoprequest.obshell.oceanbase.com/{name} created" in applied.stdout

    kubectl(stack, "wait", f"obstop/{name}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s")
    kubectl(stack, "wait", f"obstoprequest/{name}", "--for=condition=Complete", "--timeout=10s")
    listed = kubectl(
        stack,
        "get",
        "oceanbase",
        "-o",
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase,STAGE:.status.progress",
    )
    assert name in listed.stdout and "Succeeded" in listed.stdout and "5/5" in listed.stdout

    described = kubectl(stack, "describe", "obstop", name).stdout
    assert "Phase:" in described and "Succeeded" in described
    assert "Submitted" in described and "Succeeded" in described  # the events
    assert stack.password not in applied.stdout + listed.stdout + described


def test_apply_refuses_a_bad_request_with_its_message(stack: Stack) -> None:
    manifest = yaml.safe_load(example("global-force.yaml", stack.agent(1)))
    manifest["metadata"]["name"] = "both-modes"
    manifest["spec"]["terminate"] = True
    refused = kubectl(
        stack, "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(manifest), check=False
    )
    assert refused.returncode != 0
    assert "force and terminate" in refused.stderr
