"""Where a Secret's value may go (obstop.controller.agent_policy): the annotation's syntax and every decision."""

from __future__ import annotations

import pytest

from obstop.controller.agent_policy import (
    ALLOWED_AGENTS,
    ALLOWED_KEYS,
    InvalidPattern,
    check,
    parse_patterns,
)
from obstop.obshell.address import parse_endpoint
from obstop.testing.stack import ALLOWED_AGENTS as STACK_ANNOTATION

SECRET = "team-a/obshell-root"


def decide(allowed: str | None, address: str, key: str = "password", networks: str = "", **extra: str) -> str:
    annotations = dict(extra)
    if allowed is not None:
        annotations[ALLOWED_AGENTS] = allowed
    patterns = parse_patterns(networks, what="OBSTOP_ALLOWED_AGENT_NETWORKS", ports=False)
    refusal = check(SECRET, annotations, key, parse_endpoint(address), patterns)
    return "allowed" if refusal is None else refusal.reason


def test_the_annotation_name_is_the_contract() -> None:
    assert ALLOWED_AGENTS == STACK_ANNOTATION == "obshell.oceanbase.com/allowed-agents"


@pytest.mark.parametrize(
    ("allowed", "address", "verdict"),
    [
        ("10.0.0.1:2886", "10.0.0.1:2886", "allowed"),
        ("10.0.0.1:2886", "http://10.0.0.1:2886", "allowed"),
        ("10.0.0.1", "10.0.0.1", "allowed"),  # both default to 2886
        ("10.0.0.1:2886", "10.0.0.1:2887", "AgentNotAllowed"),
        ("10.0.0.1:2886", "10.0.0.2:2886", "AgentNotAllowed"),
        ("10.0.0.1:*", "10.0.0.1:40000", "allowed"),
        ("[fd00::1]:2886", "[fd00:0::1]:2886", "allowed"),  # one address, two spellings
        ("10.0.0.0/24:2886", "10.0.0.77:2886", "allowed"),
        ("10.0.0.0/24:2886", "10.0.1.1:2886", "AgentNotAllowed"),
        ("[fd00::/64]:2886", "[fd00::9]:2886", "allowed"),
        ("ob-agent.ob.svc:2886", "OB-Agent.ob.svc:2886", "allowed"),
        ("ob-agent.ob.svc:2886", "ob-agent.ob.svc.evil.example:2886", "AgentNotAllowed"),
        ("*.ob-prod.svc.cluster.local", "a1.ob-prod.svc.cluster.local:2886", "allowed"),
        ("*.ob-prod.svc.cluster.local", "ob-prod.svc.cluster.local:2886", "AgentNotAllowed"),
        ("*.ob-prod.svc.cluster.local", "a1.evilob-prod.svc.cluster.local:2886", "AgentNotAllowed"),
        ("*.team-a.svc.cluster.local", "a1.team-b.svc.cluster.local:2886", "AgentNotAllowed"),
        # A name is never judged by a network: it could resolve anywhere by the time of the connection.
        ("127.0.0.0/8:*", "localhost:2886", "AgentNotAllowed"),
        ("10.0.0.1:2886, 10.0.0.2:2886", "10.0.0.2:2886", "allowed"),
        ("10.0.0.1:2886\n  10.0.0.3:2886", "10.0.0.3:2886", "allowed"),
        (None, "10.0.0.1:2886", "SecretNotAllowed"),
        ("  ", "10.0.0.1:2886", "SecretNotAllowed"),
        ("10.0.0.0/33", "10.0.0.1:2886", "SecretNotAllowed"),  # unreadable: never used
    ],
)
def test_annotation_decides(allowed: str | None, address: str, verdict: str) -> None:
    assert decide(allowed, address) == verdict


def test_only_the_allowed_keys_are_released() -> None:
    assert decide("10.0.0.1", "10.0.0.1", key="password") == "allowed"
    assert decide("10.0.0.1", "10.0.0.1", key="ca.crt") == "allowed"
    assert decide("10.0.0.1", "10.0.0.1", key="aws-secret") == "SecretNotAllowed"
    assert decide("10.0.0.1", "10.0.0.1", key="root", **{ALLOWED_KEYS: "root"}) == "allowed"
    assert decide("10.0.0.1", "10.0.0.1", key="password", **{ALLOWED_KEYS: "root"}) == "SecretNotAllowed"


def test_controller_networks_restrict_further() -> None:
    assert decide("10.0.0.1", "10.0.0.1", networks="10.0.0.0/8") == "allowed"
    assert decide("10.0.0.1", "10.0.0.1", networks="192.168.0.0/16") == "AgentNotAllowed"
    assert decide("*.ob.svc", "a.ob.svc", networks="*.svc, 10.0.0.0/8") == "allowed"
    assert (
        decide(None, "10.0.0.1", networks="10.0.0.0/8") == "SecretNotAllowed"
    )  # a network alone is not enough


def test_messages_name_the_annotation_the_secret_and_the_address() -> None:
    missing = check(SECRET, {}, "password", parse_endpoint("10.0.0.9:2886"))
    assert missing is not None
    assert (
        ALLOWED_AGENTS in missing.message and SECRET in missing.message and "10.0.0.9:2886" in missing.message
    )
    elsewhere = check(SECRET, {ALLOWED_AGENTS: "10.0.0.1"}, "password", parse_endpoint("10.0.0.9:2886"))
    assert elsewhere is not None and "10.0.0.9:2886" in elsewhere.message and "10.0.0.1" in elsewhere.message
    assert "nothing was sent" in elsewhere.message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("10.0.0.1:99999", "port must be"),
        ("fd00::1:2886", "brackets"),
        ("*.", "DNS suffix"),
        ("bad_host!:2886", "not a valid"),
        ("[fd00::1", "no ']'"),
    ],
)
def test_unreadable_entries_are_named(entry: str, words: str) -> None:
    with pytest.raises(InvalidPattern, match=words) as refused:
        parse_patterns(entry)
    assert repr(entry) in str(refused.value)
