"""The password guard (tests/conftest.py, a Stack observer) must be able to fail: it finds a password planted
in a live stack's events and redacts it, on the session's real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack

pytestmark = pytest.mark.timeout(120)


def test_the_guard_finds_and_redacts_a_planted_password(
    password_guard: Any, control_plane: ControlPlane
) -> None:
    with Stack(control_plane=control_plane, clusters=1, stage_seconds=0.05) as s:
        assert s.password in password_guard.secrets
        assert password_guard.stack_leaks(s) == []
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "planted"},
            "involvedObject": {"kind": "ObStopRequest", "name": "x", "namespace": s.namespace},
            "reason": "Planted",
            "message": f"oops {s.password}",
        }
        s.core.create_namespaced_event(s.namespace, event)
        assert password_guard.stack_leaks(s) == [f"event Planted in {s.namespace}"]
        assert password_guard.redact(f"a {s.password} b") == "a *** b"
        s.core.delete_namespaced_event("planted", s.namespace)  # or this test would fail, as it should
        assert password_guard.stack_leaks(s) == []
