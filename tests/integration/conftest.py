"""Fixtures for client<->simulator tests: a simulated cluster on loopback and clients of its agents.

Everything here is real HTTP on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from obshell_sim_helpers import PASSWORD, sim_config

from obstop.obshell import ObshellClient
from obstop.testing.obshell_sim import NEWEST, ObshellSimulator


@pytest.fixture
def obshell_version() -> str:
    """The obshell release `sim` behaves as: the newest, unless a test parametrizes `obshell_version`, e.g.
    `@pytest.mark.parametrize("obshell_version", V2_RELEASES)` (obshell_sim_helpers)."""
    return NEWEST


@pytest.fixture
async def sim(obshell_version: str) -> AsyncIterator[ObshellSimulator]:
    async with ObshellSimulator(sim_config(obshell_version)) as s:
        yield s


@pytest.fixture
async def client(sim: ObshellSimulator) -> AsyncIterator[ObshellClient]:
    async with ObshellClient(sim.clusters[0].agents[0].url, PASSWORD) as c:
        yield c


@pytest.fixture
async def raw(sim: ObshellSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for requests the ObshellClient would never send."""
    async with httpx.AsyncClient(base_url=sim.clusters[0].agents[0].url) as http:
        yield http
