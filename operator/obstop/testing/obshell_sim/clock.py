"""The simulated agents' clock: the real clock plus an offset, to simulate skew between agent and controller.

Process-wide on purpose: every agent of every simulator in a process shares one clock, as agents on
NTP-synchronised hosts do. `ObshellSimulator.set_clock_offset` changes it; stopping a simulator resets it.
"""

from __future__ import annotations

import time as _time
from datetime import datetime, timedelta

_offset_seconds = 0.0


def set_offset(seconds: float) -> None:
    global _offset_seconds
    _offset_seconds = float(seconds)


def offset() -> float:
    return _offset_seconds


def time() -> float:
    """Seconds since the epoch, as the agents see it."""
    return _time.time() + _offset_seconds


def now() -> datetime:
    """The agents' local time, with its time zone."""
    return (datetime.now() + timedelta(seconds=_offset_seconds)).astimezone()
