"""The controller's settings, in one place: defaults, environment variables (OBSTOP_*), then `obstop run` flags.

The Helm chart sets the environment; flags are for running by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from obstop.controller import agent_policy


class SettingsError(ValueError):
    """A setting with a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    # DAG polling adapts to the DAG's pace within these bounds (seconds).
    poll_min_seconds: float = 0.2
    poll_max_seconds: float = 15.0
    # One HTTP call to an agent may take this long (seconds).
    obshell_timeout_seconds: float = 10.0
    # Transient faults are retried with exponential back-off within these bounds (seconds).
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 60.0
    # After a stop whose answer was lost, wait this long before looking for its DAG on the agent (seconds).
    lookup_grace_seconds: float = 2.0
    # A status write not back through the watch after this long is logged once (a paused replica, a slow watch).
    stall_seconds: float = 30.0
    # At most this many concurrent HTTP calls to one agent.
    agent_concurrency: int = 4
    # At most this many HTTP calls per second to one agent (a burst of as many is allowed); 0 = no bound.
    agent_rate: float = 20.0
    # At most this many requests' steps (a step and its status write) run at once; the others wait their turn.
    # Bounds the memory of a burst (1,000 requests created together), not the requests followed.
    steps_in_flight: int = 64
    # Health (/healthz) and metrics (/metrics) HTTP endpoint.
    health_port: int = 8080
    # Run with Kopf peering (several replicas, one active) under this peering name; empty = standalone.
    peering: str = ""
    # This replica's Kopf peering priority: the live replica with the highest one is active. 0 = random at each
    # start (replicas that share a priority would all pause).
    peering_priority: int = 0
    # Agents may only be reached in these networks or DNS suffixes (e.g. 10.0.0.0/8, *.svc.cluster.local), as
    # well as where each Secret's allowed-agents annotation lets its password go; empty = what Secrets allow.
    allowed_agent_networks: tuple[str, ...] = ()
    # A spec.approval Manual request looks for its ObStopApproval this often (seconds) while it waits.
    approval_poll_seconds: float = 5.0
    # An approval given when the pre-check is older than this (seconds) re-checks first; a re-check that sees
    # another cluster asks for a new approval.
    precheck_max_age_seconds: float = 300.0
    # Kopf's progress annotations and our events use this prefix.
    annotation_prefix: str = "obstop.oceanbase.com"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log_format not in ("text", "json"):
            raise SettingsError(f"OBSTOP_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(
                f"OBSTOP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}"
            )
        for name in (
            "poll_min_seconds",
            "poll_max_seconds",
            "obshell_timeout_seconds",
            "retry_initial_seconds",
            "stall_seconds",
            "approval_poll_seconds",
            "precheck_max_age_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"OBSTOP_{name.upper()} must be positive")
        if self.poll_min_seconds > self.poll_max_seconds:
            raise SettingsError("OBSTOP_POLL_MIN_SECONDS must not exceed OBSTOP_POLL_MAX_SECONDS")
        if self.retry_initial_seconds > self.retry_max_seconds:
            raise SettingsError("OBSTOP_RETRY_INITIAL_SECONDS must not exceed OBSTOP_RETRY_MAX_SECONDS")
        if self.agent_concurrency < 1:
            raise SettingsError("OBSTOP_AGENT_CONCURRENCY must be at least 1")
        if self.steps_in_flight < 1:
            raise SettingsError("OBSTOP_STEPS_IN_FLIGHT must be at least 1")
        if self.peering_priority < 0:
            raise SettingsError("OBSTOP_PEERING_PRIORITY must not be negative (0 = random)")
        if self.agent_rate < 0:
            raise SettingsError("OBSTOP_AGENT_RATE must not be negative (0 = no bound)")
        _ = self.allowed_agent_patterns  # refuses a malformed OBSTOP_ALLOWED_AGENT_NETWORKS at start

    @cached_property
    def allowed_agent_patterns(self) -> tuple[agent_policy.AgentPattern, ...]:
        """OBSTOP_ALLOWED_AGENT_NETWORKS, parsed."""
        try:
            return agent_policy.parse_patterns(
                " ".join(self.allowed_agent_networks), what="OBSTOP_ALLOWED_AGENT_NETWORKS", ports=False
            )
        except agent_policy.InvalidPattern as exc:
            raise SettingsError(str(exc)) from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(f"OBSTOP_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(cls(), f.name)))
        return cls(**values)

    def override(self, **changes: Any) -> Settings:
        """Apply command-line flags that were given (None means not given)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _convert(name: str, raw: str, kind: type) -> Any:
    var = f"OBSTOP_{name.upper()}"
    try:
        if kind is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    return raw.strip()
