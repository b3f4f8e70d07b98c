"""`obstop stop`, the one-shot command, run as a real process against the simulator over loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.testing.obshell_sim import SimulatorConfig, SimulatorThread

PASSWORD = "cli-root-secret-42"


@pytest.fixture
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(password=PASSWORD, zones=3, stage_seconds=0.05)) as s:
        yield s


def obstop_stop(*args: str, password: str | None = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBSTOP_PASSWORD"}
    if password is not None:
        env["OBSTOP_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "obstop.cli", "stop", "--interval", "0.05", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_wait_follows_the_dag_to_success(sim: SimulatorThread) -> None:
    agent = sim.clusters[0].agents[0].address
    result = obstop_stop("--address", agent, "--scope", "global", "--force", "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("submitted: DAG 2") and "'Stop OB'" in lines[0]
    assert any("Make sure all agents are ready" in line for line in lines)
    assert lines[-1].startswith("succeeded: DAG")
    assert [r.params["force"] for r in sim.stops()] == [True]
    assert PASSWORD not in result.stdout + result.stderr


def test_failed_dag_exits_non_zero_with_the_failing_node(sim: SimulatorThread) -> None:
    agent = sim.clusters[0].agents[0].address
    sim.faults.fail_stop("Make sure all agents are ready", "Sim.Cli.Failure", "no agents")
    result = obstop_stop("--address", agent, "--scope", "ZONE", "--target", "zone2", "--terminate", "--wait")
    assert result.returncode == 1
    assert "failed: DAG" in result.stderr and "'Make sure all agents are ready'" in result.stderr
    assert "ERROR: [Sim.Cli.Failure]: no agents" in result.stderr


def test_refused_stop_prints_obshell_error(sim: SimulatorThread) -> None:
    agent = sim.clusters[0].agents[0].address
    result = obstop_stop("--address", agent, "--scope", "GLOBAL")  # neither force nor terminate
    assert result.returncode == 1
    assert "HTTP 400 OB.Cluster.ForceStopOrTerminateRequired" in result.stderr


def test_password_from_a_file_and_wrong_password(sim: SimulatorThread, tmp_path: Path) -> None:
    agent = sim.clusters[0].agents[0].address
    secret = tmp_path / "pw"
    secret.write_text("wrong-password\n")
    result = obstop_stop(
        "--address",
        agent,
        "--scope",
        "SERVER",
        "--target",
        agent,
        "--force",
        "--password-file",
        str(secret),
        password=None,
    )
    assert result.returncode == 1
    assert "Security.Authentication.IncorrectOceanbasePassword" in result.stderr
    assert "wrong-password" not in result.stdout + result.stderr
    secret.write_text(PASSWORD + "\n")
    result = obstop_stop(
        "--address",
        agent,
        "--scope",
        "SERVER",
        "--target",
        agent,
        "--force",
        "--password-file",
        str(secret),
        password=None,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "password", "message", "code"),
    [
        (["--address", "127.0.0.1:1", "--scope", "GLOBAL", "--force"], None, "set $OBSTOP_PASSWORD", 1),
        (
            ["--address", "ftp://x", "--scope", "GLOBAL", "--force"],
            PASSWORD,
            "scheme must be http or https",
            2,
        ),
        (["--address", "127.0.0.1:1", "--scope", "GLOBAL", "--force"], PASSWORD, "cannot connect", 1),
        (
            ["--address", "127.0.0.1:1", "--scope", "GLOBAL", "--force", "--terminate"],
            PASSWORD,
            "not allowed with",
            2,
        ),
    ],
)
def test_usage_errors_are_clear(args: list[str], password: str | None, message: str, code: int) -> None:
    result = obstop_stop(*args, password=password)
    assert result.returncode == code
    assert message in result.stderr
