"""SqliteStore: the embedded default. WAL mode, one writer at a time, a connection per thread."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

from .base import HOUR, MINUTE, Batch
from .sql import _SQL_AGGS, EVENT_COLUMNS, TABLES, EventRow, SqlStore
from .tx import Params, Row, Tx

#: ``synchronous = FULL``: every commit is flushed to the disk (one fsync of the WAL) before it returns, so a batch
#: acknowledged after its commit survives a crash of the machine too, not only of the process. Group commit makes
#: that one fsync per group of batches (about 3.5 ms here), time the writer waits without the GIL.
_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA cache_size = -65536",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA mmap_size = 268435456",
)


#: Rows per multi-row ``INSERT ... VALUES``: 12 parameters each stay under SQLite's default limit of 32,766.
_ROWS_PER_INSERT = 2500
#: Batch ids per lookup statement.
_IDS_PER_STATEMENT = 500


#: Scratch tables of one write transaction (emptied before use; private to the connection): the events
#: aggregated per minute x endpoint x consumer x status x latency bucket, then per minute x endpoint x bucket.
_FINE_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_fine (
    project_id INTEGER, ts INTEGER, endpoint_id INTEGER, consumer_id INTEGER, status_code INTEGER, bucket INTEGER,
    n INTEGER, err4 INTEGER, err5 INTEGER, lat_sum REAL, lat_min REAL, lat_max REAL, bytes_in INTEGER, bytes_out INTEGER
)"""
_MID_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_mid (
    project_id INTEGER, ts INTEGER, endpoint_id INTEGER, bucket INTEGER,
    n INTEGER, err4 INTEGER, err5 INTEGER, lat_sum REAL, lat_min REAL, lat_max REAL, bytes_in INTEGER, bytes_out INTEGER
)"""
_LATE_TABLE = _FINE_TABLE.replace("peekapi_fine", "peekapi_late")
_SUMS = "SUM(n), SUM(err4), SUM(err5), SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)"
_VALUES = "n, err4, err5, lat_sum, lat_min, lat_max, bytes_in, bytes_out"


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


def _create_private(path: Path) -> None:
    """Create the database's directory (``0700``) and empty file (``0600``) where they do not exist yet: it holds
    credential hashes and consumer ids (raw ``X-API-Key`` values). SQLite gives its ``-wal`` and ``-shm`` files
    the database file's mode. Existing ones are left as they are."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(path) != ":memory:":
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class SqliteStore(SqlStore):
    """The store on one SQLite file. Writes are serialised by a lock; reads run concurrently (WAL)."""

    dialect = "sqlite"
    least = "min"
    greatest = "max"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.path = sqlite_path(url)
        _create_private(self.path)
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

    # The writer thread shares the GIL with the ingest endpoint. sqlite3 releases the GIL around every step
    # of a statement, and taking it back from a busy thread can cost up to the switch interval (5 ms), so
    # the write path runs a few statements that each do a lot of work, never one statement per row.

    def _claim_batches(self, tx: Tx, batches: Sequence[Batch], now: int) -> list[Batch]:
        """Same contract as the shared version, in a few statements: look up which ids exist (usually none:
        one step), then insert the new ones in one go. Safe because ``BEGIN IMMEDIATE`` excludes other writers
        until this transaction commits."""
        wanted: dict[int, list[str]] = {}
        for batch in batches:
            if batch.batch_id is not None:
                wanted.setdefault(batch.project_id, []).append(batch.batch_id)
        seen: set[tuple[int, str]] = set()
        for pid, ids in wanted.items():
            for i in range(0, len(ids), _IDS_PER_STATEMENT):
                part = ids[i : i + _IDS_PER_STATEMENT]
                found = tx.rows(
                    f"SELECT batch_id FROM batches WHERE project_id = ? AND batch_id IN ({', '.join('?' * len(part))})",
                    (pid, *part),
                )
                seen.update((pid, bid) for (bid,) in found)
        fresh: list[Batch] = []
        new: list[tuple[int, str, int]] = []
        for batch in batches:
            if batch.batch_id is not None:
                key = (batch.project_id, batch.batch_id)
                if key in seen:
                    continue
                seen.add(key)
                new.append((*key, now))
            fresh.append(batch)
        self._insert_rows(tx, "batches (project_id, batch_id, received_at)", new, 3)
        return fresh

    def _store_events(self, tx: Tx, rows: list[EventRow]) -> None:
        first_id = int(tx.rows("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])
        self._insert_rows(tx, f"events ({EVENT_COLUMNS})", rows, 12)
        # one writer (BEGIN IMMEDIATE): the ids above first_id are exactly this transaction's events
        self.rollup_from(tx, "events WHERE id > ?", (first_id,))

    def rollup_from(self, tx: Tx, source: str, params: Sequence[object], res: int = MINUTE) -> None:
        """The shared contract (see :meth:`SqlStore.rollup_from`), with SQLite's costs in mind.

        One grouping pass over the events (into ``peekapi_fine``) instead of four, and the two big tables
        (``rollups``, ``hist``) filled from it by upserts without another sort: SQLite applies an upsert row by
        row, so rows with the same key simply add up. No key order is needed with one writer. Each GROUP BY
        starts with one integer combining its most varied columns: SQLite's sorter compares a first integer
        column quickly and otherwise falls back to a slow record comparison, which runs for nearly every pair
        when the leading columns (project, minute) are the same for the whole transaction. The combined value
        is only a sort aid (it may overflow into a float); the real columns that follow define the groups.
        """
        upserts = {table: self._upsert_sql(table) for table in TABLES}

        def insert(table: str, select: str) -> None:
            upsert = upserts[table]
            columns = upsert[upsert.index("(") + 1 : upsert.index(")")]
            tx.run(f"INSERT INTO {table} ({columns}) {select}" + upsert[upsert.index(" ON CONFLICT") :])

        ts = f"(ts / {res * 1000}) * {res}"
        cid = "COALESCE(consumer_id, 0)"
        lead = f"((endpoint_id * 1024 + status_code) * 1024 + bucket) * 1048576 + {cid}"
        tx.run(_FINE_TABLE)
        tx.run("DELETE FROM peekapi_fine")
        tx.run(
            f"INSERT INTO peekapi_fine SELECT project_id, {ts}, endpoint_id, {cid}, status_code, bucket,"
            f" {', '.join(_SQL_AGGS)} FROM {source}"
            f" GROUP BY {lead}, {ts}, project_id, endpoint_id, {cid}, status_code, bucket",
            params,
        )
        fine = f"project_id, {res}, ts, endpoint_id, consumer_id, status_code"
        insert("hist", f"SELECT {fine}, bucket, n FROM peekapi_fine WHERE true")  # WHERE: see SQLite's upsert docs
        insert("rollups", f"SELECT {fine}, {_VALUES} FROM peekapi_fine WHERE true")
        tx.run(_MID_TABLE)
        tx.run("DELETE FROM peekapi_mid")
        tx.run(
            f"INSERT INTO peekapi_mid SELECT project_id, ts, endpoint_id, bucket, {_SUMS} FROM peekapi_fine"
            " GROUP BY endpoint_id * 1024 + bucket, ts, project_id, endpoint_id, bucket"
        )
        hour = max(res, HOUR)
        hts = f"(ts / {hour}) * {hour}"
        mid = "FROM peekapi_mid GROUP BY"
        insert("hist_totals", f"SELECT project_id, {res}, ts, bucket, SUM(n) {mid} bucket, ts, project_id")
        insert("rollup_totals", f"SELECT project_id, {res}, ts, {_SUMS} {mid} ts, project_id")
        insert("hist_hours", f"SELECT project_id, {hour}, {hts}, bucket, SUM(n) {mid} bucket, {hts}, project_id")
        insert("rollup_hours", f"SELECT project_id, {hour}, {hts}, {_SUMS} {mid} {hts}, project_id")
        insert(
            "hist_endpoints",
            f"SELECT project_id, {hour}, {hts}, endpoint_id, bucket, SUM(n)"
            f" {mid} endpoint_id * 1024 + bucket, {hts}, project_id, endpoint_id, bucket",
        )
        insert(
            "rollup_endpoints",
            f"SELECT project_id, {hour}, {hts}, endpoint_id, {_SUMS} {mid} endpoint_id, {hts}, project_id",
        )
        # the views get the events before their project's mark (usually none, found with one cheap statement:
        # see schema version 4)
        if not tx.rows("SELECT 1 FROM view_marks WHERE upto > (SELECT MIN(ts) FROM peekapi_fine) LIMIT 1"):
            return
        tx.run(_LATE_TABLE)
        tx.run("DELETE FROM peekapi_late")
        late = tx.run(
            "INSERT INTO peekapi_late SELECT f.project_id, f.ts, endpoint_id, consumer_id, status_code, bucket,"
            f" {_VALUES} FROM peekapi_fine f JOIN view_marks m ON m.project_id = f.project_id WHERE f.ts < m.upto"
        )
        if late:
            self.add_to_views(tx, "peekapi_late", res)

    @staticmethod
    def _insert_rows(tx: Tx, target: str, rows: Sequence[tuple[object, ...]], width: int) -> None:
        """Inserts ``rows`` (each ``width`` values) with multi-row ``INSERT ... VALUES`` statements."""
        one = f"({', '.join('?' * width)})"
        for i in range(0, len(rows), _ROWS_PER_INSERT):
            part = rows[i : i + _ROWS_PER_INSERT]
            tx.run(f"INSERT INTO {target} VALUES {', '.join([one] * len(part))}", list(chain.from_iterable(part)))

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
