"""Stores: one logical schema on SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

from .base import (
    Batch,
    Credential,
    CredentialKind,
    MaintenanceResult,
    Project,
    ReadQuery,
    Store,
    StoreError,
    WriteResult,
)


def open_store(url: str) -> Store:
    """A store for ``url`` (``postgresql://``/``postgres://`` or ``sqlite:///path``/a path), schema migrated.

    Imports psycopg only for PostgreSQL URLs. Raises :class:`ValueError` for a URL it does not understand.
    """
    store: Store
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store = PostgresStore(url)
    elif url.startswith("sqlite:") or "://" not in url:
        from .sqlite import SqliteStore

        store = SqliteStore(url)
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or postgresql://...")
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store


__all__ = [
    "Batch",
    "Credential",
    "CredentialKind",
    "MaintenanceResult",
    "Project",
    "ReadQuery",
    "Store",
    "StoreError",
    "WriteResult",
    "open_store",
]
