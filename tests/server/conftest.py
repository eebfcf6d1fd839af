"""Collector fixtures: stores on SQLite and on a real PostgreSQL, and a real collector on a loopback port.

PostgreSQL runs where ``PEEKAPI_TEST_POSTGRES_URL`` is set (``scripts/postgres.sh start`` prints one); each
test session gets a database of its own, created here and dropped at the end. Without the variable the
PostgreSQL cases are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from peekapi_server.store import Project, Store, open_store
from tests.server.support import Collector, start_collector

PG_ENV = "PEEKAPI_TEST_POSTGRES_URL"


def _replace_db(url: str, name: str) -> str:
    base, _, rest = url.rpartition("/")
    query = ("?" + rest.split("?", 1)[1]) if "?" in rest else ""
    return f"{base}/{name}{query}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session (skips when no server is configured)."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set (scripts/postgres.sh start prints one)")
    import psycopg

    name = f"peekapi_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _replace_db(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each engine: a new SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'peekapi.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open, migrated store on each engine."""
    s = open_store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def project(store: Store) -> Project:
    """A project with a unique name (PostgreSQL databases are shared within a session)."""
    return store.create_project(f"proj-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def collector(db_url: str) -> Iterator[Collector]:
    """A running collector on each engine."""
    c = start_collector(db_url)
    try:
        yield c
    finally:
        c.stop()
        c.store.close()
