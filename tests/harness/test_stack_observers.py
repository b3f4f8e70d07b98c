"""Stack.observers, the one way a harness user hooks into every Stack's life (tests/conftest.py's password
guard is one): the four calls, in order, and none after a failed start but `starting`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def _note(self, name: str, stack: Stack) -> None:
        # Whether the stack is up: its working folder exists from the start of set-up to the end of tear-down.
        self.calls.append((name, hasattr(stack, "workdir") and stack.workdir.exists()))

    def starting(self, stack: Stack) -> None:
        self._note("starting", stack)

    def started(self, stack: Stack) -> None:
        self._note("started", stack)

    def stopping(self, stack: Stack) -> None:
        self._note("stopping", stack)

    def stopped(self, stack: Stack) -> None:
        self._note("stopped", stack)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    observer = Recorder()
    Stack.observers.append(observer)
    yield observer
    Stack.observers.remove(observer)


def test_an_observer_sees_the_stack_start_and_stop(recorder: Recorder, control_plane: ControlPlane) -> None:
    with Stack(control_plane=control_plane, clusters=1, stage_seconds=0.05):
        assert recorder.calls == [("starting", False), ("started", True)]
    # The stack is still up when `stopping` looks into it, and gone when `stopped` is called.
    assert recorder.calls[2:] == [("stopping", True), ("stopped", False)]


def test_a_stack_that_fails_to_start_is_only_starting(recorder: Recorder, tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="the fault proxy needs a local control plane"),
        Stack(kubeconfig=tmp_path / "kubeconfig", proxy=True),
    ):
        pass
    assert recorder.calls == [("starting", False)]
