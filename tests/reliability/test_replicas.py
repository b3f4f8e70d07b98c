"""Two controller replicas at once (Kopf peering, `obstop run --peering NAME`): never two stops for a request.

Both replicas are real `obstop run` processes against the emulated API server. The peering CRDs come from
the Helm chart (rendered with the pinned helm); the ClusterKopfPeering object is created as the chart's
post-install hook creates it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from reliability_support import landed_on, stops_on, wait_until

from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(150)

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".tools" / "bin" / "helm"
PEERING = "obstop-ha"


def _peering_crds() -> list[dict]:
    rendered = subprocess.run(
        [str(HELM), "template", "ha", str(ROOT / "deploy/helm/ob-stop-operator"), "--set", "peering.enabled=true",
         "--show-only", "templates/peering-crds.yaml"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _submissions(log: str) -> set[str]:
    """Names of the requests for which this replica sent (or adopted) a stop."""
    return set(re.findall(r"\[default/([\w-]+)\] (?:stop DAG \S+ submitted|adopting stop DAG)", log))


@pytest.mark.skipif(not HELM.exists(), reason="the pinned helm is not installed (./dev setup)")
def test_two_replicas_at_once_never_submit_twice() -> None:
    with Stack(clusters=8, stage_seconds=0.2) as s:
        assert s.api is not None
        for crd in _peering_crds():
            s.api.apply(crd)
        s.api.apply(
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}
        )
        first = s.start_controller("--peering", PEERING)
        s.controller = None  # Stack tracks one controller; the test owns both
        second = s.start_controller("--peering", PEERING)
        try:
            wait_until(
                lambda: (
                    len((s.api.get("kopf.dev/v1", "ClusterKopfPeering", PEERING) or {}).get("status") or {})
                    == 2
                ),  # type: ignore[union-attr]
                what="both replicas announce themselves in the peering object",
            )
            names = [f"ha-{index}" for index in range(4)]
            for index, name in enumerate(names):
                s.create(stop_request(name, s.agent(index), force=True))
            statuses = {name: s.wait_for(name, timeout=60) for name in names}
            logs = [(s.workdir / f"controller-{run}.log").read_text() for run in (1, 2)]
            acted = [_submissions(log) for log in logs]
            assert acted[0] | acted[1] == set(names), acted
            assert not acted[0] & acted[1], f"both replicas acted on {acted[0] & acted[1]}"

            # The leader leaves (a rolling update: SIGTERM) while its requests run: the other one finishes them.
            leader, follower = (first, second) if acted[0] else (second, first)
            later = [f"ha-{index}" for index in range(4, 8)]
            for index, name in enumerate(later, start=4):
                s.create(stop_request(name, s.agent(index), terminate=True))
            for name in later:
                s.wait_for(name, lambda st: st.get("phase") == "Running")
            leader.terminate()
            leader.wait(20)
            statuses.update({name: s.wait_for(name, timeout=60) for name in later})
            names += later
            assert follower.poll() is None
        finally:
            for proc in (first, second):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            s.controller = None
        for index, name in enumerate(names):
            assert statuses[name]["phase"] == "Succeeded", statuses[name]
            assert len(landed_on(s, index)) == 1 and len(stops_on(s, index)) == 1, name
