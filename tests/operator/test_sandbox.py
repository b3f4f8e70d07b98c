"""`obstop sandbox`, the README's first command, run as a process: the whole loop on loopback, on a real control
plane of its own (etcd + kube-apiserver) and the obshell simulator; also from the project's wheel, unpacked
outside the source checkout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin")

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
    assert lines[-3:-1] == [
        "obshell received 1 stop request(s)",
        "stopping: the controller, the simulated agents, the control plane",
    ]
    assert lines[-1].startswith("stopped in "), lines[-1]


def test_sandbox_refuses_a_stop_obshell_would_refuse() -> None:
    result = sandbox("--mode", "immediate")
    assert result.returncode != 0
    assert "obshell refuses an immediate GLOBAL stop" in result.stderr


class Output:
    """A process's output, read to the end by a thread of its own: a process whose pipe nobody reads blocks on
    its next write once the pipe's buffer (64 KiB) is full, which would look like a hang on shutdown."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self._stdout = proc.stdout
        self.lines: list[str] = []
        self.hinted = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line.rstrip())
            if "Ctrl-C to stop." in line:  # the end of the --keep hint
                self.hinted.set()

    def text(self) -> str:
        self._thread.join(5)
        return "\n".join(self.lines)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sandbox_keep_serves_kubectl_until_interrupted(signum: signal.Signals) -> None:
    """--keep prints an `export KUBECONFIG=...` that the pinned kubectl can use (real printer columns from the
    real API server); Ctrl-C (SIGINT) or SIGTERM stops it, saying what it stops, and its control plane's folder
    is removed. It is started with SIGINT ignored, as a non-interactive shell starts a background job (and as
    CI may start the tests): Python then raises no KeyboardInterrupt, and before the sandbox handled the signal
    itself it never stopped. If it does not exit in time, SIGUSR1 makes it dump every thread's stack
    (faulthandler) into the failure message."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "obstop.cli", "sandbox", "--stage-seconds", "0.1", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_sigint,  # a signal disposition only: safe between fork and exec
    )
    output = Output(proc)
    try:
        assert output.hinted.wait(100), output.text()
        lines = list(output.lines)
        exports = [line for line in lines if "export KUBECONFIG=" in line]
        assert exports, "\n".join(lines)
        kubeconfig = Path(exports[0].split("export KUBECONFIG=", 1)[1].strip())
        table = subprocess.run(
            [str(TOOLS / "kubectl"), "--kubeconfig", str(kubeconfig), "get", "obstop", "-A"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert table.returncode == 0, table.stderr
        header, row = table.stdout.splitlines()[:2]
        columns = "NAMESPACE NAME SCOPE TARGETS FORCE PHASE STAGE DAG AGE"
        assert header.split() == columns.split(), header
        assert row.split()[1:7] == ["sandbox-global-force", "GLOBAL", "[]", "true", "Succeeded", "5/5"], row
        # The hint's request, pasted as printed, is accepted and succeeds on what the sandbox left stopped.
        hint = "\n".join(lines)
        heredoc = re.search(
            r"^(kubectl -n \S+ apply -f -) <<'EOF'\n(.*?)^EOF$", hint, re.DOTALL | re.MULTILINE
        )
        assert heredoc, hint
        kubectl = [str(TOOLS / "kubectl"), "--kubeconfig", str(kubeconfig)]
        applied = subprocess.run(
            [*kubectl, *heredoc.group(1).split()[1:]],
            input=heredoc.group(2),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert applied.returncode == 0, applied.stderr
        name = yaml.safe_load(heredoc.group(2))["metadata"]["name"]
        waited = subprocess.run(
            [*kubectl, "wait", f"obstop/{name}", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s"],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert waited.returncode == 0, waited.stderr
        proc.send_signal(signum)
        # Usually about 2 s. The bound is what the sandbox's own shutdown allows at worst (obstop.testing.stack:
        # the controller 15 s, then kube-apiserver and etcd 10 s each before SIGKILL).
        try:
            code = proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            proc.kill()
            proc.wait(10)
            pytest.fail("the sandbox did not exit within 45 s of Ctrl-C:\n" + output.text())
        assert code == 0, output.text()
        stopping = [line for line in output.lines if line.startswith("stopping:")]
        assert stopping, output.text()
        assert not kubeconfig.parent.exists(), "the control plane's folder was left behind"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built as a user's `pip install` would build it, unpacked (no source checkout)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("ob_stop_operator-*.whl")
    unpacked = out / "site"
    with zipfile.ZipFile(built) as archive:
        archive.extractall(unpacked)
    return unpacked


def from_wheel(wheel: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("OBSTOP_CONTROL_PLANE_BIN", "KUBEBUILDER_ASSETS")
    }
    return subprocess.run(
        [sys.executable, "-m", "obstop.cli", "sandbox", *args],
        env={**clean, "PYTHONPATH": str(wheel), **env},
        cwd=wheel.parent,
        capture_output=True,
        text=True,
        timeout=110,
    )


def test_the_wheel_carries_the_crd_and_says_what_is_missing(wheel: Path) -> None:
    """From an installed wheel: the CRD is the one in deploy/crds; without kube-apiserver and etcd the sandbox
    says in one line what to install and exits 3 (no traceback)."""
    crd = wheel / "obstop" / "testing" / "crds" / "obshell.oceanbase.com_obstoprequests.yaml"
    assert crd.read_text() == (ROOT / "deploy" / "crds" / crd.name).read_text()
    result = from_wheel(wheel)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "KUBEBUILDER_ASSETS" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_wheel_runs_the_sandbox_with_envtest_binaries(wheel: Path) -> None:
    """With $KUBEBUILDER_ASSETS (the envtest convention) the installed wheel runs the whole loop."""
    from obstop.testing.controlplane import Binaries

    assets = Binaries.find().kube_apiserver.parent
    result = from_wheel(wheel, "--stage-seconds", "0.1", "--timeout", "60", KUBEBUILDER_ASSETS=str(assets))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "obshell received 1 stop request(s)" in result.stdout
