"""`obstop sandbox`, the README's first command, run as a process: the whole loop on loopback."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "obstop.cli", "sandbox", "--stage-seconds", "0.1", "--timeout", "60", *args],
        capture_output=True,
        text=True,
        timeout=110,
    )


@pytest.mark.parametrize(
    ("args", "name", "stages"),
    [
        ((), "sandbox-global-force", "5/5"),
        (("--scope", "zone", "--mode", "immediate"), "sandbox-zone-immediate", "6/6"),
    ],
)
def test_sandbox_runs_a_request_to_success(args: tuple[str, ...], name: str, stages: str) -> None:
    result = sandbox(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    order = ["Pending", "Submitted", "Running", "Succeeded"]
    phases = [word for line in lines if name in line for word in line.split() if word in order]
    assert phases == sorted(phases, key=order.index), phases  # never goes backwards
    assert phases[-1] == "Succeeded"
    assert any(name in line and "Succeeded" in line and stages in line for line in lines)
    assert lines[-1] == "obshell received 1 stop request(s)"


def test_sandbox_refuses_a_stop_obshell_would_refuse() -> None:
    result = sandbox("--mode", "immediate")
    assert result.returncode != 0
    assert "obshell refuses an immediate GLOBAL stop" in result.stderr
