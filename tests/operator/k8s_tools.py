"""The project's pinned kubectl and helm (installed by ./dev into .tools/bin), run against a kubeconfig."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

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
