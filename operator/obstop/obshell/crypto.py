"""obshell's "API hybrid encryption" primitives (ob/agent/secure/header.go, ob/agent/secure/body.go).

The request header is JSON encrypted with the agent's RSA public key, PKCS#1 v1.5, in 53-byte chunks (the
512-bit maximum, which both official SDKs use for every key size). The request body is AES-128-CBC with
PKCS#7 padding, sent as raw base64 text. Server-side helpers (decrypt) live here too so that the simulator
speaks exactly the same wire format.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

RSA_CHUNK_SIZE = 53
AES_KEY_SIZE = 16
AES_BLOCK_SIZE = 16


class CryptoError(ValueError):
    """Bad key material or ciphertext. Never carries plaintext."""


def load_public_key(b64_der: str) -> rsa.RSAPublicKey:
    """Parse the agent's key: standard base64 of a PKCS#1 DER RSAPublicKey (Go MarshalPKCS1PublicKey)."""
    try:
        der = base64.b64decode(b64_der, validate=True)
        # PKCS#1 RSAPublicKey is not SPKI; cryptography reads it through its PEM form.
        pem = (
            b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
        )
        key = serialization.load_pem_public_key(pem)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise CryptoError(f"not a base64 PKCS#1 RSA public key: {type(exc).__name__}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise CryptoError("not an RSA public key")
    return key


def dump_public_key(key: rsa.RSAPublicKey) -> str:
    """The inverse of load_public_key: base64 PKCS#1 DER, as GET /api/v1/secret serves it."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return base64.b64encode(der).decode("ascii")


def same_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


def rsa_encrypt(key: rsa.RSAPublicKey, plaintext: bytes) -> str:
    """Encrypt in 53-byte chunks with PKCS#1 v1.5, concatenate the blocks, base64 the whole."""
    chunks = [plaintext[i : i + RSA_CHUNK_SIZE] for i in range(0, len(plaintext), RSA_CHUNK_SIZE)] or [b""]
    blocks = b"".join(key.encrypt(chunk, asym_padding.PKCS1v15()) for chunk in chunks)
    return base64.b64encode(blocks).decode("ascii")


def rsa_decrypt(key: rsa.RSAPrivateKey, b64_ciphertext: str) -> bytes:
    """Server side: base64 → k-byte blocks → PKCS#1 v1.5 decrypt each → concatenation."""
    try:
        raw = base64.b64decode(b64_ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("ciphertext is not base64") from None
    k = key.key_size // 8
    if not raw or len(raw) % k:
        raise CryptoError(f"ciphertext length {len(raw)} is not a multiple of {k}")
    try:
        return b"".join(key.decrypt(raw[i : i + k], asym_padding.PKCS1v15()) for i in range(0, len(raw), k))
    except ValueError:
        raise CryptoError("RSA decryption failed") from None


def new_aes_keys() -> bytes:
    """A fresh AES-128 key followed by a fresh 16-byte IV: the header's `keys` field."""
    return os.urandom(AES_KEY_SIZE + AES_BLOCK_SIZE)


def aes_encrypt(keys: bytes, plaintext: bytes) -> str:
    """AES-128-CBC with keys[:16] as key and keys[16:32] as IV, PKCS#7; returns the raw base64 text."""
    padder = sym_padding.PKCS7(AES_BLOCK_SIZE * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = _aes(keys).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def aes_decrypt(keys: bytes, b64_ciphertext: str | bytes) -> bytes:
    """Server side inverse of aes_encrypt. Raises CryptoError on bad length or padding."""
    if len(keys) < AES_KEY_SIZE + AES_BLOCK_SIZE:
        raise CryptoError("AES key and IV size error")
    try:
        raw = base64.b64decode(b64_ciphertext)
    except (binascii.Error, ValueError):
        raise CryptoError("body is not base64") from None
    if not raw or len(raw) % AES_BLOCK_SIZE:
        raise CryptoError("Decrypted string length is not a multiple of the block size")
    decryptor = _aes(keys).decryptor()
    padded = decryptor.update(raw) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(AES_BLOCK_SIZE * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise CryptoError("bad PKCS#7 padding") from None


def _aes(keys: bytes) -> Cipher[modes.CBC]:
    return Cipher(
        algorithms.AES(keys[:AES_KEY_SIZE]), modes.CBC(keys[AES_KEY_SIZE : AES_KEY_SIZE + AES_BLOCK_SIZE])
    )
