"""Reliability tests: real processes, sockets and HTTP on loopback, with faults injected for real.

`slow` tests (the big load run) are skipped unless OBSTOP_SLOW=1.

The matrices (crash, fault) share one shape: `proxied_stack` is one Stack for the whole module on the session's
control plane, behind the fault proxy, with the module's `CLUSTERS` simulated clusters and `STAGE_SECONDS` per
DAG stage (module constants); `matrix_cluster` hands each test a cluster no other test touched and clears every
fault after it (the simulator's, the proxy's, the clock skew, agents taken down). A module adds what differs
(when the controller runs) in its own `stack` and `cluster` fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from reliability_support import Clusters, proxy_of

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("OBSTOP_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set OBSTOP_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def proxied_stack(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[Stack]:
    module = request.module
    with Stack(
        control_plane=control_plane, proxy=True, clusters=module.CLUSTERS, stage_seconds=module.STAGE_SECONDS
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def clusters(request: pytest.FixtureRequest) -> Clusters:
    return Clusters(request.module.CLUSTERS)


@pytest.fixture
def matrix_cluster(proxied_stack: Stack, clusters: Clusters) -> Iterator[int]:
    stack = proxied_stack
    index = clusters.take()
    yield index
    stack.sim.faults.clear()
    stack.sim.set_clock_offset(0)
    proxy_of(stack).clear_faults()
    for agent in stack.sim.clusters[index].agents:
        stack.sim.agent_up(agent.address)
