"""obshell generic ids (ob/agent/engine/task/task_dto.go ConvertToGenericID): `1`+id for cluster DAGs, `2`+IPv4+port+id and `3`+IPv6+port+id
for DAGs local to one agent (`4`/`5`: the same for obproxy tasks)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from obstop.obshell.errors import InvalidGenericId


class IdKind(Enum):
    CLUSTER = "1"
    AGENT_V4 = "2"
    AGENT_V6 = "3"
    OBPROXY_V4 = "4"
    OBPROXY_V6 = "5"


_V4_KINDS = (IdKind.AGENT_V4, IdKind.OBPROXY_V4)
_V6_KINDS = (IdKind.AGENT_V6, IdKind.OBPROXY_V6)
_MIN_LEN = {IdKind.CLUSTER: 2, **dict.fromkeys(_V4_KINDS, 17), **dict.fromkeys(_V6_KINDS, 46)}


@dataclass(frozen=True)
class GenericId:
    """A decoded generic id. `ip`/`port` are None for cluster DAGs."""

    kind: IdKind
    local_id: int
    ip: str | None = None
    port: int | None = None

    def encode(self) -> str:
        if self.local_id < 0:
            raise InvalidGenericId(f"negative id {self.local_id}")
        if self.kind is IdKind.CLUSTER:
            return f"1{self.local_id}"
        if self.ip is None or self.port is None or not 0 <= self.port <= 65535:
            raise InvalidGenericId("agent ids need an ip and a port in 0..65535")
        try:
            addr = ipaddress.ip_address(self.ip)
        except ValueError:
            raise InvalidGenericId(f"not an IP address: {self.ip!r}") from None
        if self.kind in _V4_KINDS and addr.version == 4:
            return f"{self.kind.value}{int(addr):010d}{self.port:05d}{self.local_id}"
        if self.kind in _V6_KINDS and addr.version == 6:
            return f"{self.kind.value}{int(addr):039d}{self.port:05d}{self.local_id}"
        raise InvalidGenericId(f"{self.kind.name} id cannot hold IPv{addr.version} address {self.ip}")

    @property
    def agent(self) -> str | None:
        """The owning agent as `ip:port` (`[v6]:port`), or None for a cluster DAG."""
        if self.ip is None:
            return None
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.encode()


def agent_dag_id(ip: str, port: int, local_id: int) -> GenericId:
    """The id of DAG `local_id` living on agent `ip:port`."""
    version = ipaddress.ip_address(ip).version
    return GenericId(IdKind.AGENT_V4 if version == 4 else IdKind.AGENT_V6, local_id, ip, port)


def decode(text: str) -> GenericId:
    """Parse a generic id with the server's validation; raise InvalidGenericId on anything malformed."""
    if not isinstance(text, str) or not text.isascii() or not text.isdigit():
        raise InvalidGenericId(f"Invalid ID: {text!r}")
    try:
        kind = IdKind(text[0])
    except ValueError:
        raise InvalidGenericId(f"Invalid ID: {text!r} (unknown kind {text[0]})") from None
    if len(text) < _MIN_LEN[kind]:
        raise InvalidGenericId(f"Invalid ID: {text!r} (too short)")
    if kind is IdKind.CLUSTER:
        return GenericId(kind, int(text[1:]))
    width = 10 if kind in _V4_KINDS else 39
    ip_int, port, local = int(text[1 : 1 + width]), int(text[1 + width : 6 + width]), int(text[6 + width :])
    try:
        ip = str(ipaddress.IPv4Address(ip_int) if width == 10 else ipaddress.IPv6Address(ip_int))
    except ValueError:
        raise InvalidGenericId(f"Invalid ID: {text!r} (address out of range)") from None
    if port > 65535:
        raise InvalidGenericId(f"Invalid ID: {text!r} (port out of range)")
    return GenericId(kind, local, ip, port)
