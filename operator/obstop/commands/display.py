"""How a request's status reads on a terminal: one line per change (the sandbox, `kubectl obstop watch`) and
the per-agent table (`kubectl obstop status`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any


def status_line(name: str, status: Mapping[str, Any]) -> str:
    """One compact line per change, like `kubectl get -w`."""
    dag = status.get("dag") or {}
    cols = [
        time.strftime("%H:%M:%S"),
        f"{name:<20}",
        f"{status.get('phase', '-'):<10}",
        f"{status.get('progress', '-'):<5}",
        f"{dag.get('id', '-'):<20}",
        str(status.get("message", "")),
    ]
    return "  ".join(cols)


def agents_table(agents: Sequence[Mapping[str, Any]]) -> str:
    """status.agents as a table: one row per agent."""
    header = ("AGENT", "NODE", "STATE", "OBSERVER STOPPED", "LAST LOG")
    rows = [
        (
            str(a.get("agent", "")),
            str(a.get("node") or "-"),
            str(a.get("state") or "-"),
            {True: "yes", False: "no"}.get(a.get("observerStopped"), "-"),  # type: ignore[arg-type]
            str(a.get("lastLog") or ""),
        )
        for a in agents
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])) + "   " + r[-1]
        for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)
