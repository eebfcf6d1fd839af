"""SqlStore: the store logic and SQL shared by both engines; engines supply transactions and dialect bits.

Writes aggregate each transaction's events in Python into per-minute rollup and histogram rows, then add them
to the stored rows with additive upserts (``ON CONFLICT ... DO UPDATE SET n = n + excluded.n``), so any number
of writers (PostgreSQL) can add to the same minute safely. Upserts go in key order to avoid deadlocks.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from peekapi_server import histogram

from . import users
from .alerts import AlertTables
from .base import (
    COMPACT_HOURS_AFTER,
    COMPACT_MINUTES_AFTER,
    DAY,
    HOUR,
    MINUTE,
    Batch,
    Credential,
    CredentialKind,
    MaintenanceResult,
    Project,
    StoreError,
    WriteResult,
)
from .credentials import PREFIX_LEN, hash_secret, matches, new_secret, prefix_of
from .reads import ReadQueries
from .schema import MIGRATIONS as _MIGRATIONS
from .schema import VERSION_TABLE, VIEWS, Dialect, latest_version, render, view_fill, view_tables
from .tx import Tx
from .users import Session, User

OTHER_METHOD = "*"
#: The shortest start of a credential's prefix that ``revoke_credential`` takes: the kind's marker (``ak_live_``,
#: ``rt_``) and several random characters.
MIN_PREFIX_START = 12
OTHER_ROUTE = "(other)"
_MAX_CACHED_CONSUMERS = 200_000

_ROLLUP_VALUES = ("n", "err4", "err5", "lat_sum", "lat_min", "lat_max", "bytes_in", "bytes_out")
_DIMS = ("endpoint_id", "consumer_id", "status_code")
#: table -> (key columns after project_id, res, ts; value columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rollups": (_DIMS, _ROLLUP_VALUES),
    "rollup_totals": ((), _ROLLUP_VALUES),
    "hist": ((*_DIMS, "bucket"), ("n",)),
    "hist_totals": (("bucket",), ("n",)),
    "rollup_hours": ((), _ROLLUP_VALUES),
    "hist_hours": (("bucket",), ("n",)),
    "rollup_endpoints": (("endpoint_id",), _ROLLUP_VALUES),
    "hist_endpoints": (("endpoint_id", "bucket"), ("n",)),
}
for _name, (_dims, _, _) in VIEWS.items():
    for _table, _hist, _res in view_tables(_name):
        TABLES[_table] = ((*_dims, "bucket"), ("n",)) if _hist else (_dims, _ROLLUP_VALUES)

EVENT_COLUMNS = (
    "project_id, ts, endpoint_id, consumer_id, method, path, status_code, response_time_ms, request_size,"
    " response_size, metadata, bucket"
)
# (project_id, ts, endpoint_id, consumer_id, method, path, status_code, response_time_ms, request_size,
#  response_size, metadata, bucket): one row of the events table
EventRow = tuple[Any, ...]
#: Scratch space of one write transaction (emptied before use; private to the connection).
_TOTALS_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_totals (
    project_id {big}, ts {big}, bucket INTEGER, n {big}, err4 {big}, err5 {big},
    lat_sum {float}, lat_min {float}, lat_max {float}, bytes_in {big}, bytes_out {big}
)"""
_ENDPOINTS_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_endpoints (
    project_id {big}, ts {big}, endpoint_id {big}, bucket INTEGER, n {big}, err4 {big}, err5 {big},
    lat_sum {float}, lat_min {float}, lat_max {float}, bytes_in {big}, bytes_out {big}
)"""
#: Scratch space for the views: the transaction's events before their project's view mark, per period of the
#: rollup resolution x endpoint x consumer x status x bucket.
_VIEWS_TABLE = """CREATE TEMPORARY TABLE IF NOT EXISTS peekapi_views (
    project_id {big}, ts {big}, endpoint_id {big}, consumer_id {big}, status_code INTEGER, bucket INTEGER,
    n {big}, err4 {big}, err5 {big}, lat_sum {float}, lat_min {float}, lat_max {float}, bytes_in {big},
    bytes_out {big}
)"""
_SQL_AGGS = (
    "COUNT(*)",
    "SUM(CASE WHEN status_code >= 400 AND status_code < 500 THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN status_code >= 500 THEN 1 ELSE 0 END)",
    "SUM(response_time_ms)",
    "MIN(response_time_ms)",
    "MAX(response_time_ms)",
    "SUM(request_size)",
    "SUM(response_size)",
)


class SqlStore(ReadQueries):
    """Shared implementation of :class:`~.base.Store` over :class:`~.tx.Tx`."""

    dialect: Dialect
    least: str
    greatest: str
    #: Row-lock suffixes of a SELECT (PostgreSQL; SQLite's one writer needs none).
    share_lock = ""
    update_lock = ""

    def __init__(self) -> None:
        self._cache_lock = threading.Lock()
        self._endpoint_ids: dict[tuple[int, str, str], int] = {}
        self._consumer_ids: dict[tuple[int, str], int] = {}
        self._caps: dict[int, int] = {}
        self._named_locks: dict[str, threading.Lock] = {}

    @abc.abstractmethod
    def _tx(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction; ``write`` ones are serialised where the engine needs it. Commits on success."""

    @abc.abstractmethod
    def _lock(self, tx: Tx, name: str, wait: bool) -> bool:
        """Takes a transaction-scoped lock across processes (PostgreSQL); ``False`` when busy and not ``wait``."""

    @abc.abstractmethod
    def _compact(self, tx: Tx, table: str, *, project_id: int, from_res: int, to_res: int, before: int) -> int:
        """Moves ``from_res`` rows older than ``before`` into ``to_res`` rows; returns rows moved."""

    # -- schema ------------------------------------------------------------------------------------
    def migrate(self) -> int:
        latest = latest_version()
        with self._tx(True) as tx:
            self._lock(tx, "migrate", True)
            tx.run(VERSION_TABLE)
            rows = tx.rows("SELECT version FROM schema_version")
            current = int(rows[0][0]) if rows else 0
            if current > latest:
                raise StoreError(
                    f"database schema version {current} is newer than this collector's ({latest}): upgrade peekapi"
                )
            for version in range(current, latest):
                for statement in _MIGRATIONS[version]:
                    tx.run(render(statement, self.dialect))
            if rows:
                tx.run("UPDATE schema_version SET version = ?", (latest,))
            else:
                tx.run("INSERT INTO schema_version (version) VALUES (?)", (latest,))
        return latest

    # -- projects ----------------------------------------------------------------------------------
    def create_project(
        self, name: str, raw_retention_days: int = 14, rollup_retention_days: int = 400, endpoint_cap: int = 500
    ) -> Project:
        name = name.strip()
        if not name or len(name) > 100:
            raise StoreError("a project name must be 1 to 100 characters")
        if raw_retention_days < 1 or rollup_retention_days < 1 or endpoint_cap < 1:
            raise StoreError("retention days and endpoint cap must be at least 1")
        with self._tx(True) as tx:
            if tx.rows("SELECT id FROM projects WHERE name = ?", (name,)):
                raise StoreError(f"project {name!r} already exists")
            tx.run(
                "INSERT INTO projects (name, created_at, raw_retention_days, rollup_retention_days, endpoint_cap)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, int(time.time()), raw_retention_days, rollup_retention_days, endpoint_cap),
            )
            tx.run("INSERT INTO view_marks (project_id, upto) SELECT id, 0 FROM projects WHERE name = ?", (name,))
        return self.get_project(name)

    def get_project(self, name: str) -> Project:
        with self._tx(False) as tx:
            rows = tx.rows(
                "SELECT id, name, raw_retention_days, rollup_retention_days, endpoint_cap FROM projects WHERE name = ?",
                (name,),
            )
        if not rows:
            raise StoreError(f"no project named {name!r} (create it with: peekapi project create {name})")
        return Project(*rows[0])

    def list_projects(self) -> list[Project]:
        with self._tx(False) as tx:
            rows = tx.rows(
                "SELECT id, name, raw_retention_days, rollup_retention_days, endpoint_cap FROM projects ORDER BY name"
            )
        return [Project(*r) for r in rows]

    # -- credentials -------------------------------------------------------------------------------
    def create_credential(self, project: str, kind: CredentialKind) -> tuple[Credential, str]:
        p = self.get_project(project)
        secret = new_secret(kind)
        now = int(time.time())
        with self._tx(True) as tx:
            tx.run(
                "INSERT INTO credentials (project_id, kind, prefix, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (p.id, kind, prefix_of(secret), hash_secret(secret), now),
            )
            rows = tx.rows("SELECT id FROM credentials WHERE prefix = ?", (prefix_of(secret),))
        return Credential(int(rows[0][0]), p.name, kind, prefix_of(secret), now, None), secret

    def list_credentials(self, project: str | None, kind: CredentialKind) -> list[Credential]:
        sql = (
            "SELECT c.id, p.name, c.kind, c.prefix, c.created_at, c.revoked_at FROM credentials c"
            " JOIN projects p ON p.id = c.project_id WHERE c.kind = ?"
        )
        params: list[object] = [kind]
        if project is not None:
            self.get_project(project)
            sql += " AND p.name = ?"
            params.append(project)
        with self._tx(False) as tx:
            rows = tx.rows(sql + " ORDER BY c.id", params)
        return [Credential(*r) for r in rows]

    def revoke_credential(self, ident: str, kind: CredentialKind) -> Credential:
        column = "id" if ident.isdigit() else "prefix"
        value: object = int(ident) if ident.isdigit() else prefix_of(ident)
        label = "ingest key" if kind == "ingest" else "read token"
        if column == "prefix" and len(ident) < PREFIX_LEN:  # the start of a prefix: it must name one credential
            if len(ident) < MIN_PREFIX_START:  # "", "ak_live_": an unset shell variable must not revoke anything
                raise StoreError(
                    f"give the id, or at least {MIN_PREFIX_START} characters of the {label}'s prefix, not {ident!r}"
                )
            with self._tx(False) as tx:
                found = tx.rows(
                    "SELECT prefix FROM credentials WHERE kind = ? AND revoked_at IS NULL AND substr(prefix, 1, ?) = ?",
                    (kind, len(ident), ident),
                )
            if len(found) > 1:
                raise StoreError(f"{ident!r} is the start of {len(found)} active {label}s: give more of it, or the id")
            if found:
                value = found[0][0]
        with self._tx(True) as tx:
            changed = tx.run(
                f"UPDATE credentials SET revoked_at = ? WHERE {column} = ? AND kind = ? AND revoked_at IS NULL",
                (int(time.time()), value, kind),
            )
            rows = tx.rows(
                "SELECT c.id, p.name, c.kind, c.prefix, c.created_at, c.revoked_at FROM credentials c"
                f" JOIN projects p ON p.id = c.project_id WHERE c.{column} = ? AND c.kind = ?",
                (value, kind),
            )
        if not rows:
            raise StoreError(f"no {label} matches {ident!r} (give its id, its prefix or its start, or the secret)")
        if not changed and rows[0][5] is None:
            raise StoreError(f"could not revoke {ident!r}")
        return Credential(*rows[0])

    def authenticate(self, secret: str, kind: CredentialKind) -> int | None:
        with self._tx(False) as tx:
            rows = tx.rows(
                "SELECT project_id, secret_hash FROM credentials WHERE prefix = ? AND kind = ? AND revoked_at IS NULL",
                (prefix_of(secret), kind),
            )
        if not rows:
            matches(secret, None)
            return None
        return int(rows[0][0]) if matches(secret, rows[0][1]) else None

    # -- writes ------------------------------------------------------------------------------------
    def _cap(self, tx: Tx, project_id: int) -> int:
        cap = self._caps.get(project_id)
        if cap is None:
            rows = tx.rows("SELECT endpoint_cap FROM projects WHERE id = ?", (project_id,))
            cap = int(rows[0][0]) if rows else 0
            self._caps[project_id] = cap
        return cap

    def _endpoint_id(self, tx: Tx, key: tuple[int, str, str], pending: dict[tuple[int, str, str], int]) -> int:
        found = self._endpoint_ids.get(key) or pending.get(key)
        if found is not None:
            return found
        project_id, _, route = key
        sql = "SELECT id FROM endpoints WHERE project_id = ? AND method = ? AND route = ?"
        rows = tx.rows(sql, key)
        if not rows and route != OTHER_ROUTE:
            count = tx.rows(
                "SELECT COUNT(*) FROM endpoints WHERE project_id = ? AND route <> ?", (project_id, OTHER_ROUTE)
            )[0][0]
            if int(count) >= self._cap(tx, project_id):
                pending[key] = self._endpoint_id(tx, (project_id, OTHER_METHOD, OTHER_ROUTE), pending)
                return pending[key]
        if not rows:
            tx.run("INSERT INTO endpoints (project_id, method, route) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", key)
            rows = tx.rows(sql, key)
        pending[key] = int(rows[0][0])
        return pending[key]

    def _consumer_id(self, tx: Tx, key: tuple[int, str], pending: dict[tuple[int, str], int]) -> int:
        found = self._consumer_ids.get(key) or pending.get(key)
        if found is not None:
            return found
        sql = "SELECT id FROM consumers WHERE project_id = ? AND name = ?"
        rows = tx.rows(sql, key)
        if not rows:
            tx.run("INSERT INTO consumers (project_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING", key)
            rows = tx.rows(sql, key)
        pending[key] = int(rows[0][0])
        return pending[key]

    def _upsert_sql(self, table: str) -> str:
        keys, values = TABLES[table]
        cols = ("project_id", "res", "ts", *keys, *values)
        sets = []
        for v in values:
            if v == "lat_min":
                sets.append(f"{v} = {self.least}({table}.{v}, excluded.{v})")
            elif v == "lat_max":
                sets.append(f"{v} = {self.greatest}({table}.{v}, excluded.{v})")
            else:
                sets.append(f"{v} = {table}.{v} + excluded.{v}")
        return (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
            f" ON CONFLICT (project_id, res, ts{''.join(', ' + k for k in keys)}) DO UPDATE SET {', '.join(sets)}"
        )

    def write_batches(self, batches: Sequence[Batch]) -> WriteResult:
        endpoints: dict[tuple[int, str, str], int] = {}
        consumers: dict[tuple[int, str], int] = {}
        with self._tx(True) as tx:
            fresh = self._claim_batches(tx, batches, int(time.time()))
            rows = self._event_rows(tx, fresh, endpoints, consumers)
            if rows:
                self._store_events(tx, rows)
        with self._cache_lock:
            self._endpoint_ids.update(endpoints)
            if len(self._consumer_ids) > _MAX_CACHED_CONSUMERS:
                self._consumer_ids.clear()
            self._consumer_ids.update(consumers)
        return WriteResult(len(fresh), len(batches) - len(fresh), len(rows))

    def _claim_batches(self, tx: Tx, batches: Sequence[Batch], now: int) -> list[Batch]:
        """Records the batch ids of ``batches`` and returns the batches to store: those without an id, and those
        whose id was neither stored before nor seen earlier in ``batches``. Runs in the writing transaction."""
        fresh = []
        for batch in batches:
            if batch.batch_id is None or tx.rows(
                "INSERT INTO batches (project_id, batch_id, received_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING RETURNING project_id",
                (batch.project_id, batch.batch_id, now),
            ):
                fresh.append(batch)
        return fresh

    def _event_rows(
        self,
        tx: Tx,
        batches: Sequence[Batch],
        endpoints: dict[tuple[int, str, str], int],
        consumers: dict[tuple[int, str], int],
    ) -> list[EventRow]:
        """One events-table row per event of ``batches``; new endpoint and consumer ids go into the two dicts.

        The writer's per-event Python work (it holds the GIL the ingest endpoint needs): known ids come from
        the caches with one dict lookup, everything else is done once per new endpoint or consumer.
        """
        known_endpoints = self._endpoint_ids
        known_consumers = self._consumer_ids
        bucket_of = histogram.bucket_of
        rows: list[EventRow] = []
        append = rows.append
        for batch in batches:
            pid = batch.project_id
            for ts, method, path, route, status, rt, request_size, response_size, consumer, metadata in batch.events:
                key = (pid, method, route)
                eid = known_endpoints.get(key) or endpoints.get(key) or self._endpoint_id(tx, key, endpoints)
                if consumer is None:
                    cid = None
                else:
                    ckey = (pid, consumer)
                    cid = known_consumers.get(ckey) or consumers.get(ckey) or self._consumer_id(tx, ckey, consumers)
                append(
                    (pid, ts, eid, cid, method, path, status, rt, request_size, response_size, metadata, bucket_of(rt))
                )
        return rows

    def _store_events(self, tx: Tx, rows: list[EventRow]) -> None:
        """Inserts event rows and adds them to the minute rollups. Engines override this with a faster path."""
        first_id = int(tx.rows("SELECT COALESCE(MAX(id), 0) FROM events")[0][0])
        tx.many(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' for _ in EVENT_COLUMNS.split(','))})", rows
        )
        # valid with one writer only: the ids above first_id are exactly this transaction's events
        self.rollup_from(tx, "events WHERE id > ?", (first_id,))

    def transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction, for bulk tools (the benchmarks' data generator); commits on success."""
        return self._tx(True)

    def rollup_from(self, tx: Tx, source: str, params: Sequence[object], res: int = MINUTE) -> None:
        """Adds the events selected by ``FROM {source}`` to the rollups and histograms of resolution ``res``
        (and to the ``*_hours`` tables at hour resolution, or ``res`` when that is coarser).

        Aggregation happens inside the database; rows are upserted in key order so concurrent writers
        (PostgreSQL) always lock rollup rows in the same order and cannot deadlock. Events before their
        project's view mark are added to the views too (see schema version 4); the others reach the views when
        the maintenance job moves the mark.
        """
        # The view marks of the projects written are locked for share before any rollup row: a maintenance run
        # moving one waits for this transaction, and the other way round (this transaction then sees the moved
        # mark and adds its events before it to the views itself, below).
        tx.rows(
            f"SELECT upto FROM view_marks WHERE project_id IN (SELECT project_id FROM (SELECT * FROM {source}) AS src)"
            f" ORDER BY project_id{self.share_lock}",
            params,
        )
        upserts = {table: self._upsert_sql(table) for table in TABLES}

        def insert(table: str, select: str, params: Sequence[object] = ()) -> None:
            upsert = upserts[table]
            columns = upsert[upsert.index("(") + 1 : upsert.index(")")]
            tx.run(f"INSERT INTO {table} ({columns}) {select}" + upsert[upsert.index(" ON CONFLICT") :], params)

        ts = f"(ts / {res * 1000}) * {res}"
        aggs = ", ".join(_SQL_AGGS)
        # per endpoint x consumer x status: one pass over the events each
        for table, keys in (
            ("rollups", "endpoint_id, COALESCE(consumer_id, 0), status_code"),
            ("hist", "endpoint_id, COALESCE(consumer_id, 0), status_code, bucket"),
        ):
            group = f"project_id, {ts}, {keys}"
            figures = aggs if table == "rollups" else "COUNT(*)"
            select = (
                f"SELECT project_id, {res}, {ts}, {keys}, {figures} FROM {source} GROUP BY {group} ORDER BY {group}"
            )
            insert(table, select, params)
        # the totals: one pass into a small per-connection table of (time, bucket) figures, then four cheap ones
        tx.run(render(_TOTALS_TABLE, self.dialect))
        tx.run("DELETE FROM peekapi_totals")
        group = f"project_id, {ts}, bucket"
        tx.run(f"INSERT INTO peekapi_totals SELECT {group}, {aggs} FROM {source} GROUP BY {group}", params)
        sums = "SUM(n), SUM(err4), SUM(err5), SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)"
        hour = max(res, HOUR)
        hts = f"(ts / {hour}) * {hour}"
        insert("hist_totals", f"SELECT project_id, {res}, ts, bucket, n FROM peekapi_totals ORDER BY 1, 3, 4")
        insert("rollup_totals", f"SELECT project_id, {res}, ts, {sums} FROM peekapi_totals GROUP BY 1, 3 ORDER BY 1, 3")
        insert(
            "hist_hours",
            f"SELECT project_id, {hour}, {hts}, bucket, SUM(n) FROM peekapi_totals"
            f" GROUP BY project_id, {hts}, bucket ORDER BY project_id, {hts}, bucket",
        )
        insert(
            "rollup_hours",
            f"SELECT project_id, {hour}, {hts}, {sums} FROM peekapi_totals"
            f" GROUP BY project_id, {hts} ORDER BY project_id, {hts}",
        )
        # per endpoint at hour resolution: the same two steps
        tx.run(render(_ENDPOINTS_TABLE, self.dialect))
        tx.run("DELETE FROM peekapi_endpoints")
        group = f"project_id, (ts / {hour * 1000}) * {hour}, endpoint_id, bucket"
        tx.run(f"INSERT INTO peekapi_endpoints SELECT {group}, {aggs} FROM {source} GROUP BY {group}", params)
        insert(
            "hist_endpoints",
            f"SELECT project_id, {hour}, ts, endpoint_id, bucket, n FROM peekapi_endpoints ORDER BY 1, 4, 3, 5",
        )
        insert(
            "rollup_endpoints",
            f"SELECT project_id, {hour}, ts, endpoint_id, {sums} FROM peekapi_endpoints"
            " GROUP BY project_id, endpoint_id, ts ORDER BY project_id, endpoint_id, ts",
        )
        src = f"(SELECT * FROM {source}) AS src"
        tx.run(render(_VIEWS_TABLE, self.dialect))
        tx.run("DELETE FROM peekapi_views")
        group = (
            f"src.project_id, (ts / {res * 1000}) * {res}, endpoint_id, COALESCE(consumer_id, 0), status_code, bucket"
        )
        late = tx.run(
            f"INSERT INTO peekapi_views SELECT {group}, {aggs} FROM {src} JOIN view_marks m"
            f" ON m.project_id = src.project_id WHERE src.ts < m.upto * 1000 GROUP BY {group}",
            params,
        )
        if late:
            self.add_to_views(tx, "peekapi_views", res)

    def add_to_views(self, tx: Tx, scratch: str, res: int) -> None:
        """Adds the rows of ``scratch`` (columns as ``peekapi_views``, resolution ``res``) to every view."""
        for name in VIEWS:
            for table, select in view_fill(name, (scratch, scratch), res=str(res)):
                self._insert(tx, table, select)

    def _insert(self, tx: Tx, table: str, select: str, params: Sequence[object] = ()) -> None:
        """``INSERT INTO table ... {select}`` as an additive upsert (``select`` gives the table's columns)."""
        upsert = self._upsert_sql(table)
        columns = upsert[upsert.index("(") + 1 : upsert.index(")")]
        tx.run(f"INSERT INTO {table} ({columns}) {select}" + upsert[upsert.index(" ON CONFLICT") :], params)

    def refresh_views(self, tx: Tx, project_id: int, now: int) -> int:
        """Moves the project's view mark to the start of ``now``'s hour, adding the rollup rows in between to
        the views, in ``tx`` (the maintenance job gives it a transaction of its own); returns the seconds added
        (0 when the mark stays)."""
        upto = now // HOUR * HOUR
        rows = tx.rows(f"SELECT upto FROM view_marks WHERE project_id = ?{self.update_lock}", (project_id,))
        if not rows:  # a project created before schema version 4 while another collector migrated
            tx.run("INSERT INTO view_marks (project_id, upto) VALUES (?, 0) ON CONFLICT DO NOTHING", (project_id,))
            rows = tx.rows(f"SELECT upto FROM view_marks WHERE project_id = ?{self.update_lock}", (project_id,))
        old = int(rows[0][0])
        if upto <= old:
            return 0
        tx.run("UPDATE view_marks SET upto = ? WHERE project_id = ?", (upto, project_id))
        where = f" WHERE r.project_id = ? AND r.res IN ({MINUTE}, {HOUR}, {DAY}) AND r.ts >= ? AND r.ts < ?"
        for name in VIEWS:
            for table, select in view_fill(name, where=where):
                self._insert(tx, table, select, (project_id, old, upto))
        return upto - old

    # -- retention and compaction ------------------------------------------------------------------
    def maintain(
        self,
        now: int,
        compact_minutes_after: int = COMPACT_MINUTES_AFTER,
        compact_hours_after: int = COMPACT_HOURS_AFTER,
        batch_id_retention: int = 14 * DAY,
        delete_chunk: int = 20_000,
    ) -> MaintenanceResult:
        events_deleted = compacted = rollups_deleted = 0
        for project in self.list_projects():
            # raw events go in chunks, each its own transaction, so the writer is never held up for long
            cutoff_ms = (now - project.raw_retention_days * DAY) * 1000
            while True:
                with self._tx(True) as tx:
                    deleted = tx.run(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE project_id = ? AND ts < ?"
                        f" LIMIT {int(delete_chunk)})",
                        (project.id, cutoff_ms),
                    )
                events_deleted += deleted
                if deleted < delete_chunk:
                    break
            # the views first (compaction reads what they add), in a transaction of its own: writers of the project
            # wait for it (see rollup_from), so it is kept short
            with self._tx(True) as tx:
                if self._lock(tx, f"maintain:{project.id}", False):
                    self.refresh_views(tx, project.id, now)
            with self._tx(True) as tx:
                if not self._lock(tx, f"maintain:{project.id}", False):
                    continue
                hour_cut = (now - compact_minutes_after) // HOUR * HOUR
                day_cut = (now - compact_hours_after) // DAY * DAY
                for table in TABLES:
                    compacted += self._compact(
                        tx, table, project_id=project.id, from_res=MINUTE, to_res=HOUR, before=hour_cut
                    )
                    compacted += self._compact(
                        tx, table, project_id=project.id, from_res=HOUR, to_res=DAY, before=day_cut
                    )
                    rollups_deleted += tx.run(
                        f"DELETE FROM {table} WHERE project_id = ? AND ts < ?",
                        (project.id, now - project.rollup_retention_days * DAY),
                    )
        with self._tx(True) as tx:
            batch_ids = tx.run("DELETE FROM batches WHERE received_at < ?", (now - batch_id_retention,))
        return MaintenanceResult(events_deleted, compacted, rollups_deleted, batch_ids)

    def compact_select(self, table: str, to_res: int, source: str) -> tuple[str, str, str]:
        """Pieces of the compaction statement: the column list, the aggregating SELECT, the upsert tail."""
        keys, values = TABLES[table]
        cols = ", ".join(("project_id", "res", "ts", *keys, *values))
        aggs = []
        for v in values:
            fn = "MIN" if v == "lat_min" else "MAX" if v == "lat_max" else "SUM"
            aggs.append(f"{fn}({v})")
        bucket = f"(ts / {to_res}) * {to_res}"
        select = (
            f"SELECT project_id, {to_res}, {bucket}{''.join(', ' + k for k in keys)}, {', '.join(aggs)}"
            f" FROM {source} WHERE project_id = ? AND res = ? AND ts < ?"
            f" GROUP BY project_id, {bucket}{''.join(', ' + k for k in keys)}"
        )
        upsert = self._upsert_sql(table)
        tail = upsert[upsert.index(" ON CONFLICT") :]
        return cols, select, tail

    # -- dashboard users, sessions and settings -----------------------------------------------------
    def create_user(self, name: str, password_hash: str) -> User:
        with self._tx(True) as tx:
            return users.create_user(tx, name, password_hash, int(time.time()))

    def get_user(self, name: str) -> User | None:
        with self._tx(False) as tx:
            return users.get_user(tx, name)

    def set_user_password(self, name: str, password_hash: str) -> None:
        with self._tx(True) as tx:
            users.set_user_password(tx, name, password_hash)

    def count_users(self) -> int:
        with self._tx(False) as tx:
            return users.count_users(tx)

    def list_users(self) -> list[tuple[str, int]]:
        with self._tx(False) as tx:
            return users.list_users(tx)

    def delete_user(self, name: str) -> None:
        with self._tx(True) as tx:
            users.delete_user(tx, name)

    @contextmanager
    def alerts(self, write: bool) -> Iterator[AlertTables]:
        with self._tx(write) as tx:
            yield AlertTables(tx)

    @contextmanager
    def alert_lock(self, name: str) -> Iterator[bool]:
        # one process per SQLite database (``--workers`` needs PostgreSQL): a lock of this process is enough
        with self._cache_lock:
            lock = self._named_locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def recent_login_failures(self, keys: list[str], since: int) -> dict[str, int]:
        with self._tx(False) as tx:
            return users.recent_login_failures(tx, keys, since)

    def record_login_failure(self, keys: list[str], now: int, forget_before: int) -> None:
        with self._tx(True) as tx:
            users.record_login_failure(tx, keys, now, forget_before)

    def create_session(self, token_hash: str, user_id: int, csrf: str, expires_at: int) -> None:
        with self._tx(True) as tx:
            users.create_session(tx, token_hash, user_id, csrf, now=int(time.time()), expires_at=expires_at)

    def get_session(self, token_hash: str) -> Session | None:
        with self._tx(False) as tx:
            return users.get_session(tx, token_hash, int(time.time()))

    def delete_session(self, token_hash: str) -> None:
        with self._tx(True) as tx:
            users.delete_session(tx, token_hash)

    def set_retention(self, project: str, raw_retention_days: int, rollup_retention_days: int) -> Project:
        p = self.get_project(project)
        with self._tx(True) as tx:
            users.set_retention(tx, p.id, raw_retention_days, rollup_retention_days)
        return self.get_project(project)

    def count_events(self, project_id: int) -> int:
        with self._tx(False) as tx:
            return int(tx.rows("SELECT COUNT(*) FROM events WHERE project_id = ?", (project_id,))[0][0])

    def iter_rows(self, sql: str, params: Sequence[object] = ()) -> Iterator[tuple[object, ...]]:
        """Runs a read-only statement (operators' and tests' escape hatch); rows as tuples."""
        with self._tx(False) as tx:
            rows = tx.rows(sql, params)
        yield from rows
