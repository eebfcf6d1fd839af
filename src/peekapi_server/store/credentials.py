"""Ingest keys and read tokens: how secrets look, how they are hashed, and how they are compared."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from .base import CredentialKind

PREFIX_LEN = 16
_SCHEMES: dict[CredentialKind, str] = {"ingest": "ak_live_", "read": "rt_"}
_DUMMY_HASH = hashlib.sha256(b"peekapi-no-such-credential").hexdigest()


def new_secret(kind: CredentialKind) -> str:
    """A fresh secret: ``ak_live_...`` for ingest keys, ``rt_...`` for read tokens (about 190 random bits)."""
    return _SCHEMES[kind] + secrets.token_urlsafe(24)


def prefix_of(secret: str) -> str:
    """The public part of a secret used to find its row: the first 16 characters."""
    return secret[:PREFIX_LEN]


def hash_secret(secret: str) -> str:
    """The stored form of a secret. Secrets are long and random, so one SHA-256 is enough."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(secret: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of a presented secret with a stored hash (``None``: compare with a dummy)."""
    presented = hash_secret(secret)
    if stored_hash is None:
        hmac.compare_digest(presented, _DUMMY_HASH)
        return False
    return hmac.compare_digest(presented, stored_hash)
