"""Agent address parsing (obstop.obshell.address): what users may write in spec.obshell.address, and that
anything else is an InvalidAddress with a message, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obstop.obshell import AgentEndpoint, InvalidAddress, parse_endpoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5", AgentEndpoint("http", "10.0.0.5", 2886)),
        ("10.0.0.5:2887", AgentEndpoint("http", "10.0.0.5", 2887)),
        ("  10.0.0.5:2887 ", AgentEndpoint("http", "10.0.0.5", 2887)),
        ("[::1]:2886", AgentEndpoint("http", "::1", 2886)),
        ("[fe80::1]", AgentEndpoint("http", "fe80::1", 2886)),
        ("::1", AgentEndpoint("http", "::1", 2886)),
        ("obshell.ob.svc.cluster.local", AgentEndpoint("http", "obshell.ob.svc.cluster.local", 2886)),
        ("obshell-0.obshell:2886", AgentEndpoint("http", "obshell-0.obshell", 2886)),
        ("http://10.0.0.5:2886", AgentEndpoint("http", "10.0.0.5", 2886)),
        ("HTTPS://agent.example:443/", AgentEndpoint("https", "agent.example", 443)),
        ("https://[2001:db8::1]:8443", AgentEndpoint("https", "2001:db8::1", 8443)),
    ],
)
def test_accepted_forms(text: str, expected: AgentEndpoint) -> None:
    assert parse_endpoint(text) == expected


def test_netloc_and_base_url_bracket_ipv6() -> None:
    endpoint = parse_endpoint("[::1]:2886")
    assert endpoint.netloc == "[::1]:2886"
    assert endpoint.base_url == "http://[::1]:2886" == str(endpoint)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ftp://10.0.0.5",
        "http://10.0.0.5/api",
        "http://user@10.0.0.5",
        "http://10.0.0.5?x=1",
        "10.0.0.5:0",
        "10.0.0.5:65536",
        "10.0.0.5:port",
        "10.0.0.5:",
        "256.0.0.1",
        "10.0.0",
        "[::1",
        "[::1]x",
        "[10.0.0.5]:2886",
        "-bad-.example",
        "under_score.example",
        "a" * 64 + ".example",
        ":::",
    ],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_endpoint(text)
    assert str(caught.value)


@settings(deadline=None, max_examples=500)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_invalid_address(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except InvalidAddress:
        return
    assert 1 <= endpoint.port <= 65535
    assert endpoint.scheme in ("http", "https")
    assert parse_endpoint(endpoint.base_url) == endpoint


@settings(deadline=None)
@given(ip=st.ip_addresses(), port=st.integers(min_value=1, max_value=65535), https=st.booleans())
def test_ip_round_trip(ip: object, port: int, https: bool) -> None:
    scheme = "https" if https else "http"
    endpoint = AgentEndpoint(scheme, str(ip), port)
    assert parse_endpoint(endpoint.base_url) == endpoint
    assert parse_endpoint(endpoint.netloc) == AgentEndpoint("http", str(ip), port)
