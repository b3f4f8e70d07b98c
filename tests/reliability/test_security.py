"""Security: Secret access limited to the one the request names (in its own namespace), and TLS
verification on by default for https agents. Real `obstop run` processes against the
session's real kube-apiserver, whose audit log (not the controller's word) shows which Secrets the controller
read, and an https simulator with a self-signed certificate."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from reliability_support import control_plane_of, controller_audit, stops_on

from obstop.testing.controlplane import ControlPlane
from obstop.testing.stack import Stack, stop_request

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------------------
# Secrets


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane) -> Iterator[Stack]:
    """A controller serving two namespaces of its own: the stack's (with the password Secret and a decoy) and
    a second team's (with its own Secret under another name, and no `obshell-root`)."""
    with Stack(control_plane=control_plane, clusters=3, stage_seconds=0.05) as s:
        team_b = f"{s.namespace}-b"
        s.extra_namespaces = (team_b,)  # type: ignore[attr-defined]  # also checked by the password guard
        s.ensure_namespace(team_b)
        s.put_secret(team_b, "team-b-root", {"password": s.password})
        s.put_secret(s.namespace, "decoy", {"password": s.password})
        s.start_controller("--namespace", s.namespace, "--namespace", team_b)
        yield s


def _team_b(stack: Stack) -> str:
    namespace: str = stack.extra_namespaces[0]  # type: ignore[attr-defined]
    return namespace


def _secret_access(stack: Stack, since: int) -> set[tuple[str, str, str]]:
    """(verb, namespace, name) of every call the controller made on Secrets, anywhere, as audited."""
    events = controller_audit(control_plane_of(stack), since=since, resource="secrets")
    return {(e.verb, e.namespace, e.name) for e in events}


def test_the_controller_reads_only_the_named_secret_in_the_requests_namespace(stack: Stack) -> None:
    """Two requests in two namespaces. Expected: both Succeeded; the audit log shows the controller made no
    call on Secrets but a `get` of each request's named Secret in the request's namespace (no list, no watch,
    not the decoy)."""
    team_b = _team_b(stack)
    since = len(control_plane_of(stack).audit_events())
    stack.create(stop_request("in-own-namespace", stack.agent(0), force=True))
    stack.create(
        stop_request("in-team-b", stack.agent(1), force=True, secret="team-b-root"), namespace=team_b
    )
    assert stack.wait_for("in-own-namespace")["phase"] == "Succeeded"
    assert stack.wait_for("in-team-b", namespace=team_b)["phase"] == "Succeeded"

    assert _secret_access(stack, since) == {
        ("get", stack.namespace, "obshell-root"),
        ("get", team_b, "team-b-root"),
    }


def test_a_secret_of_another_namespace_is_never_used(stack: Stack) -> None:
    """The second team's namespace has no `obshell-root`; the stack's namespace has one. Expected: waiting for
    <team-b>/obshell-root, the audit log showing only reads of that one (404), none of the other namespace's,
    and no stop sent."""
    team_b = _team_b(stack)
    since = len(control_plane_of(stack).audit_events())
    stack.create(stop_request("borrowing", stack.agent(2), force=True), namespace=team_b)
    status = stack.wait_for("borrowing", lambda s: s.get("attempts", 0) >= 2, namespace=team_b)
    assert status["reason"] == "WaitingForSecret"
    assert f"Secret {team_b}/obshell-root not found" in status["lastError"]
    assert _secret_access(stack, since) == {("get", team_b, "obshell-root")}
    reads = controller_audit(control_plane_of(stack), since=since, resource="secrets")
    assert {e.code for e in reads} == {404}, reads
    assert stops_on(stack, 2) == []


# ------------------------------------------------------------------------------------------------------
# TLS


def _self_signed(workdir: Path) -> tuple[ssl.SSLContext, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "obshell-sim")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (workdir / "cert.pem").write_text(pem)
    (workdir / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    return context, pem


def test_https_agents_are_verified_by_default(tmp_path: Path, control_plane: ControlPlane) -> None:
    """Self-signed agent certificate. Without caSecretRef: a certificate error in status and no stop reaches
    the agent. With the certificate as caSecretRef: Succeeded."""
    context, pem = _self_signed(tmp_path)
    s = Stack(control_plane=control_plane, clusters=2, stage_seconds=0.05)
    s.sim_config = dataclasses.replace(s.sim_config, ssl_context=context)
    with s:
        s.start_controller()
        untrusted = s.sim.clusters[0].agents[0].url
        assert untrusted.startswith("https://")
        s.create(stop_request("untrusted", untrusted, force=True))
        status = s.wait_for("untrusted", lambda st: st.get("attempts", 0) >= 2)
        assert status["phase"] == "Pending" and status["reason"] == "AgentUnreachable"
        assert "CERTIFICATE_VERIFY_FAILED" in status["lastError"], status["lastError"]
        assert s.sim.stops() == []

        s.put_secret(s.namespace, "obshell-ca", {"ca.crt": pem})
        trusted = stop_request("trusted", s.sim.clusters[1].agents[0].url, force=True)
        trusted["spec"]["obshell"]["caSecretRef"] = {"name": "obshell-ca"}
        s.create(trusted)
        assert s.wait_for("trusted", timeout=60)["phase"] == "Succeeded"
        assert len(s.sim.landed_stops()) == 1 and s.get("untrusted")["status"]["phase"] == "Pending"
