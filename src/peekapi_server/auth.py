"""Credential checks for both APIs, with a short-lived cache so ingest does not query the store per request.

Lookups go to the store in a worker thread; answers (including "no such credential") are cached for
``ttl`` seconds, keyed by the secret's hash, so a revocation takes effect within ``ttl`` seconds.
A presented value that cannot be a secret (empty, over 512 characters, or holding anything but printable ASCII
without spaces) is refused without a lookup, so odd header bytes never reach the database.
"""

from __future__ import annotations

import threading
import time

from starlette.concurrency import run_in_threadpool

from .store import CredentialKind, Store
from .store.credentials import hash_secret

_MAX_ENTRIES = 10_000
_MAX_SECRET = 512


def plausible_secret(secret: str) -> bool:
    """True when ``secret`` could be a key or token: 1..512 printable ASCII characters, no spaces."""
    return 0 < len(secret) <= _MAX_SECRET and secret.isascii() and secret.isprintable() and " " not in secret


class CredentialCache:
    """Maps a presented secret to its project id (or ``None``) for one credential kind."""

    def __init__(self, store: Store, kind: CredentialKind, ttl: float) -> None:
        self._store = store
        self._kind = kind
        self._ttl = ttl
        self._entries: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    async def project_for(self, secret: str) -> int | None:
        """The project id of a live credential, else ``None``. Never raises for a bad secret."""
        if not plausible_secret(secret):
            return None
        key = hash_secret(secret)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        project_id = await run_in_threadpool(self._store.authenticate, secret, self._kind)
        if self._ttl > 0:
            with self._lock:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = (now + self._ttl, project_id)
        return project_id
