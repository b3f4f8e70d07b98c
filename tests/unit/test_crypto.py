"""The hybrid-encryption primitives against the fact sheet's vectors (§2.5) and round trips."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from obstop.obshell import crypto

KEYS = bytes(range(32))
BODY = {
    "scope": {"type": "GLOBAL", "target": []},
    "force": True,
    "terminate": False,
    "forcePassDag": {"id": []},
}
WIRE_BODY = (
    "1CxuRH8pAJzJNO5A5BlVuE8Hw3gRUh6xiL/oDe5YyU7RUu5Nk9vBrzglonIDwM9BoGIZW9UZHlNLJlq8KDq52IAH1v+KSuWj/6LVjW7Z0Nbw"
    "t3/K/4ydYFbuUtElk/dlfJTz2ce8vzYDl2XQxfbnVg=="
)
HEADER = (
    '{"auth": "rootpw", "ts": "1700000060", "uri": "/api/v1/ob/stop", '
    '"keys": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}'
)


def test_aes_body_matches_the_published_vector() -> None:
    plain = json.dumps(BODY).encode()
    assert len(plain) == 106
    assert crypto.aes_encrypt(KEYS, plain) == WIRE_BODY
    assert crypto.aes_decrypt(KEYS, WIRE_BODY) == plain


def test_header_keys_field_encodes_key_then_iv() -> None:
    assert base64.b64encode(KEYS).decode() == json.loads(HEADER)["keys"]


@pytest.mark.parametrize(("bits", "expected_chars"), [(1024, 512)])
def test_rsa_header_round_trip_in_53_byte_chunks(bits: int, expected_chars: int) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = crypto.load_public_key(crypto.dump_public_key(private.public_key()))
    assert len(HEADER) == 120
    wire = crypto.rsa_encrypt(public, HEADER.encode())
    assert len(wire) == expected_chars  # 3 chunks (53+53+14) of 128 bytes
    assert crypto.rsa_decrypt(private, wire) == HEADER.encode()


def test_public_key_is_pkcs1_der_base64() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    text = crypto.dump_public_key(private.public_key())
    assert text.startswith("MIGJAoGBA") and len(text) == 188


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(b"\x30\x03\x02\x01\x01").decode()])
def test_malformed_public_key_is_a_crypto_error(bad: str) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(bad)


def test_aes_rejects_bad_lengths_and_short_keys() -> None:
    with pytest.raises(crypto.CryptoError, match="multiple of the block size"):
        crypto.aes_decrypt(KEYS, base64.b64encode(b"x" * 15))
    with pytest.raises(crypto.CryptoError, match="size"):
        crypto.aes_decrypt(KEYS[:10], WIRE_BODY)
