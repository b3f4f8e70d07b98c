"""Agent addresses as users write them: `host:port` (port default 2886), `[IPv6]:port`, a DNS name, or an
`http://` / `https://` URL. One parser, used by the client, the CLI and the controller."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_AGENT_PORT = 2886

# RFC 1123 hostname: labels of letters, digits and hyphens, not starting or ending with a hyphen.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")


class InvalidAddress(ValueError):
    """An agent address that cannot be used; the message says why."""


@dataclass(frozen=True)
class AgentEndpoint:
    scheme: str
    host: str  # bare host: an IPv6 address has no brackets here
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def __str__(self) -> str:
        return self.base_url


def parse_endpoint(text: str) -> AgentEndpoint:
    """Parse an agent address; raise InvalidAddress with a clear message otherwise."""
    raw = text.strip()
    if not raw:
        raise InvalidAddress("agent address is empty")
    scheme = "http"
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", raw)
    if match:
        scheme = match.group(1).lower()
        if scheme not in ("http", "https"):
            raise InvalidAddress(f"agent address {text!r}: scheme must be http or https, not {scheme!r}")
        raw = match.group(2).rstrip("/")
        if "/" in raw or "?" in raw or "#" in raw or "@" in raw:
            raise InvalidAddress(f"agent address {text!r}: a URL may not have a path, query or user part")
    host, port = split_host_port(raw, what=f"agent address {text!r}")
    return AgentEndpoint(scheme, host, port)


def split_host_port(
    raw: str, *, what: str = "address", default_port: int = DEFAULT_AGENT_PORT
) -> tuple[str, int]:
    """Split `host[:port]` / `[v6][:port]` / bare IPv6, validating host and port."""
    port_text: str | None = None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise InvalidAddress(f"{what}: missing ']' after IPv6 address")
        host, rest = raw[1:end], raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InvalidAddress(f"{what}: unexpected text after ']'")
            port_text = rest[1:]
        _check_ip(host, 6, what)
    elif raw.count(":") > 1:
        host = raw  # a bare IPv6 address, no port
        _check_ip(host, 6, what)
    else:
        host, _, port_text = raw.partition(":") if ":" in raw else (raw, "", None)
        if _looks_numeric(host):
            _check_ip(host, 4, what)
        elif not _HOSTNAME.match(host) or len(host) > 253:
            raise InvalidAddress(f"{what}: {host!r} is not a valid IPv4 address or DNS name")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidAddress(f"{what}: port {port_text!r} must be a number from 1 to 65535")
    return host, int(port_text)


def _looks_numeric(host: str) -> bool:
    return bool(host) and all(part.isdigit() for part in host.split("."))


def _check_ip(host: str, version: int, what: str) -> None:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise InvalidAddress(f"{what}: {host!r} is not a valid IPv{version} address") from None
    if addr.version != version:
        raise InvalidAddress(f"{what}: {host!r} is not a valid IPv{version} address")
