"""Generic ids (fact sheet §4.5): the published vectors, round trips, and malformed input that must raise
InvalidGenericId and nothing else."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obstop.obshell import GenericId, IdKind, InvalidGenericId, agent_dag_id
from obstop.obshell.ids import decode


@pytest.mark.parametrize(
    ("text", "ip", "port", "local_id"),
    [
        ("22130706433028869", "127.0.0.1", 2886, 9),
        ("201677721650288642", "10.0.0.5", 2886, 42),
    ],
)
def test_published_vectors(text: str, ip: str, port: int, local_id: int) -> None:
    decoded = decode(text)
    assert decoded == GenericId(IdKind.AGENT_V4, local_id, ip, port)
    assert decoded.agent == f"{ip}:{port}"
    assert agent_dag_id(ip, port, local_id).encode() == text


def test_cluster_and_ipv6_ids() -> None:
    assert decode("142") == GenericId(IdKind.CLUSTER, 42)
    assert decode("142").agent is None
    v6 = agent_dag_id("::1", 2886, 7)
    assert v6.kind is IdKind.AGENT_V6
    assert v6.encode() == "3" + f"{1:039d}" + "02886" + "7"
    assert decode(v6.encode()).agent == "[::1]:2886"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",  # a cluster id needs at least one digit after the kind
        "2213070643302886",  # 16 chars: a `2` id needs more than 16
        "3" + "0" * 44,
        "6123",  # unknown kind
        "0123",
        "22130706433028869x",
        "-22130706433028869",
        "\uff12" * 17,  # full-width digits are digits to str.isdigit, not to obshell
        "29999999999028869",  # IPv4 integer out of range
        "22130706433999999",  # port 99999
        " 22130706433028869",
    ],
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidGenericId):
        decode(text)


@pytest.mark.parametrize(
    "bad",
    [
        GenericId(IdKind.AGENT_V4, -1, "127.0.0.1", 2886),
        GenericId(IdKind.AGENT_V4, 1, "::1", 2886),
        GenericId(IdKind.AGENT_V6, 1, "127.0.0.1", 2886),
        GenericId(IdKind.AGENT_V4, 1, "127.0.0.1", 70000),
        GenericId(IdKind.AGENT_V4, 1, "not-an-ip", 2886),
        GenericId(IdKind.AGENT_V4, 1, None, None),
    ],
)
def test_unencodable_ids_are_refused(bad: GenericId) -> None:
    with pytest.raises(InvalidGenericId):
        bad.encode()


ports = st.integers(min_value=0, max_value=65535)
local_ids = st.integers(min_value=0, max_value=10**12)


@settings(deadline=None)
@given(ip=st.ip_addresses(), port=ports, local_id=local_ids)
def test_round_trip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, local_id: int) -> None:
    generic = agent_dag_id(str(ip), port, local_id)
    text = generic.encode()
    assert text.isdigit()
    assert decode(text) == generic
    assert str(generic) == text


@settings(deadline=None)
@given(local_id=local_ids)
def test_cluster_round_trip(local_id: int) -> None:
    generic = GenericId(IdKind.CLUSTER, local_id)
    assert decode(generic.encode()) == generic


@settings(deadline=None, max_examples=500)
@given(st.one_of(st.text(), st.text(alphabet="0123456789", max_size=60)))
def test_decode_raises_only_invalid_generic_id(text: str) -> None:
    try:
        decoded = decode(text)
    except InvalidGenericId:
        return
    assert text.isascii() and text.isdigit()
    assert decode(decoded.encode()) == decoded  # whatever decodes re-encodes to the same id
