"""RSA key pairs for simulated agents.

obshell before 4.4.2 used 512-bit keys, which `cryptography` refuses to generate. For that case the primes
are found here with a Miller-Rabin test and the key is assembled from its numbers: good enough for a test
fixture, never for protecting anything.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives.asymmetric import rsa

PUBLIC_EXPONENT = 65537
SUPPORTED_KEY_BITS = (512, 1024)
_SMALL_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def generate_private_key(bits: int) -> rsa.RSAPrivateKey:
    if bits not in SUPPORTED_KEY_BITS:
        raise ValueError(f"key_bits must be one of {SUPPORTED_KEY_BITS}, not {bits}")
    if bits >= 1024:
        return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)
    return _small_private_key(bits)


def _small_private_key(bits: int) -> rsa.RSAPrivateKey:
    half = bits // 2
    while True:
        p, q = _random_prime(half), _random_prime(half)
        n = p * q
        phi = (p - 1) * (q - 1)
        if p == q or n.bit_length() != bits or phi % PUBLIC_EXPONENT == 0:
            continue
        d = pow(PUBLIC_EXPONENT, -1, phi)
        numbers = rsa.RSAPrivateNumbers(
            p=p,
            q=q,
            d=d,
            dmp1=d % (p - 1),
            dmq1=d % (q - 1),
            iqmp=pow(q, -1, p),
            public_numbers=rsa.RSAPublicNumbers(PUBLIC_EXPONENT, n),
        )
        return numbers.private_key()


def _random_prime(bits: int) -> int:
    while True:
        # Top two bits set so that the product has exactly 2*bits bits; odd.
        candidate = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
        if is_probable_prime(candidate):
            return candidate


def is_probable_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases; the error probability is at most 4**-rounds."""
    if n < 2:
        return False
    for small in (2, *_SMALL_PRIMES):
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True
