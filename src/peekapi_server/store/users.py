"""The dashboard's SQL: users, their server-side sessions, and a project's retention settings.

Functions run inside a transaction the store opens (see the store's methods of the same names). Passwords
arrive already hashed (:mod:`peekapi_server.dashboard.passwords`) and session tokens as their SHA-256, so
nothing here ever sees a secret.
"""

from __future__ import annotations

from typing import NamedTuple

from .base import StoreError
from .tx import Tx

MAX_RETENTION_DAYS = 36500


class User(NamedTuple):
    """A dashboard user: ``password_hash`` is the encoded scrypt hash (parameters and salt included)."""

    id: int
    name: str
    password_hash: str


class Session(NamedTuple):
    """A live dashboard session: who it belongs to and its CSRF token."""

    user_id: int
    user_name: str
    csrf: str
    expires_at: int


def valid_user_name(name: str) -> bool:
    """1..64 printable characters, without spaces at either end."""
    return 0 < len(name) <= 64 and name.isprintable() and name == name.strip()


def create_user(tx: Tx, name: str, password_hash: str, now: int) -> User:
    """Adds a user; :class:`StoreError` when the name is taken or invalid (see :func:`valid_user_name`)."""
    if not valid_user_name(name):
        raise StoreError("a user name must be 1 to 64 printable characters, without spaces at either end")
    if tx.rows("SELECT id FROM users WHERE name = ?", (name,)):
        raise StoreError(f"user {name!r} already exists")
    inserted = tx.run(
        "INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (name, password_hash, now),
    )
    if not inserted:  # created by another process since the check above
        raise StoreError(f"user {name!r} already exists")
    rows = tx.rows("SELECT id, name, password_hash FROM users WHERE name = ?", (name,))
    return User(int(rows[0][0]), str(rows[0][1]), str(rows[0][2]))


def get_user(tx: Tx, name: str) -> User | None:
    """The user called ``name``, else ``None``."""
    rows = tx.rows("SELECT id, name, password_hash FROM users WHERE name = ?", (name,))
    return User(int(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None


def set_user_password(tx: Tx, name: str, password_hash: str) -> None:
    """Replaces a user's password hash and ends all their sessions; :class:`StoreError` for an unknown user."""
    rows = tx.rows("SELECT id FROM users WHERE name = ?", (name,))
    if not rows:
        raise StoreError(f"no user named {name!r}")
    tx.run("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, rows[0][0]))
    tx.run("DELETE FROM sessions WHERE user_id = ?", (rows[0][0],))


def list_users(tx: Tx) -> list[tuple[str, int]]:
    """Every user's name and creation time (epoch seconds), by name."""
    return [(str(name), int(created)) for name, created in tx.rows("SELECT name, created_at FROM users ORDER BY name")]


def delete_user(tx: Tx, name: str) -> None:
    """Removes a user and ends their sessions; :class:`StoreError` for an unknown user, or for the last one (no
    one could log in then: create another first)."""
    rows = tx.rows("SELECT id FROM users WHERE name = ?", (name,))
    if not rows:
        raise StoreError(f"no user named {name!r}")
    if count_users(tx) == 1:
        raise StoreError(f"{name!r} is the only dashboard user: create another before deleting it")
    tx.run("DELETE FROM sessions WHERE user_id = ?", (rows[0][0],))
    tx.run("DELETE FROM users WHERE id = ?", (rows[0][0],))


def count_users(tx: Tx) -> int:
    """How many users exist."""
    return int(tx.rows("SELECT COUNT(*) FROM users")[0][0])


def create_session(tx: Tx, token_hash: str, user_id: int, csrf: str, *, now: int, expires_at: int) -> None:
    """Stores a session, deleting every expired one first."""
    tx.run("DELETE FROM sessions WHERE expires_at <= ?", (now,))
    tx.run(
        "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (token_hash, user_id, csrf, now, expires_at),
    )


def get_session(tx: Tx, token_hash: str, now: int) -> Session | None:
    """The unexpired session with this token hash, else ``None``."""
    rows = tx.rows(
        "SELECT s.user_id, u.name, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = ? AND s.expires_at > ?",
        (token_hash, now),
    )
    return Session(int(rows[0][0]), str(rows[0][1]), str(rows[0][2]), int(rows[0][3])) if rows else None


def delete_session(tx: Tx, token_hash: str) -> None:
    """Ends a session (nothing happens when there is none)."""
    tx.run("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))


def set_retention(tx: Tx, project_id: int, raw_retention_days: int, rollup_retention_days: int) -> None:
    """Sets a project's retention in days (each 1..36500); :class:`StoreError` otherwise."""
    if not (1 <= raw_retention_days <= MAX_RETENTION_DAYS and 1 <= rollup_retention_days <= MAX_RETENTION_DAYS):
        raise StoreError(f"retention days must be from 1 to {MAX_RETENTION_DAYS}")
    tx.run(
        "UPDATE projects SET raw_retention_days = ?, rollup_retention_days = ? WHERE id = ?",
        (raw_retention_days, rollup_retention_days, project_id),
    )


def recent_login_failures(tx: Tx, keys: list[str], since: int) -> dict[str, int]:
    """Failed logins per key at or after ``since`` (epoch seconds); keys without any are left out."""
    marks = ", ".join("?" for _ in keys)
    rows = tx.rows(
        f"SELECT key, COUNT(*) FROM login_failures WHERE key IN ({marks}) AND at >= ? GROUP BY key", (*keys, since)
    )
    return {str(key): int(n) for key, n in rows}


def record_login_failure(tx: Tx, keys: list[str], now: int, forget_before: int) -> None:
    """Records one failed login under each key, deleting every failure older than ``forget_before``."""
    tx.run("DELETE FROM login_failures WHERE at < ?", (forget_before,))
    tx.many("INSERT INTO login_failures (key, at) VALUES (?, ?)", [(key, now) for key in keys])
