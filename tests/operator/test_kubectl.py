"""What a person does with kubectl: apply an example (its address rewritten to a simulated agent), create the
password Secret, get the printer-column table, explain, wait, watch, describe. Against the session's real
kube-apiserver, with a real controller process (`obstop run`) and a simulated obshell cluster over HTTP on
loopback (Stack). Uses the pinned kubectl that ./dev installs, never whatever is on PATH; nothing is mocked."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_tools import as_chart_identity, refused_calls

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack
from obstop.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "kubectl"
COLUMNS = ["NAME", "SCOPE", "TARGETS", "FORCE", "PHASE", "STAGE", "DAG", "AGE"]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> Iterator[Stack]:
    if not KUBECTL.exists():
        pytest.skip(f"{KUBECTL} is missing: run ./dev setup")
    # A cluster for each test that stops one: a stopped cluster (or zone) would refuse the next stop.
    with Stack(control_plane=control_plane, clusters=5, stage_seconds=0.2) as s:
        user = as_chart_identity(s)  # the controller runs with only the chart's rights
        s.start_controller()
        yield s
        assert refused_calls(control_plane, user) == [], "the chart's RBAC refused a controller call"


def command(s: Stack, *args: str) -> list[str]:
    cache = s.workdir / "kubectl-cache"
    return [
        str(KUBECTL),
        "--kubeconfig",
        str(s.kubeconfig),
        "--cache-dir",
        str(cache),
        "-n",
        s.namespace,
        *args,
    ]


def kubectl(
    s: Stack, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command(s, *args), input=stdin, capture_output=True, text=True, timeout=150, check=False
    )
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    assert s.password not in result.stdout + result.stderr
    return result


def example(name: str, address: str, **changes: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    manifest["spec"]["obshell"]["address"] = address
    manifest["spec"].update(changes)
    return manifest


def table(output: str) -> list[dict[str, str]]:
    """`kubectl get` rows as {column: value}; columns are separated by two or more spaces."""
    header, *rows = output.strip().splitlines()
    assert re.split(r"\s{2,}", header.strip()) == COLUMNS, header
    # Values are placed under their column's header: slice each row at the header's column starts.
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    bounds = [*zip(starts, [*starts[1:], None], strict=True)]
    return [{name: row[a:b].strip() for name, (a, b) in zip(COLUMNS, bounds, strict=True)} for row in rows]


def test_apply_wait_get_describe(stack: Stack) -> None:
    manifest = example("global-force.yaml", stack.agent(0))
    name = manifest["metadata"]["name"]
    applied = kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert applied.stdout.strip() == f"obstoprequest.obshell.oceanbase.com/{name} created"

    waited = kubectl(stack, "wait", f"obstop/{name}", "--for=condition=Ready", "--timeout=90s")
    assert waited.stdout.strip() == f"obstoprequest.obshell.oceanbase.com/{name} condition met"
    kubectl(stack, "wait", f"obstoprequest/{name}", "--for=condition=Complete", "--timeout=10s")
    kubectl(stack, "wait", f"obstop/{name}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=10s")

    status = json.loads(kubectl(stack, "get", "obstop", name, "-o", "json").stdout)["status"]
    assert re.fullmatch(r"[1-5][0-9]+", status["dag"]["id"]), status
    [row] = [r for r in table(kubectl(stack, "get", "obstop").stdout) if r["NAME"] == name]
    assert row["SCOPE"] == "GLOBAL" and row["TARGETS"] == "[]" and row["FORCE"] == "true"
    assert row["PHASE"] == "Succeeded" and row["STAGE"] == "5/5"
    assert row["DAG"] == status["dag"]["id"]
    assert re.fullmatch(r"\d+s|\d+m\d*s?", row["AGE"]), row["AGE"]
    # The CRD's category lists the same table (AGE aside: a second may pass between the two calls).
    [by_category] = [r for r in table(kubectl(stack, "get", "oceanbase").stdout) if r["NAME"] == name]
    assert {**by_category, "AGE": row["AGE"]} == row
    assert re.fullmatch(r"\d+s|\d+m\d*s?", by_category["AGE"]), by_category["AGE"]

    described = kubectl(stack, "describe", "obstop", name).stdout
    assert re.search(r"^\s+Phase:\s+Succeeded$", described, re.MULTILINE), described
    assert re.search(r"^\s+Progress:\s+5/5$", described, re.MULTILINE), described
    events = described.split("Events:", 1)[1]
    assert "Submitted" in events and "Succeeded" in events, events


def test_zone_and_server_rows_show_their_targets(stack: Stack) -> None:
    zones = example("zone-terminate.yaml", stack.agent(1))
    servers = example("server-force.yaml", stack.agent(2))
    servers["spec"]["scope"]["target"] = [stack.agent(2, 2)]
    for manifest in (zones, servers):
        kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    for manifest in (zones, servers):
        kubectl(
            stack, "wait", f"obstop/{manifest['metadata']['name']}", "--for=condition=Ready", "--timeout=90s"
        )
    rows = {r["NAME"]: r for r in table(kubectl(stack, "get", "obstop").stdout)}
    zone_row, server_row = rows[zones["metadata"]["name"]], rows[servers["metadata"]["name"]]
    assert (zone_row["SCOPE"], zone_row["TARGETS"], zone_row["FORCE"]) == ("ZONE", '["zone2"]', "false")
    assert (server_row["SCOPE"], server_row["FORCE"]) == ("SERVER", "true")
    assert json.loads(server_row["TARGETS"]) == servers["spec"]["scope"]["target"]
    assert zone_row["PHASE"] == server_row["PHASE"] == "Succeeded"


def test_explain_shows_the_crds_documentation(stack: Stack) -> None:
    # The server publishes a new CRD's OpenAPI a moment after it is established: ask until it is there.
    def explain() -> subprocess.CompletedProcess[str] | None:
        explained = kubectl(stack, "explain", "obstoprequest.spec", check=False)
        return explained if explained.returncode == 0 else None

    text = wait_until(explain, 60, "kubectl explain obstoprequest.spec", interval=0.2).stdout
    assert "KIND:       ObStopRequest" in text and "VERSION:    v1alpha1" in text
    assert "What to stop and how. Immutable once created" in text
    for field, kind in [("obshell", "<Object> -required-"), ("scope", "<Object> -required-"), ("force", "<boolean>"),
                        ("terminate", "<boolean>"), ("forcePassDag", "<[]string>"),
                        ("activeDeadlineSeconds", "<integer>")]:  # fmt: skip
        assert re.search(rf"^  {field}\t{re.escape(kind)}$", text, re.MULTILINE), (field, text)
    scope_type = kubectl(stack, "explain", "obstoprequest.spec.scope.type").stdout
    assert re.search(r"ENUM:\s+GLOBAL\s+ZONE\s+SERVER\s", scope_type), scope_type


def test_a_secret_made_with_kubectl_create_secret_is_used(stack: Stack) -> None:
    # As docs/install.md does it: the password comes on stdin, never on a command line...
    created = kubectl(
        stack,
        "create",
        "secret",
        "generic",
        "typed-root",
        "--from-file=password=/dev/stdin",
        stdin=stack.password,
    )
    assert created.stdout.strip() == "secret/typed-root created"
    # ...and its owner says where the password may go (docs/security.md).
    agent = stack.agent(3)
    annotated = kubectl(
        stack, "annotate", "secret", "typed-root", f"obshell.oceanbase.com/allowed-agents={agent}"
    )
    assert annotated.stdout.strip() == "secret/typed-root annotated"
    manifest = example("zone-immediate.yaml", agent)
    manifest["metadata"]["name"] = "with-typed-secret"
    manifest["spec"]["obshell"]["passwordSecretRef"] = {"name": "typed-root"}
    kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
    kubectl(stack, "wait", "obstop/with-typed-secret", "--for=condition=Ready", "--timeout=90s")
    assert stack.get("with-typed-secret")["status"]["phase"] == "Succeeded"


PHASES = ["Pending", "Submitted", "Running", "Succeeded"]


def phase_of(line: str) -> str:
    found = re.search(r"\s(Pending|Submitted|Running|Succeeded|Failed)\s", line)
    return found.group(1) if found else ""


def kubectl_watches(s: Stack) -> bool:
    assert s.control_plane is not None
    return any(
        e.verb == "watch" and e.resource == "obstoprequests" and e.namespace == s.namespace
        and e.user_agent.startswith("kubectl/")
        for e in s.control_plane.audit_events()
    )  # fmt: skip


def read_lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.put(line.rstrip("\n"))


def test_get_watch_streams_each_change(stack: Stack) -> None:
    manifest = example("global-terminate.yaml", stack.agent(4))
    manifest["metadata"]["name"] = "watched"
    lines: queue.Queue[str] = queue.Queue()
    watch = subprocess.Popen(
        command(stack, "get", "obstop", "--watch", "--output-watch-events"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        threading.Thread(target=read_lines, args=(watch, lines), daemon=True).start()

        # kubectl prints nothing while the namespace may be empty: the audit log tells when its watch is open.
        def watching() -> bool:
            assert watch.poll() is None, "kubectl get --watch ended"
            return kubectl_watches(stack)

        wait_until(watching, 60, "kubectl get --watch started", interval=0.1)
        kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest))
        seen: list[str] = []
        header = lines.get(timeout=60)
        assert header.split()[:2] == ["EVENT", "NAME"], header
        deadline = time.monotonic() + 90
        while not (seen and "Succeeded" in seen[-1]):
            assert time.monotonic() < deadline, seen
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.split()[1:2] == ["watched"]:
                seen.append(line)
    finally:
        watch.terminate()
        watch.wait(10)
    assert seen[0].split()[0] == "ADDED" and phase_of(seen[0]) == "", seen
    assert all(line.split()[0] == "MODIFIED" for line in seen[1:]), seen
    # Every status write is an event (the server does not merge them): each phase shows, in order.
    phases = [
        phase for i, phase in enumerate(map(phase_of, seen)) if i == 0 or phase != phase_of(seen[i - 1])
    ]
    assert phases in (["", *PHASES], ["", "Pending", "Submitted", "Succeeded"]), seen
    assert re.search(r"\sSucceeded\s+(\d)/\1\s+[1-5][0-9]+\s", seen[-1]), seen[-1]  # a terminate stop: 6/6
    assert all(stack.password not in line for line in seen)


def test_apply_refuses_a_bad_request_with_its_message(stack: Stack) -> None:
    manifest = example("global-force.yaml", stack.agent(1), terminate=True)
    manifest["metadata"]["name"] = "both-modes"
    refused = kubectl(stack, "apply", "-f", "-", stdin=yaml.safe_dump(manifest), check=False)
    assert refused.returncode != 0
    assert refused.stderr.startswith('The ObStopRequest "both-modes" is invalid: spec: Invalid value: force and '
                                     "terminate cannot both be true")  # fmt: skip
    assert kubectl(stack, "get", "obstop", "both-modes", check=False).returncode != 0
