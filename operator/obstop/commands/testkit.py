"""The test kit (obstop.testing: the obshell simulator, the local control plane, the fault proxy, Stack) is not
part of the controller image; `obstop sim` and `obstop sandbox` need it. `missing()` is the one line they print
instead of a traceback when it cannot be imported."""

from __future__ import annotations

import importlib

EXTRA = "testing"
INSTALL = f"pip install 'ob-stop-operator[{EXTRA}]'"


def missing(command: str) -> str | None:
    """None if the test kit imports; otherwise what `obstop <command>` says."""
    try:
        importlib.import_module("obstop.testing.stack")
    except ImportError as exc:
        return (
            f"obstop {command}: needs the test kit (the '{EXTRA}' extra), which this installation lacks "
            f"({exc}); the controller image leaves it out: {INSTALL} on a workstation"
        )
    return None
