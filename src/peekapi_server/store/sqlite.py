"""SqliteStore: the embedded default. WAL mode, one writer at a time, a connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .sql import SqlStore
from .tx import Params, Row, Tx

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA mmap_size = 268435456",
)


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL (or a bare path) names; ``sqlite:////abs`` and ``sqlite:///rel``."""
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else url
    if not path or path.startswith("sqlite:"):
        raise ValueError(f"not a SQLite database URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(path)


class _SqliteTx:
    """:class:`~.tx.Tx` over one sqlite3 connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def run(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def many(self, sql: str, seq: Iterable[Params]) -> None:
        self._conn.executemany(sql, seq)


class SqliteStore(SqlStore):
    """The store on one SQLite file. Writes are serialised by a lock; reads run concurrently (WAL)."""

    dialect = "sqlite"
    least = "min"
    greatest = "max"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the store is closed")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self, write: bool) -> Iterator[_SqliteTx]:
        conn = self._conn()
        if write:
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _SqliteTx(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        else:
            conn.execute("BEGIN")
            try:
                yield _SqliteTx(conn)
            finally:
                conn.execute("COMMIT")

    def _lock(self, tx: Tx, name: str, wait: bool) -> bool:
        return True  # one writer: BEGIN IMMEDIATE already excludes every other writer

    def _compact(self, tx: Tx, table: str, *, project_id: int, from_res: int, to_res: int, before: int) -> int:
        cols, select, tail = self.compact_select(table, to_res, table)
        params = (project_id, from_res, before)
        tx.run(f"INSERT INTO {table} ({cols}) {select}{tail}", params)
        return tx.run(f"DELETE FROM {table} WHERE project_id = ? AND res = ? AND ts < ?", params)

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
