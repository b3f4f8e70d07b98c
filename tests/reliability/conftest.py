"""Reliability tests: real processes, sockets and HTTP on loopback, with faults injected for real.

`slow` tests (the big load run) are skipped unless OBSTOP_SLOW=1.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("OBSTOP_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set OBSTOP_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords and item.path.is_relative_to(os.path.dirname(__file__)):
            item.add_marker(skip)
