"""Fixtures of the deployment tests: run the project's pinned helm binary against the chart.

`helm template` runs the chart's templates and values.schema.json offline (no cluster needed); a render
takes ~0.1 s, so renders are cached per value set for the whole session.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "ob-stop-operator"
RELEASE, NAMESPACE = "obstop", "ops"


Helm = Callable[..., str]
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm(*args, stdin=None) -> stdout; raises CalledProcessError (with .stderr). Skips without helm."""
    binary = Path(os.environ.get("OBSTOP_TOOLS_BIN") or ROOT / ".tools" / "bin") / "helm"
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run ./dev setup (it installs the pinned helm)")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        # Keep helm's caches and config out of the user's home directory.
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        return done.stdout

    return run


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """render(values=None, include_crds=False) -> the rendered manifests as dicts; raises CalledProcessError."""
    cache: dict[tuple[str, bool], str] = {}

    def render(values: dict[str, Any] | None = None, *, include_crds: bool = False) -> list[dict[str, Any]]:
        key = (json.dumps(values or {}, sort_keys=True), include_crds)
        if key not in cache:
            args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--values", "-"]
            # As a cluster with the Prometheus Operator: the chart refuses a ServiceMonitor or PrometheusRule the
            # cluster cannot serve.
            args += ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
            args += ["--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
            # JSON is YAML: the values come in on stdin.
            cache[key] = helm(*args, *(["--include-crds"] if include_crds else []), stdin=key[0])
        return [doc for doc in yaml.safe_load_all(cache[key]) if doc]

    return render
