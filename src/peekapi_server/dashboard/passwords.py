"""Dashboard passwords: ``hashlib.scrypt`` with a random salt per password, parameters stored with the hash.

The stored form is ``scrypt$N$r$p$<salt hex>$<hash hex>``, so the cost can be raised later without breaking
existing hashes. Verification compares in constant time, and a missing user is checked against a dummy hash
so that "no such user" and "wrong password" take the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: scrypt's cost (N = 2**16, r = 8, p = 1: 64 MiB and about 0.2 s per hash on a laptop core).
N, R, P = 2**16, 8, 1
_KEY_LEN = 32
_MAX_MEM = 256 * 1024 * 1024
#: Longest password accepted (scrypt takes any length; this bounds the work an attacker can ask for).
MAX_PASSWORD = 1024
MIN_PASSWORD = 8


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, maxmem=_MAX_MEM, dklen=_KEY_LEN
    )


def hash_password(password: str) -> str:
    """The stored form of ``password`` with a fresh 16-byte salt; :class:`ValueError` for a bad length."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValueError(f"a password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    return f"scrypt${N}${R}${P}${salt.hex()}${_derive(password, salt, N, R, P).hex()}"


_DUMMY = f"scrypt${N}${R}${P}${'00' * 16}${'00' * _KEY_LEN}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored`` (``None``: a dummy hash is checked and ``False`` returned)."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY).split("$")
        if scheme != "scrypt" or not (int(n) <= 2**20 and int(r) <= 16 and int(p) <= 4):
            return False
        computed = _derive(password, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, bytes.fromhex(digest)) and stored is not None
    except ValueError:
        return False


def new_password() -> str:
    """A random password for a generated account (about 120 bits, URL-safe characters)."""
    return secrets.token_urlsafe(15)
