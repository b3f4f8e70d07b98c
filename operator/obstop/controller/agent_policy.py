"""Where a Secret's value may be sent: the `obshell.oceanbase.com/allowed-agents` annotation, and the
controller-wide `OBSTOP_ALLOWED_AGENT_NETWORKS`. Pure functions; the controller checks before every step, before
any connection to the agent (docs/security.md).

The controller is a deputy: it can read Secrets that the people writing ObStopRequests may not. So the Secret's
owner, not the request, decides where its password goes. The annotation lists agent addresses, comma- or
space-separated, each with a port (`:2886` when omitted, as for addresses; `:*` for any port):

    10.0.0.1:2886                  one agent, by IP ([fd00::1]:2886 for IPv6)
    ob-agent.ob-prod.svc:2886      one agent, by DNS name (exact, case-insensitive)
    *.ob-prod.svc.cluster.local    any name under that suffix (not the bare suffix)
    10.0.0.0/24:2886               any IP literal in that network ([fd00::/64]:2886 for IPv6)

A DNS name never matches a network entry: the controller does not resolve names to judge them (a name can
resolve elsewhere by the time it connects), so a name must be allowed as a name. The keys a request may read from
the Secret are those of `obshell.oceanbase.com/allowed-keys` (default: `password` and `ca.crt`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from obstop.controller.status import Reason
from obstop.obshell.address import DEFAULT_AGENT_PORT, AgentEndpoint, InvalidAddress, split_host_port

ALLOWED_AGENTS = "obshell.oceanbase.com/allowed-agents"
ALLOWED_KEYS = "obshell.oceanbase.com/allowed-keys"
DEFAULT_ALLOWED_KEYS = ("password", "ca.crt")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class InvalidPattern(ValueError):
    """An allowed-agents entry (or network setting) that cannot be read; the message names it."""


@dataclass(frozen=True)
class AgentPattern:
    """One allowed entry: exactly one of `host`, `suffix`, `network` is set; `port` None means any port."""

    text: str
    port: int | None
    host: str | None = None
    suffix: str | None = None
    network: _Network | None = None

    def matches(self, endpoint: AgentEndpoint) -> bool:
        if self.port is not None and endpoint.port != self.port:
            return False
        host = endpoint.host.lower().rstrip(".")
        if self.host is not None:
            return _same_host(host, self.host)
        if self.suffix is not None:
            return host.endswith(self.suffix) and len(host) > len(self.suffix)
        assert self.network is not None
        try:
            return ipaddress.ip_address(host) in self.network
        except ValueError:  # a DNS name: never judged by a network
            return False


def parse_patterns(text: str, *, what: str = ALLOWED_AGENTS, ports: bool = True) -> tuple[AgentPattern, ...]:
    """Read a list of entries; InvalidPattern names the first one that cannot be read. With `ports=False`
    (the controller-wide setting) entries carry no port and match any."""
    return tuple(_parse_one(entry, what, ports) for entry in re.split(r"[\s,]+", text.strip()) if entry)


def _parse_one(entry: str, what: str, ports: bool) -> AgentPattern:
    target, port = _split_port(entry, what) if ports else (entry, None)
    if target.startswith("*."):
        suffix = target[1:].lower().rstrip(".")
        try:
            split_host_port(suffix[1:], what=what)
        except InvalidAddress:
            raise InvalidPattern(
                f"{what}: {entry!r} is not a DNS suffix like *.ob.svc.cluster.local"
            ) from None
        return AgentPattern(entry, port, suffix=suffix)
    if "/" in target:
        try:
            return AgentPattern(entry, port, network=ipaddress.ip_network(target.strip("[]"), strict=False))
        except ValueError:
            raise InvalidPattern(f"{what}: {entry!r} is not a network like 10.0.0.0/24") from None
    try:
        host, _ = split_host_port(f"[{target}]" if ":" in target else target, what=what)
    except InvalidAddress as exc:
        raise InvalidPattern(f"{what}: {entry!r}: {exc}") from None
    return AgentPattern(entry, port, host=host.lower().rstrip("."))


def _split_port(entry: str, what: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, `net/len:port`, `[v6net/len]:port`, `*.suffix:port`; `:*` is any port."""
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise InvalidPattern(f"{what}: {entry!r} has no ']'")
        target, rest = entry[1:end], entry[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidPattern(f"{what}: {entry!r} has text after ']' that is not a port")
        port_text = rest[1:] if rest else None
    elif entry.count(":") == 1:
        target, port_text = entry.split(":")
    elif ":" in entry:
        raise InvalidPattern(f"{what}: {entry!r}: write an IPv6 entry in brackets, e.g. [fd00::1]:2886")
    else:
        target, port_text = entry, None
    if port_text is None:
        return target, DEFAULT_AGENT_PORT
    if port_text == "*":
        return target, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidPattern(f"{what}: {entry!r}: the port must be 1-65535 or *")
    return target, int(port_text)


def _same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)  # 10.0.0.1 == 10.000.0.1, v6 spellings
    except ValueError:
        return a == b


@dataclass(frozen=True)
class Refusal:
    """Why a Secret may not be used for an agent: `reason` for status, `message` for a person."""

    reason: Reason
    message: str


def check(
    secret: str,
    annotations: Mapping[str, str] | None,
    key: str,
    endpoint: AgentEndpoint,
    networks: Iterable[AgentPattern] = (),
) -> Refusal | None:
    """None when the Secret `secret` (namespace/name) may send `key` to `endpoint`; else why not.

    `networks` is the controller-wide restriction (OBSTOP_ALLOWED_AGENT_NETWORKS): when given, the agent must
    also be inside one of them.
    """
    limits = tuple(networks)
    if limits and not any(p.matches(endpoint) for p in limits):
        return Refusal(
            Reason.AGENT_NOT_ALLOWED,
            f"agent {endpoint.netloc} is outside the networks this controller may reach "
            f"(OBSTOP_ALLOWED_AGENT_NETWORKS: {', '.join(p.text for p in limits)})",
        )
    notes = annotations or {}
    raw = notes.get(ALLOWED_AGENTS)
    if raw is None or not raw.strip():
        return Refusal(
            Reason.SECRET_NOT_ALLOWED,
            f"Secret {secret} has no annotation {ALLOWED_AGENTS}: its owner must list the agents its value "
            f"may be sent to (e.g. {endpoint.netloc}); nothing was sent",
        )
    try:
        allowed = parse_patterns(raw)
    except InvalidPattern as exc:
        return Refusal(Reason.SECRET_NOT_ALLOWED, f"Secret {secret}: {exc}; nothing was sent")
    keys = [k for k in re.split(r"[\s,]+", notes.get(ALLOWED_KEYS, "")) if k] or list(DEFAULT_ALLOWED_KEYS)
    if key not in keys:
        return Refusal(
            Reason.SECRET_NOT_ALLOWED,
            f"Secret {secret} does not allow its key {key!r} to be used ({ALLOWED_KEYS}: {', '.join(keys)}); "
            "nothing was sent",
        )
    if not any(p.matches(endpoint) for p in allowed):
        return Refusal(
            Reason.AGENT_NOT_ALLOWED,
            f"Secret {secret} does not allow agent {endpoint.netloc} ({ALLOWED_AGENTS}: {raw.strip()}); "
            "nothing was sent",
        )
    return None
