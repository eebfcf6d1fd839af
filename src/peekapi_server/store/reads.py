"""The read side of the SQL store: overview series, tables, status codes and raw events.

Rows of every resolution inside ``[start, end)`` count, grouped to the requested interval (after compaction
older data exists only at hour or day resolution, so it lands at the start of its hour or day).
Percentiles come from merged histogram buckets, clamped to the exact min and max.

Where to read: a query filtered by at most one dimension (endpoint and/or method count as one: a set of
endpoints) and grouped by time in whole hours, or by a dimension, reads the whole hours of its range from the
smallest table holding exactly what it needs, keyed by the filter's dimension first (``rollup_hours``, the
version-3 ``rollup_endpoints`` and the version-4 views of :data:`~.schema.VIEWS`), and the partial hours at its
edges from the minute-resolution tables (``rollup_totals`` unfiltered, ``rollups`` otherwise). Every table holds
the same figures, so the answer is exactly what the minute-resolution tables alone give. The version-4 views
hold the hours before the project's mark (``view_marks``, moved to the current hour by the maintenance job),
so the hours from the mark on are read from the minute-resolution tables too. Anything else (minute
series, two filtered dimensions) reads the minute-resolution tables.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from peekapi_server import histogram

from .base import DAY, HOUR, MINUTE, JsonDict, ReadQuery, Store
from .schema import MINUTE_VIEWS, VIEWS, WEEK
from .tx import Row, Tx

_QS = (0.5, 0.95, 0.99)
_SUMS = "SUM(n), SUM(err4), SUM(err5), SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)"
_MAX_POINTS = 5000
#: Rollup rows of a project in ``[start, end)``. Naming every resolution lets the primary key
#: (project_id, res, ts, ...) serve the time range as three index range scans instead of a project scan.
_IN_RANGE = f"project_id = ? AND res IN ({MINUTE}, {HOUR}, {DAY}) AND ts >= ? AND ts < ?"
EVENT_KEYS = (
    "id",
    "ts_ms",
    "method",
    "path",
    "route",
    "status_code",
    "response_time_ms",
    "request_size",
    "response_size",
    "consumer_id",
    "metadata",
)


def _figures(row: Sequence[Any], buckets: list[tuple[int, int]]) -> JsonDict:
    """JSON figures from one ``_SUMS`` row and its histogram buckets."""
    n = int(row[0] or 0)
    err4, err5 = int(row[1] or 0), int(row[2] or 0)
    lat_min = float(row[4]) if n else None
    lat_max = float(row[5]) if n else None
    p50, p95, p99 = histogram.percentiles(buckets, _QS, lat_min, lat_max)
    return {
        "requests": n,
        "errors": err4 + err5,
        "errors_4xx": err4,
        "errors_5xx": err5,
        "error_rate": (err4 + err5) / n if n else 0.0,
        "latency_avg_ms": float(row[3]) / n if n else None,
        "latency_min_ms": lat_min,
        "latency_max_ms": lat_max,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "bytes_in": int(row[6] or 0),
        "bytes_out": int(row[7] or 0),
    }


_EMPTY_ROW: Row = (0, 0, 0, 0.0, None, None, 0, 0)
_VALUES = "n, err4, err5, lat_sum, lat_min, lat_max, bytes_in, bytes_out"
#: (filtered dimension, grouped-by dimension) -> the view holding exactly that; ``None`` is "no filter" or
#: "grouped by time". Unfiltered series in hours read ``rollup_hours``/``hist_hours`` (the view ``hours``).
_VIEW_FOR: dict[tuple[str | None, str | None], str] = {
    (None, None): "hours",
    (None, "endpoint_id"): "endpoints",
    (None, "consumer_id"): "consumers",
    (None, "status_code"): "statuses",
    ("endpoint_id", None): "endpoints",
    ("endpoint_id", "endpoint_id"): "endpoints",
    ("endpoint_id", "consumer_id"): "endpoint_consumers",
    ("endpoint_id", "status_code"): "endpoint_statuses",
    ("method", None): "methods",
    ("method", "endpoint_id"): "endpoints",
    ("method", "consumer_id"): "method_consumers",
    ("method", "status_code"): "method_statuses",
    ("consumer_id", None): "consumers",
    ("consumer_id", "consumer_id"): "consumers",
    ("consumer_id", "endpoint_id"): "consumer_endpoints",
    ("consumer_id", "status_code"): "consumer_statuses",
    ("status_code", None): "statuses",
    ("status_code", "status_code"): "statuses",
    ("status_code", "endpoint_id"): "status_endpoints",
    ("status_code", "consumer_id"): "status_consumers",
}
_ALWAYS = 1 << 62  #: "available before" of the hour tables written with every write
#: Hour tables written with every write (the other views' tables hold the rows before the project's mark).
_COMPLETE_HOURS = {"hours": ("rollup_hours", "hist_hours"), "endpoints": ("rollup_endpoints", "hist_endpoints")}


def _filtered_dimension(q: ReadQuery) -> tuple[bool, str | None]:
    """(whether at most one dimension is filtered, which one): an endpoint (with or without a method) is
    ``endpoint_id``, a method alone ``method``."""
    dims = []
    if q.endpoint is not None:
        dims.append("endpoint_id")
    elif q.method is not None:
        dims.append("method")
    if q.consumer is not None:
        dims.append("consumer_id")
    if q.status_class is not None:
        dims.append("status_code")
    return len(dims) <= 1, (dims[0] if dims else None)


def _segments(start: int, end: int, levels: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """``[start, end)`` cut into (level, from, to) pieces: ``levels`` are (name, seconds, available before),
    coarsest first; each takes the whole periods of its size inside what the coarser ones left, up to where it
    is available, and ``"minute"`` (the minute-resolution tables) takes the rest."""

    def cover(lo: int, hi: int, i: int) -> list[tuple[str, int, int]]:
        if lo >= hi:
            return []
        if i == len(levels):
            return [("minute", lo, hi)]
        name, size, before = levels[i]
        first, last = -(-lo // size) * size, min(hi // size * size, before // size * size)
        if first >= last:
            return cover(lo, hi, i + 1)
        return [*cover(lo, first, i + 1), (name, first, last), *cover(last, hi, i + 1)]

    return cover(start, end, 0)


class _Filter:
    """A query's filters as SQL conditions (each starting with `` AND``), for the minute-resolution tables
    (``sql``) and for the views (``view_sql``: a status class as the list of its codes, so a view keyed by
    status code first is searched code by code instead of scanned; ``method`` for views keyed by method)."""

    def __init__(
        self, sql: str, params: list[object], view_sql: str, view_params: list[object], method: str | None = None
    ) -> None:
        self.sql, self.params, self.view_sql, self.view_params = sql, params, view_sql, view_params
        self.method = method


class ReadQueries(Store):
    """Read queries over :class:`~.tx.Tx`; see the module docstring for what each reads."""

    @abc.abstractmethod
    def _tx(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction (see :class:`~.sql.SqlStore`)."""

    def _filter(self, tx: Tx, project_id: int, q: ReadQuery) -> _Filter | None:
        """The query's filters (see :class:`_Filter`); ``None`` when nothing can match."""
        f = self._filters(tx, project_id, q)
        if f is None:
            return None
        sql, params = f
        view_sql, view_params = sql, list(params)
        one, dim = _filtered_dimension(q)
        if one and dim == "status_code":
            assert q.status_class is not None
            codes = list(range(q.status_class * 100, q.status_class * 100 + 100))
            view_sql, view_params = f" AND status_code IN ({', '.join('?' for _ in codes)})", list(codes)
        # On the minute-resolution tables, endpoint_id follows ts in the key: PostgreSQL would search the index once
        # per endpoint id (and resolution), each time over the whole time range; "+ 0" makes it a plain filter.
        sql = sql.replace(" AND endpoint_id IN (", " AND endpoint_id + 0 IN (")
        return _Filter(sql, params, view_sql, view_params, q.method.upper() if q.method is not None else None)

    def _filters(self, tx: Tx, project_id: int, q: ReadQuery, prefix: str = "") -> tuple[str, list[object]] | None:
        """SQL conditions (each starting with `` AND``) for the query's filters; ``None`` when nothing matches."""
        sql = ""
        params: list[object] = []
        if q.endpoint is not None or q.method is not None:
            find = "SELECT id FROM endpoints WHERE project_id = ?"
            fparams: list[object] = [project_id]
            if q.endpoint is not None:
                find += " AND route = ?"
                fparams.append(q.endpoint)
            if q.method is not None:
                find += " AND method = ?"
                fparams.append(q.method.upper())
            ids = [int(r[0]) for r in tx.rows(find, fparams)]
            if not ids:
                return None
            sql += f" AND {prefix}endpoint_id IN ({', '.join('?' for _ in ids)})"
            params += ids
        if q.consumer is not None:
            rows = tx.rows("SELECT id FROM consumers WHERE project_id = ? AND name = ?", (project_id, q.consumer))
            if not rows:
                return None
            sql += f" AND {prefix}consumer_id = ?"
            params.append(int(rows[0][0]))
        if q.status_class is not None:
            sql += f" AND {prefix}status_code >= ? AND {prefix}status_code < ?"
            params += [q.status_class * 100, q.status_class * 100 + 100]
        return sql, params

    def _source(
        self,
        tx: Tx,
        project_id: int,
        q: ReadQuery,
        f: _Filter,
        *,
        group: str | None,
        cols: str,
        hist: bool,
        hours: bool,
        days: bool,
    ) -> tuple[str, list[object]]:
        """A ``SELECT {cols} ...`` (possibly a ``UNION ALL``) of the figure rows (``hist``: histogram rows) the
        query counts, and its parameters. ``hours``/``days``: the hour/day tables of a view may be read (rows
        are grouped in whole hours/days or more, or not by time). See the module docstring."""
        one, dim = _filtered_dimension(q)
        view = _VIEW_FOR.get((dim, group)) if one and hours else None
        fine = ("hist" if hist else "rollups") if q.filtered or group else ("hist_totals" if hist else "rollup_totals")
        minute = f"SELECT {cols} FROM {fine} WHERE {_IN_RANGE}{f.sql}"
        by_minute = _VIEW_FOR.get((dim, group)) if one and dim is not None and not hours else None
        if by_minute in MINUTE_VIEWS:  # a minute series of one dimension: its minute mtable before the mark
            found = tx.rows("SELECT upto FROM view_marks WHERE project_id = ?", (project_id,))
            mark = min(max(int(found[0][0]) if found else 0, q.start), q.end)
            mlead: tuple[str, list[object]] = (
                (" AND method = ?", [f.method]) if dim == "method" else (f.view_sql, f.view_params)
            )
            mtable = f"{'hist' if hist else 'rollup'}_{by_minute}_minutes"
            pieces = [(f"SELECT {cols} FROM {mtable} WHERE {_IN_RANGE}{mlead[0]}", [q.start, mark, *mlead[1]])]
            pieces.append((minute, [mark, q.end, *f.params]))
            bounds = [(q.start, mark), (mark, q.end)]  # the two pieces' time ranges
            pieces = [(sql, [project_id, *p]) for (sql, p), (lo, hi) in zip(pieces, bounds, strict=True) if lo < hi]
            if len(pieces) == 1:
                return pieces[0]
            union = " UNION ALL ".join(sql for sql, _ in pieces)
            return f"SELECT * FROM ({union}) AS parts", [x for _, p in pieces for x in p]
        if view is None:
            return minute, [project_id, q.start, q.end, *f.params]
        kind = 1 if hist else 0
        complete = _COMPLETE_HOURS.get(view)
        hour_table = complete[kind] if complete else f"{'hist' if hist else 'rollup'}_{view}"
        day_table = f"{'hist' if hist else 'rollup'}_{view}_days" if view in VIEWS else None
        week_table = f"{'hist' if hist else 'rollup'}_{view}_weeks"  # only read where day_table is
        mark = 0
        if complete is None or (days and day_table):
            found = tx.rows("SELECT upto FROM view_marks WHERE project_id = ?", (project_id,))
            mark = int(found[0][0]) if found else 0
        lead = VIEWS[view][0][0] if view in VIEWS else None
        vsql, vparams = (" AND method = ?", [f.method]) if lead == "method" else (f.view_sql, f.view_params)
        parts, params = [], []
        levels = [("hour", HOUR, _ALWAYS if complete else mark)]
        if days and day_table is not None:
            levels[:0] = [("week", WEEK, mark), ("day", DAY, mark)] if group is not None else [("day", DAY, mark)]
        for level, lo, hi in _segments(q.start, q.end, levels):
            if level == "minute":
                parts.append(minute)
                params += [project_id, lo, hi, *f.params]
            else:
                table = {"week": week_table, "day": day_table}.get(level, hour_table)
                parts.append(
                    f"SELECT {cols} FROM {table} WHERE project_id = ?{vsql}"
                    f" AND res IN ({HOUR}, {DAY}, {WEEK}) AND ts >= ? AND ts < ?"
                )
                params += [project_id, *vparams, lo, hi]
        if len(parts) == 1:
            return parts[0], params
        return f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS parts", params

    def overview(self, project_id: int, q: ReadQuery) -> JsonDict:
        iv = int(q.interval)
        t = f"(ts / {iv}) * {iv}"
        rows: list[Row] = []
        hrows: list[Row] = []
        with self._tx(False) as tx:
            f = self._filter(tx, project_id, q) if q.filtered else _Filter("", [], "", [])
            if f is not None:
                hours, days = iv % HOUR == 0, iv % DAY == 0
                src, params = self._source(
                    tx, project_id, q, f, group=None, cols=f"{t} AS t, {_VALUES}", hist=False, hours=hours, days=days
                )
                rows = tx.rows(f"SELECT t, {_SUMS} FROM ({src}) AS src GROUP BY t ORDER BY 1", params)
                src, params = self._source(
                    tx, project_id, q, f, group=None, cols=f"{t} AS t, bucket, n", hist=True, hours=hours, days=days
                )
                hrows = tx.rows(f"SELECT t, bucket, SUM(n) FROM ({src}) AS src GROUP BY t, bucket", params)
        buckets: dict[int, list[tuple[int, int]]] = {}
        all_buckets: dict[int, int] = {}
        for ts, bucket, n in hrows:
            b, c = int(bucket), int(n)
            hist = buckets.get(ts)
            if hist is None:
                buckets[ts] = hist = []
            hist.append((b, c))
            all_buckets[b] = all_buckets.get(b, 0) + c
        by_t = {int(r[0]): r[1:] for r in rows}
        first = q.start // iv * iv
        stamps = list(range(first, q.end, iv)) if (q.end - first) // iv <= _MAX_POINTS else sorted(by_t)
        points = [{"t": ts, **_figures(by_t.get(ts, _EMPTY_ROW), buckets.get(ts, []))} for ts in stamps]
        total: list[Any] = list(_EMPTY_ROW)
        for r in by_t.values():
            total[0] += int(r[0] or 0)
            total[1] += int(r[1] or 0)
            total[2] += int(r[2] or 0)
            total[3] += float(r[3] or 0)
            total[4] = r[4] if total[4] is None else min(total[4], r[4])
            total[5] = r[5] if total[5] is None else max(total[5], r[5])
            total[6] += int(r[6] or 0)
            total[7] += int(r[7] or 0)
        return {
            "start": q.start,
            "end": q.end,
            "interval": iv,
            "totals": _figures(total, sorted(all_buckets.items())),
            "series": points,
        }

    def _grouped(self, project_id: int, q: ReadQuery, dim: str) -> tuple[list[Row], dict[int, list[tuple[int, int]]]]:
        """Figures per ``dim``, busiest first (at most ``q.limit`` rows), and the histogram of each."""
        with self._tx(False) as tx:
            f = self._filter(tx, project_id, q)
            if f is None:
                return [], {}
            src, params = self._source(
                tx, project_id, q, f, group=dim, cols=f"{dim} AS k, {_VALUES}", hist=False, hours=True, days=True
            )
            rows = tx.rows(f"SELECT k, {_SUMS} FROM ({src}) AS src GROUP BY k", params)
            src, params = self._source(
                tx, project_id, q, f, group=dim, cols=f"{dim} AS k, bucket, n", hist=True, hours=True, days=True
            )
            hrows = tx.rows(f"SELECT k, bucket, SUM(n) FROM ({src}) AS src GROUP BY k, bucket", params)
        buckets: dict[int, list[tuple[int, int]]] = {}
        for key, bucket, n in hrows:
            buckets.setdefault(int(key), []).append((int(bucket), int(n)))
        rows.sort(key=lambda r: (-int(r[1]), int(r[0])))
        return rows[: q.limit], buckets

    def _names(self, sql: str, ids: list[int]) -> dict[int, Row]:
        if not ids:
            return {}
        with self._tx(False) as tx:
            found = tx.rows(sql.format(", ".join("?" for _ in ids)), ids)
        return {int(r[0]): r[1:] for r in found}

    def endpoints_table(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        rows, buckets = self._grouped(project_id, q, "endpoint_id")
        names = self._names("SELECT id, method, route FROM endpoints WHERE id IN ({})", [int(r[0]) for r in rows])
        out = []
        for r in rows:
            method, route = names.get(int(r[0]), ("?", "?"))
            out.append({"method": method, "route": route, **_figures(r[1:], buckets.get(int(r[0]), []))})
        return out

    def consumers_table(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        rows, buckets = self._grouped(project_id, q, "consumer_id")
        names = self._names("SELECT id, name FROM consumers WHERE id IN ({})", [int(r[0]) for r in rows])
        out = []
        for r in rows:
            name = names.get(int(r[0]), (None,))[0]
            out.append({"consumer": name, **_figures(r[1:], buckets.get(int(r[0]), []))})
        return out

    def status_codes(self, project_id: int, q: ReadQuery) -> list[JsonDict]:
        with self._tx(False) as tx:
            f = self._filter(tx, project_id, q)
            if f is None:
                return []
            src, params = self._source(
                tx, project_id, q, f, group="status_code", cols="status_code, n", hist=False, hours=True, days=True
            )
            rows = tx.rows(
                f"SELECT status_code, SUM(n) FROM ({src}) AS src GROUP BY status_code ORDER BY status_code", params
            )
        return [{"status_code": int(code), "requests": int(n)} for code, n in rows]

    def latency_histogram(self, project_id: int, q: ReadQuery) -> list[tuple[int, int]]:
        with self._tx(False) as tx:
            f = self._filter(tx, project_id, q) if q.filtered else _Filter("", [], "", [])
            if f is None:
                return []
            src, params = self._source(
                tx, project_id, q, f, group=None, cols="bucket, n", hist=True, hours=True, days=True
            )
            rows = tx.rows(f"SELECT bucket, SUM(n) FROM ({src}) AS src GROUP BY bucket ORDER BY bucket", params)
        return [(int(bucket), int(n)) for bucket, n in rows]

    def _recent_from(self, tx: Tx, project_id: int, q: ReadQuery, before: tuple[int, int] | None) -> int:
        """Where (epoch ms) the scan for a filtered query's ``q.limit`` newest events may start, from the rollup
        rows of the filter (so a rare filter does not scan every event of the range): the start of the newest
        rows wholly inside the range (and before ``before``) that count at least ``q.limit`` matching events,
        else the start of the oldest row with any (``q.end`` when there is none). ``q.start`` when more than one
        dimension is filtered. Raw events deleted by retention only make it earlier than it could be."""
        one, dim = _filtered_dimension(q)
        if not one or dim is None:
            return q.start * 1000
        # rows starting before ``end`` may hold matches; those wholly before ``counted`` hold only events before
        # the cursor (and inside the range), so only they count towards the limit
        end = q.end if before is None else max(q.start, min(q.end, before[0] // 1000 + 1))
        counted = q.end if before is None else min(q.end, before[0] // 1000)
        f = self._filter(tx, project_id, q)
        if f is None:
            return q.end * 1000
        # from a day earlier: rows that begin before the range and reach into it count as "any" below
        wider = replace(q, start=q.start - DAY, end=end)
        src, params = self._source(
            tx, project_id, wider, f, group=None, cols="ts, res, n", hist=False, hours=True, days=False
        )
        rows = tx.rows(f"SELECT ts, res, SUM(n) FROM ({src}) AS src GROUP BY ts, res ORDER BY ts DESC", params)
        # rows may overlap in time (events written late into an hour already compacted add minute rows to it),
        # so no row is assumed to end where an older one begins
        seen, oldest = 0, None
        for ts, res, n in rows:
            if int(ts) + int(res) <= q.start:
                continue  # wholly before the range
            oldest = int(ts) if oldest is None else min(oldest, int(ts))
            if seen < q.limit and int(ts) >= q.start and int(ts) + int(res) <= counted:
                seen += int(n)
                if seen >= q.limit:
                    return max(q.start, int(ts)) * 1000
        return max(q.start, oldest) * 1000 if oldest is not None else q.end * 1000

    def recent_events(self, project_id: int, q: ReadQuery, before: tuple[int, int] | None = None) -> list[JsonDict]:
        with self._tx(False) as tx:
            f = self._filters(tx, project_id, q, "e.")
            if f is None:
                return []
            sql = (
                "SELECT e.id, e.ts, e.method, e.path, ep.route, e.status_code, e.response_time_ms, e.request_size,"
                " e.response_size, c.name, e.metadata FROM events e JOIN endpoints ep ON ep.id = e.endpoint_id"
                " LEFT JOIN consumers c ON c.id = e.consumer_id"
                " WHERE e.project_id = ? AND e.ts >= ? AND e.ts < ?" + f[0]
            )
            params: list[object] = [project_id, self._recent_from(tx, project_id, q, before), q.end * 1000, *f[1]]
            if before is not None:
                sql += " AND (e.ts < ? OR (e.ts = ? AND e.id < ?))"
                params += [before[0], before[0], before[1]]
            rows = tx.rows(sql + " ORDER BY e.ts DESC, e.id DESC LIMIT ?", [*params, q.limit])
        return [dict(zip(EVENT_KEYS, r, strict=True)) for r in rows]
