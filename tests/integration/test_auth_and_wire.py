"""The simulated agent's auth and envelope over real HTTP (fact sheet §1, §2, §6 items 1-5), and the
client's handling of them: wrong password, expired and mismatched headers, key rotation, 512-bit keys, https."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from obshell_sim_helpers import PASSWORD, error_of, signed_header, stop_params, wait_finished

from obstop.obshell import ObshellApiError, ObshellClient, crypto
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig

STOP_BODY = stop_params(force=True).to_wire()


async def test_envelope_of_a_success_echoes_the_trace_id(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/api/v1/info", headers={"X-OBSHELL-Trace-ID": "abc123"})
    body = response.json()
    assert response.headers["content-type"].startswith("application/json")
    assert list(body) == ["successful", "timestamp", "duration", "status", "traceId", "data"]
    assert (body["successful"], body["status"], body["traceId"]) == (True, 200, "abc123")
    assert isinstance(body["duration"], int)
    datetime.datetime.fromisoformat(body["timestamp"])
    assert body["data"]["supportedAuth"] == ["v2"] and body["data"]["identity"] == "CLUSTER AGENT"
    random_trace = (await raw.get("/api/v1/info")).json()["traceId"]
    assert len(random_trace) == 16 and int(random_trace, 16) >= 0
    assert (await raw.get("/api/v1/status")).json()["traceId"] == ""


async def test_secret_is_a_pkcs1_der_key(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    data = (await raw.get("/api/v1/secret")).json()["data"]
    agent = sim.agents[0]
    assert (data["ip"], data["port"]) == (agent.ip, agent.port)
    assert data["public_key"].startswith("MIGJAoGBA") and len(data["public_key"]) == 188
    crypto.load_public_key(data["public_key"])


async def test_unknown_route_is_404_not_found(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert error_of(response) == {"errCode": "Common.NotFound", "message": "Element not found: 404 not found"}


async def test_protected_route_without_header_is_400(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/api/v1/ob/stop", json=STOP_BODY)
    assert response.status_code == 400
    assert error_of(response)["errCode"] == "Request.Header.NotFound"


async def test_undecryptable_header_is_401_code_1_even_on_an_open_route(raw: httpx.AsyncClient) -> None:
    garbage = base64.b64encode(b"\x01" * 128).decode()
    response = await raw.get("/api/v1/info", headers={"X-OCS-Header": garbage})
    assert response.status_code == 401
    error = error_of(response)
    assert (error["code"], error["errCode"]) == (1, "Security.Authentication.Header.DecryptFailed")


async def test_decryptable_header_on_an_open_route_is_accepted(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    header = signed_header(sim.agents[0], uri="/somewhere/else", password="wrong")
    assert (await raw.get("/api/v1/info", headers={"X-OCS-Header": header})).status_code == 200


async def test_wrong_password_is_401_10008(sim: ObshellSimulator) -> None:
    async with ObshellClient(sim.agents[0].url, "not-the-password") as client:
        with pytest.raises(ObshellApiError) as caught:
            await client.stop(stop_params(force=True))
    error = caught.value
    assert (error.status, error.code, error.err_code) == (
        401,
        10008,
        "Security.Authentication.IncorrectOceanbasePassword",
    )
    assert error.message == "Unauthorized: OceanBase password is incorrect"
    assert "not-the-password" not in repr(error) and "not-the-password" not in str(error)
    assert sim.landed_stops() == [] and sim.stops[0].params is None


async def _post_stop(raw: httpx.AsyncClient, header: str) -> httpx.Response:
    content = crypto.aes_encrypt(bytes(range(32)), json.dumps(STOP_BODY).encode())
    return await raw.post("/api/v1/ob/stop", headers={"X-OCS-Header": header}, content=content)


async def test_expired_header_is_401(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop", ts=str(int(time.time()) - 5))
    response = await _post_stop(raw, header)
    assert response.status_code == 401
    assert error_of(response) == {
        "code": 10008,
        "errCode": "Security.Authentication.Expired",
        "message": "Unauthorized: Authentication expired",
    }


async def test_uri_must_match_path_and_query_exactly(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="/api/v1/ob/stop?x=1"))
    assert response.status_code == 401
    assert error_of(response)["errCode"] == "Security.Authentication.Header.UriMismatch"
    # The uri check runs before the password check.
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="/api/v1/ob/start", password="bad"))
    assert error_of(response)["errCode"] == "Security.Authentication.Header.UriMismatch"


async def test_ts_as_a_json_number_is_a_decrypt_failure(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop", ts=int(time.time()) + 60)
    response = await _post_stop(raw, header)
    assert response.status_code == 401
    assert error_of(response)["code"] == 1


async def test_header_keys_are_case_insensitive(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    fields = {
        "Auth": PASSWORD,
        "Ts": str(int(time.time()) + 60),
        "Uri": "/api/v1/ob/stop",
        "Keys": base64.b64encode(bytes(range(32))).decode(),
    }
    response = await _post_stop(raw, signed_header(sim.agents[0], uri="", fields=fields))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "Stop OB"


async def test_plaintext_body_with_a_header_is_refused(sim: ObshellSimulator, raw: httpx.AsyncClient) -> None:
    header = signed_header(sim.agents[0], uri="/api/v1/ob/stop")
    response = await raw.post("/api/v1/ob/stop", headers={"X-OCS-Header": header}, json=STOP_BODY)
    assert response.status_code == 500
    assert error_of(response)["errCode"] == "Request.Body.Decrypt.AES.ContentLength.Invalid"
    assert sim.landed_stops() == []


async def test_agent_header_is_preferred_and_needs_an_agent_password(
    sim: ObshellSimulator, raw: httpx.AsyncClient
) -> None:
    good = signed_header(sim.agents[0], uri="/api/v1/ob/stop")
    content = crypto.aes_encrypt(bytes(range(32)), json.dumps(STOP_BODY).encode())
    response = await raw.post(
        "/api/v1/ob/stop", headers={"X-OCS-Header": good, "X-OCS-Agent-Header": good}, content=content
    )
    assert response.status_code == 401
    assert error_of(response)["errCode"] == "Security.Authentication.WithOceanBasePassword"


async def test_key_rotation_mid_use_is_recovered_once(sim: ObshellSimulator, client: ObshellClient) -> None:
    first = await client.stop(stop_params(force=True))
    sim.rotate_key()
    dag = await client.get_dag(first.id)  # the client re-fetches the key after 401 code 1 and retries once
    assert dag.id == first.id

    # With a raw header made with the old key, the agent answers 401 code 1.
    old_public = crypto.load_public_key(crypto.dump_public_key(sim.agents[0].key.public_key()))
    sim.rotate_key(sim.agents[0].address)
    header = crypto.rsa_encrypt(old_public, json.dumps({"auth": PASSWORD}).encode())
    async with httpx.AsyncClient(base_url=sim.agents[0].url) as raw:
        response = await raw.get(f"/api/v1/task/dag/{first.id}", headers={"X-OCS-Header": header})
    assert response.status_code == 401 and error_of(response)["code"] == 1


@pytest.mark.parametrize("version", ["4.2.3.0", "4.4.1.0", "4.4.1.1"])
async def test_512_bit_agent_like_obshell_before_4_4_2(version: str) -> None:
    config = SimulatorConfig(password=PASSWORD, zones=1, stage_seconds=0.02, version=version)
    async with ObshellSimulator(config) as sim, ObshellClient(sim.agents[0].url, PASSWORD) as client:
        async with httpx.AsyncClient() as raw:
            key_text = (await raw.get(f"{sim.agents[0].url}/api/v1/secret")).json()["data"]["public_key"]
        assert key_text.startswith("MEgCQQ") and crypto.load_public_key(key_text).key_size == 512
        dag = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
        assert dag.succeeded


def _self_signed_ca_and_server_cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "obstop test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


async def test_https_with_a_ca_bundle(tmp_path: Path) -> None:
    ca_path, cert_path, key_path = _self_signed_ca_and_server_cert(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert_path, key_path)
    config = SimulatorConfig(password=PASSWORD, zones=1, stage_seconds=0.02, ssl_context=server_ssl)
    async with ObshellSimulator(config) as sim:
        url = sim.agents[0].url
        assert url.startswith("https://")
        async with ObshellClient(url, PASSWORD, verify=str(ca_path)) as client:
            dag = await wait_finished(client, (await client.stop(stop_params(force=True))).id)
            assert dag.succeeded
        # Without the CA the certificate is refused and nothing is sent.
        from obstop.obshell import ObshellTransportError

        async with ObshellClient(url, PASSWORD) as untrusting:
            with pytest.raises(ObshellTransportError):
                await untrusting.stop(stop_params(force=True))
        assert len(sim.landed_stops()) == 1
