"""Shared pytest configuration. Fixtures specific to one layer live in that layer's conftest.

`sim`, `client` and `raw` are a simulated obshell cluster on loopback (real HTTP, nothing mocked), a client of its
first agent and a plain HTTP client for requests the ObshellClient would never send; `obshell_version` picks the
release `sim` behaves as. Their helpers (the password, crafted headers, waiting for a DAG) are in
tests/obshell_sim_helpers.py, imported by name (tests/ is on sys.path: this conftest's folder).

`control_plane` is the real etcd + kube-apiserver of the session (obstop.testing.controlplane), shared by the
tests that can share it: each Stack on it works in a namespace of its own. A test that kills the server starts
a `ControlPlane()` of its own.

The password guard: every `Stack` entered during the run registers its (random) password (the guard is one of
`Stack.observers`, obstop.testing.stack), and so can a test with `password_guard.register(...)`. A test fails if a registered password shows up in its captured output or
logs, or in the controller's logs, the events or any ObStopRequest's status of a Stack that is open while it
runs. Failure reports never print the password itself: it is replaced by `***`.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from obstop.obshell import ObshellClient
    from obstop.testing.obshell_sim import ObshellSimulator

REDACTED = "***"


class PasswordGuard:
    """The secrets that must never be seen, and the live stacks to look into; a StackObserver."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.stacks: list[Any] = []
        self._leaks: dict[int, list[str]] = {}

    # The Stack's life (StackObserver): register its password, look into it just before it stops.
    def starting(self, stack: Any) -> None:
        self.register(stack.password)

    def started(self, stack: Any) -> None:
        self.stacks.append(stack)

    def stopping(self, stack: Any) -> None:
        if stack in self.stacks:
            self.stacks.remove(stack)
            self._leaks[id(stack)] = self.stack_leaks(stack)

    def stopped(self, stack: Any) -> None:
        leaks = self._leaks.pop(id(stack), [])
        if leaks:
            pytest.fail(f"the root password appeared in: {', '.join(leaks)}", pytrace=False)

    def register(self, secret: str) -> None:
        if len(secret) >= 6:  # a short value would match innocent text
            self.secrets.add(secret)

    def leaks_in(self, text: str) -> bool:
        return any(secret in text for secret in self.secrets)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def stack_leaks(self, stack: Any) -> list[str]:
        """Where in a running stack the password appears: controller logs, events, statuses."""
        from obstop.testing.stack import GROUP, PLURAL, VERSION

        found = []
        if self.leaks_in(stack.controller_logs()):
            found.append("controller logs")
        for namespace in {stack.namespace, *getattr(stack, "extra_namespaces", ())}:
            items = stack.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            for item in items:
                if self.leaks_in(json.dumps(item.get("status") or {})):
                    found.append(f"status of {namespace}/{item['metadata']['name']}")
            for event in stack.core.list_namespaced_event(namespace).items:
                if self.leaks_in(f"{event.message or ''} {event.reason or ''}"):
                    found.append(f"event {event.reason} in {namespace}")
        return found


GUARD = PasswordGuard()


@pytest.fixture
def obshell_version() -> str:
    """The obshell release `sim` behaves as: the newest, unless a test parametrizes `obshell_version`, e.g.
    `@pytest.mark.parametrize("obshell_version", V2_RELEASES)` (obshell_sim_helpers)."""
    from obstop.testing.obshell_sim import NEWEST

    return NEWEST


@pytest.fixture
async def sim(obshell_version: str) -> AsyncIterator[ObshellSimulator]:
    from obshell_sim_helpers import sim_config
    from obstop.testing.obshell_sim import ObshellSimulator

    async with ObshellSimulator(sim_config(obshell_version)) as s:
        yield s


@pytest.fixture
async def client(sim: ObshellSimulator) -> AsyncIterator[ObshellClient]:
    from obshell_sim_helpers import PASSWORD
    from obstop.obshell import ObshellClient

    async with ObshellClient(sim.clusters[0].agents[0].url, PASSWORD) as c:
        yield c


@pytest.fixture
async def raw(sim: ObshellSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client for requests the ObshellClient would never send."""
    import httpx

    async with httpx.AsyncClient(base_url=sim.clusters[0].agents[0].url) as http:
        yield http


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Any]:
    """The session's real control plane; started by the first test that asks for it."""
    from obstop.testing.controlplane import ControlPlane

    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="session")
def kube_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where a Stack that needs nothing local (no audit log, fault proxy or server kill) runs: `Stack(**kube_target)`
    on the cluster of $OBSTOP_E2E_KUBECONFIG when it is set, else on the session's control plane."""
    external = os.environ.get("OBSTOP_E2E_KUBECONFIG")
    if external:
        return {"kubeconfig": Path(external)}
    return {"control_plane": request.getfixturevalue("control_plane")}


@pytest.fixture(scope="session", autouse=True)
def _guard_every_stack() -> Iterator[None]:
    """Register each Stack's password when it starts; check it for leaks just before it stops."""
    try:
        from obstop.testing.stack import Stack
    except ImportError:  # the test kit is not installed: nothing to guard
        yield
        return
    Stack.observers.append(GUARD)
    try:
        yield
    finally:
        Stack.observers.remove(GUARD)


@pytest.fixture
def password_guard() -> PasswordGuard:
    """Register extra secrets (`password_guard.register(pw)`) for this run's leak checks."""
    return GUARD


@pytest.fixture(autouse=True)
def _no_password_in_open_stacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    leaks = [
        f"{where} (stack {index})" for index, s in enumerate(GUARD.stacks) for where in GUARD.stack_leaks(s)
    ]
    if GUARD.leaks_in(caplog.text):
        leaks.append("captured log records")
    if leaks:
        pytest.fail(f"the root password appeared in: {', '.join(leaks)}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Fail a test whose captured stdout/stderr/log shows a password; never print the password in a report."""
    report = yield
    if not GUARD.secrets:
        return report
    leaked = [title for title, content in report.sections if GUARD.leaks_in(content)]
    report.sections = [(title, GUARD.redact(content)) for title, content in report.sections]
    if report.longrepr is not None and GUARD.leaks_in(str(report.longrepr)):
        report.longrepr = GUARD.redact(str(report.longrepr))
        leaked.append("failure report")
    if leaked and report.passed:
        report.outcome = "failed"
        report.longrepr = f"the root password appeared in: {', '.join(leaked)}"
    return report
