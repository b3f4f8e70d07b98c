"""The client's handling of the agent's auth over real HTTP against the simulator (fact sheet §1, §2, §6 items
1-5): wrong password, key rotation, 512-bit keys, https. The simulated agent's own answers to hand-made requests
are tests/harness/test_simulator_auth.py."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from obshell_sim_helpers import PASSWORD, error_of, stop_params, wait_finished
from obstop.obshell import ObshellApiError, ObshellClient, crypto
from obstop.testing.obshell_sim import ObshellSimulator, SimulatorConfig

STOP_BODY = stop_params(force=True).to_wire()


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
