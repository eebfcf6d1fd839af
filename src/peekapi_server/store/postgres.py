"""PostgresStore: the scale-out engine. Any number of collector processes and hosts may share one database.

Concurrency rests on the database: batch ids are deduplicated by their primary key inside the transaction that
stores the batch, rollups are additive upserts taken in key order, compaction moves rows with one
``DELETE ... RETURNING`` statement so a concurrent writer's row is either moved or left for the next run,
and migrations and maintenance take transaction-scoped advisory locks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg_pool import ConnectionPool

from .sql import EVENT_COLUMNS, EventRow, SqlStore
from .tx import Params, Row, Tx

#: Where a transaction's events wait before being moved into ``events``: private to the connection, emptied
#: at every commit.
_STAGING = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_staging (
    project_id BIGINT NOT NULL, ts BIGINT NOT NULL, endpoint_id BIGINT NOT NULL, consumer_id BIGINT,
    method TEXT NOT NULL, path TEXT NOT NULL, status_code INTEGER NOT NULL, response_time_ms DOUBLE PRECISION NOT NULL,
    request_size BIGINT NOT NULL, response_size BIGINT NOT NULL, metadata TEXT, bucket INTEGER NOT NULL
) ON COMMIT DELETE ROWS"""


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx:
    """:class:`~.tx.Tx` over one psycopg cursor."""

    def __init__(self, cur: psycopg.Cursor[Row]) -> None:
        self._cur = cur
        self.cursor = cur

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        self._cur.execute(_pg(sql), params)
        return self._cur.fetchall() if self._cur.description else []

    def run(self, sql: str, params: Params = ()) -> int:
        self._cur.execute(_pg(sql), params)
        return self._cur.rowcount

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        self._cur.executemany(_pg(sql), seq)


class PostgresStore(SqlStore):
    """The store on a PostgreSQL database (``postgresql://user@host:port/db``), through a connection pool."""

    dialect = "postgres"
    least = "LEAST"
    greatest = "GREATEST"
    share_lock = " FOR SHARE"
    update_lock = " FOR UPDATE"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        super().__init__()
        self.url = url
        # one plain connection first: an unreachable server or bad credentials fail now, with psycopg's message
        psycopg.connect(url, connect_timeout=10).close()
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": False}
        )
        self._pool.open(wait=True, timeout=30.0)

    @contextmanager
    def _tx(self, write: bool) -> Iterator[_PgTx]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield _PgTx(cur)

    @contextmanager
    def alert_lock(self, name: str) -> Iterator[bool]:
        # a transaction-scoped advisory lock, held by an open transaction on a connection of its own for the block
        with self._tx(True) as tx:
            yield self._lock(tx, name, wait=False)

    def _lock(self, tx: Tx, name: str, wait: bool) -> bool:
        key = int.from_bytes(hashlib.sha256(f"peekapi:{name}".encode()).digest()[:8], "big", signed=True)
        if wait:
            tx.rows("SELECT pg_advisory_xact_lock(?)", (key,))
            return True
        return bool(tx.rows("SELECT pg_try_advisory_xact_lock(?)", (key,))[0][0])

    def _compact(self, tx: Tx, table: str, *, project_id: int, from_res: int, to_res: int, before: int) -> int:
        cols, select, tail = self.compact_select(table, to_res, "moved")
        select = select.replace(" WHERE project_id = ? AND res = ? AND ts < ?", "")
        rows = tx.rows(
            f"WITH moved AS (DELETE FROM {table} WHERE project_id = ? AND res = ? AND ts < ? RETURNING *),"
            f" ins AS (INSERT INTO {table} ({cols}) {select}{tail} RETURNING 1)"
            " SELECT (SELECT COUNT(*) FROM moved)",
            (project_id, from_res, before),
        )
        return int(rows[0][0])

    def _store_events(self, tx: Tx, rows: list[EventRow]) -> None:
        """COPY into a per-connection temporary table, then move and aggregate from there in SQL."""
        assert isinstance(tx, _PgTx)
        tx.run(_STAGING)
        with tx.cursor.copy(f"COPY peekapi_staging ({EVENT_COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        tx.run(f"INSERT INTO events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM peekapi_staging")
        self.rollup_from(tx, "peekapi_staging", ())

    def close(self) -> None:
        self._pool.close()
