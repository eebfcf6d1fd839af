"""The one logical schema, as DDL templates rendered per engine, and its ordered migrations.

Placeholders: ``{id}`` an auto-increment primary key, ``{big}`` a 64-bit integer, ``{float}`` a double,
``{without_rowid}`` SQLite's clustered-table suffix (empty on PostgreSQL). Timestamps are integers: epoch
milliseconds for raw events, epoch seconds elsewhere. Rollup rows exist per resolution (``res``: 60, 3600,
86400); the ``*_totals`` tables hold the same figures without dimensions so unfiltered reads stay small, and the
``*_hours`` tables hold those again, written at hour resolution from the start (compacted to days like the
others), for series whose interval is whole hours.
Consumer id 0 in rollups means "no consumer".
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_ROLLUP_COLS = """
    n {big} NOT NULL,
    err4 {big} NOT NULL,
    err5 {big} NOT NULL,
    lat_sum {float} NOT NULL,
    lat_min {float} NOT NULL,
    lat_max {float} NOT NULL,
    bytes_in {big} NOT NULL,
    bytes_out {big} NOT NULL"""

MIGRATIONS: list[list[str]] = [
    # version 1
    [
        """CREATE TABLE projects (
            id {id},
            name TEXT NOT NULL UNIQUE,
            created_at {big} NOT NULL,
            raw_retention_days INTEGER NOT NULL,
            rollup_retention_days INTEGER NOT NULL,
            endpoint_cap INTEGER NOT NULL
        )""",
        """CREATE TABLE credentials (
            id {id},
            project_id {big} NOT NULL REFERENCES projects(id),
            kind TEXT NOT NULL,
            prefix TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL,
            created_at {big} NOT NULL,
            revoked_at {big}
        )""",
        """CREATE TABLE endpoints (
            id {id},
            project_id {big} NOT NULL,
            method TEXT NOT NULL,
            route TEXT NOT NULL,
            UNIQUE (project_id, method, route)
        )""",
        """CREATE TABLE consumers (
            id {id},
            project_id {big} NOT NULL,
            name TEXT NOT NULL,
            UNIQUE (project_id, name)
        )""",
        """CREATE TABLE batches (
            project_id {big} NOT NULL,
            batch_id TEXT NOT NULL,
            received_at {big} NOT NULL,
            PRIMARY KEY (project_id, batch_id)
        ){without_rowid}""",
        "CREATE INDEX batches_received ON batches (received_at)",
        """CREATE TABLE events (
            id {id},
            project_id {big} NOT NULL,
            ts {big} NOT NULL,
            endpoint_id {big} NOT NULL,
            consumer_id {big},
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            status_code INTEGER NOT NULL,
            response_time_ms {float} NOT NULL,
            request_size {big} NOT NULL,
            response_size {big} NOT NULL,
            metadata TEXT,
            bucket INTEGER NOT NULL
        )""",
        "CREATE INDEX events_project_ts ON events (project_id, ts)",
        """CREATE TABLE rollups (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            endpoint_id {big} NOT NULL,
            consumer_id {big} NOT NULL,
            status_code INTEGER NOT NULL,"""
        + _ROLLUP_COLS
        + """,
            PRIMARY KEY (project_id, res, ts, endpoint_id, consumer_id, status_code)
        ){without_rowid}""",
        """CREATE TABLE rollup_totals (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,"""
        + _ROLLUP_COLS
        + """,
            PRIMARY KEY (project_id, res, ts)
        ){without_rowid}""",
        """CREATE TABLE hist (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            endpoint_id {big} NOT NULL,
            consumer_id {big} NOT NULL,
            status_code INTEGER NOT NULL,
            bucket INTEGER NOT NULL,
            n {big} NOT NULL,
            PRIMARY KEY (project_id, res, ts, endpoint_id, consumer_id, status_code, bucket)
        ){without_rowid}""",
        """CREATE TABLE hist_totals (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            bucket INTEGER NOT NULL,
            n {big} NOT NULL,
            PRIMARY KEY (project_id, res, ts, bucket)
        ){without_rowid}""",
    ],
    # version 2: the unfiltered figures written at hour resolution from the start, so series of hours and days
    # never read the (many) minute rows
    [
        """CREATE TABLE rollup_hours (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,"""
        + _ROLLUP_COLS
        + """,
            PRIMARY KEY (project_id, res, ts)
        ){without_rowid}""",
        """CREATE TABLE hist_hours (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            bucket INTEGER NOT NULL,
            n {big} NOT NULL,
            PRIMARY KEY (project_id, res, ts, bucket)
        ){without_rowid}""",
        # backfill from the totals already stored (minute rows become hour rows)
        """INSERT INTO rollup_hours SELECT project_id, CASE WHEN res = 60 THEN 3600 ELSE res END AS r,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END AS t, SUM(n), SUM(err4), SUM(err5),
            SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)
            FROM rollup_totals GROUP BY project_id, CASE WHEN res = 60 THEN 3600 ELSE res END,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END""",
        """INSERT INTO hist_hours SELECT project_id, CASE WHEN res = 60 THEN 3600 ELSE res END AS r,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END AS t, bucket, SUM(n)
            FROM hist_totals GROUP BY project_id, CASE WHEN res = 60 THEN 3600 ELSE res END,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END, bucket""",
    ],
    # version 3: per-endpoint figures at hour resolution and coarser, keyed endpoint first, so an endpoint's
    # series and the endpoints table read a small slice instead of every per-dimension row
    [
        """CREATE TABLE rollup_endpoints (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            endpoint_id {big} NOT NULL,"""
        + _ROLLUP_COLS
        + """,
            PRIMARY KEY (project_id, endpoint_id, res, ts)
        ){without_rowid}""",
        """CREATE TABLE hist_endpoints (
            project_id {big} NOT NULL,
            res INTEGER NOT NULL,
            ts {big} NOT NULL,
            endpoint_id {big} NOT NULL,
            bucket INTEGER NOT NULL,
            n {big} NOT NULL,
            PRIMARY KEY (project_id, endpoint_id, res, ts, bucket)
        ){without_rowid}""",
        """INSERT INTO rollup_endpoints SELECT project_id, CASE WHEN res = 60 THEN 3600 ELSE res END AS r,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END AS t, endpoint_id, SUM(n), SUM(err4), SUM(err5),
            SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)
            FROM rollups GROUP BY project_id, CASE WHEN res = 60 THEN 3600 ELSE res END,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END, endpoint_id""",
        """INSERT INTO hist_endpoints SELECT project_id, CASE WHEN res = 60 THEN 3600 ELSE res END AS r,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END AS t, endpoint_id, bucket, SUM(n)
            FROM hist GROUP BY project_id, CASE WHEN res = 60 THEN 3600 ELSE res END,
            CASE WHEN res = 60 THEN (ts / 3600) * 3600 ELSE ts END, endpoint_id, bucket""",
    ],
]

#: Dimension-first rollups (version 4): name -> (key dimensions, lead first; whether latency histograms are
#: kept too; whether an hour table is kept). ``rollup_{name}`` holds the figures and ``hist_{name}`` the
#: histogram per the key dimensions at hour resolution and coarser; ``rollup_{name}_days`` and
#: ``hist_{name}_days`` the same per day. Keys are ``(project_id, lead, res, ts, rest...)``: a query filtered by
#: the lead dimension (and grouped by the rest, if any) reads only its slice. ``method`` is the endpoint's
#: method. The hour table of ``endpoints`` is version 3's ``rollup_endpoints``/``hist_endpoints``.
VIEWS: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "endpoints": (("endpoint_id",), True, False),
    "consumers": (("consumer_id",), True, True),
    "statuses": (("status_code",), True, True),
    "methods": (("method",), True, True),
    "consumer_endpoints": (("consumer_id", "endpoint_id"), True, True),
    "endpoint_consumers": (("endpoint_id", "consumer_id"), True, True),
    "status_endpoints": (("status_code", "endpoint_id"), True, True),
    "status_consumers": (("status_code", "consumer_id"), True, True),
    "method_consumers": (("method", "consumer_id"), True, True),
    "endpoint_statuses": (("endpoint_id", "status_code"), False, True),
    "consumer_statuses": (("consumer_id", "status_code"), False, True),
    "method_statuses": (("method", "status_code"), False, True),
}
_DIM_TYPES = {"endpoint_id": "{big}", "consumer_id": "{big}", "status_code": "INTEGER", "method": "TEXT"}
_SUM_VALUES = "SUM(n), SUM(err4), SUM(err5), SUM(lat_sum), MIN(lat_min), MAX(lat_max), SUM(bytes_in), SUM(bytes_out)"


#: Views that also keep a minute table (version 6): ``rollup_{name}_minutes``/``hist_{name}_minutes`` hold rows
#: of every resolution as ``rollups`` does (minute rows, compacted alike), for minute series filtered by the
#: view's one dimension.
MINUTE_VIEWS = ("consumers", "statuses", "methods")


#: Seconds in a week: the week tables (version 7) hold whole weeks counted from the epoch (Thursdays, 00:00 UTC).
WEEK = 604800
ALL_LEVELS = (60, 3600, 86400, WEEK)


def view_tables(name: str, levels: tuple[int, ...] = ALL_LEVELS) -> list[tuple[str, bool, int]]:
    """The tables of view ``name`` among ``levels``: (table, whether a histogram, resolution: 60 = as
    ``rollups``, 3600 = hours and coarser, 86400 = days, 604800 = weeks)."""
    _, hist, hourly = VIEWS[name]
    out = []
    for res, suffix in ((60, "_minutes"), (3600, ""), (86400, "_days"), (WEEK, "_weeks")):
        if res not in levels:
            continue
        if res >= 86400 or (res == 3600 and hourly) or (res == 60 and name in MINUTE_VIEWS):
            out.append((f"rollup_{name}{suffix}", False, res))
            if hist:
                out.append((f"hist_{name}{suffix}", True, res))
    return out


def view_fill(
    name: str,
    sources: tuple[str, str] = ("rollups", "hist"),
    where: str = "",
    res: str = "r.res",
    levels: tuple[int, ...] = ALL_LEVELS,
) -> list[tuple[str, str]]:
    """(table, SELECT) pairs that add rows of ``sources`` (figures, histograms; aliased ``r``; ``where``: a
    condition on them with its `` WHERE``; ``res``: their resolution) to view ``name``'s tables among ``levels``,
    minute rows becoming hour rows in the hour tables, day rows in the day tables; each SELECT gives the table's
    columns in order, its rows ordered by the table's primary key."""
    dims = VIEWS[name][0]
    cols = [("e.method" if d == "method" else f"r.{d}") for d in dims]
    out = []
    for table, hist, level in view_tables(name, levels):
        if level == 60:
            to_res, to_ts = res, "r.ts"
        elif level == 3600:
            to_res = f"CASE WHEN {res} = 60 THEN 3600 ELSE {res} END"
            to_ts = f"CASE WHEN {res} = 60 THEN (r.ts / 3600) * 3600 ELSE r.ts END"
        else:
            to_res, to_ts = str(level), f"(r.ts / {level}) * {level}"
        join = " JOIN endpoints e ON e.id = r.endpoint_id" if "method" in dims else ""
        by_res = () if to_res.isdigit() else (to_res,)  # a bare number in GROUP BY / ORDER BY names a column
        group = ", ".join(("r.project_id", *by_res, to_ts, *cols))
        order = ", ".join(("r.project_id", cols[0], *by_res, to_ts, *cols[1:]))
        figures = "r.bucket, SUM(r.n)" if hist else _SUM_VALUES.replace("(", "(r.")
        out.append(
            (
                table,
                f"SELECT r.project_id, {to_res}, {to_ts}, {', '.join(cols)}, {figures}"
                f" FROM {sources[1] if hist else sources[0]} r{join}{where}"
                f" GROUP BY {group}{', r.bucket' if hist else ''} ORDER BY {order}{', r.bucket' if hist else ''}",
            )
        )
    return out


def _view_statements(name: str, levels: tuple[int, ...], where: str = "") -> list[str]:
    """DDL and backfill (rows of ``rollups``/``hist`` selected by ``where``) of one view's tables among
    ``levels``."""
    dims = VIEWS[name][0]
    lead, rest = dims[0], dims[1:]
    cols = "".join(f" {d} {_DIM_TYPES[d]} NOT NULL," for d in dims)
    key = ", ".join(("project_id", lead, "res", "ts", *rest))
    head = "project_id {big} NOT NULL, res INTEGER NOT NULL, ts {big} NOT NULL," + cols
    out = []
    for table, hist, _ in view_tables(name, levels):
        if hist:
            out.append(
                f"CREATE TABLE {table} ({head} bucket INTEGER NOT NULL, n {{big}} NOT NULL,"
                f" PRIMARY KEY ({key}, bucket)){{without_rowid}}"
            )
        else:
            out.append(f"CREATE TABLE {table} ({head}{_ROLLUP_COLS}, PRIMARY KEY ({key})){{without_rowid}}")
    return out + [f"INSERT INTO {table} {select}" for table, select in view_fill(name, where=where, levels=levels)]


# version 4: the dimension-first views, so a query filtered by any one dimension reads a small slice. They hold
# every rollup row whose time is before the project's ``view_marks.upto`` (epoch seconds, whole hours): the
# maintenance job moves the mark to the current hour, adding the hours in between; a write of events before
# the mark adds them to the views itself. Backfilled here, with the mark after every stored row.
MIGRATIONS.append(
    [
        "CREATE TABLE view_marks (project_id {big} PRIMARY KEY, upto {big} NOT NULL)",
        "INSERT INTO view_marks (project_id, upto) SELECT p.id, COALESCE((SELECT (MAX(t.ts) / 3600) * 3600 + 3600"
        " FROM rollup_totals t WHERE t.project_id = p.id), 0) FROM projects p",
        *(s for name in VIEWS for s in _view_statements(name, (3600, 86400))),
    ]
)

# version 5: dashboard users (``password_hash`` is scrypt's encoded form, parameters and salt included) and their
# server-side sessions (``token_hash``: SHA-256 of the cookie's token; ``csrf``: the session's form token).
MIGRATIONS.append(
    [
        """CREATE TABLE users (
            id {id},
            name TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at {big} NOT NULL
        )""",
        """CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id {big} NOT NULL REFERENCES users(id),
            csrf TEXT NOT NULL,
            created_at {big} NOT NULL,
            expires_at {big} NOT NULL
        )""",
        "CREATE INDEX sessions_expires ON sessions (expires_at)",
    ]
)

# version 6: minute tables for the views of MINUTE_VIEWS, backfilled with the rows before each project's mark
MIGRATIONS.append(
    [
        s
        for name in MINUTE_VIEWS
        for s in _view_statements(
            name, (60,), " WHERE r.ts < (SELECT m.upto FROM view_marks m WHERE m.project_id = r.project_id)"
        )
    ]
)

# version 7: week tables for every view (the consumers table over 30 days read ~200,000 day histogram rows)
MIGRATIONS.append(
    [
        s
        for name in VIEWS
        for s in _view_statements(
            name, (WEEK,), " WHERE r.ts < (SELECT m.upto FROM view_marks m WHERE m.project_id = r.project_id)"
        )
    ]
)

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"id": "INTEGER PRIMARY KEY", "big": "INTEGER", "float": "REAL", "without_rowid": " WITHOUT ROWID"},
    "postgres": {
        "id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        "big": "BIGINT",
        "float": "DOUBLE PRECISION",
        "without_rowid": "",
    },
}

# version 8: failed dashboard logins, so the login rate limit holds across every collector process (``key``:
# ``user:NAME`` or ``addr:IP``; ``at``: epoch seconds). Rows older than the limiter's window are deleted as it goes.
MIGRATIONS.append(
    [
        "CREATE TABLE login_failures (key TEXT NOT NULL, at {big} NOT NULL)",
        "CREATE INDEX login_failures_key_at ON login_failures (key, at)",
        "CREATE INDEX login_failures_at ON login_failures (at)",
    ]
)

# version 9: alerts. Rules (their spec is the JSON of ``peekapi_server.alerts.rules.Rule``; ``evaluated_upto`` the
# last minute evaluated, so that no minute is evaluated twice by any process), notification channels (``secret``:
# a webhook's signing secret), the state of each rule and group, their history of transitions, and the outbox of
# notifications to deliver (one row per notification and channel; ``message_id`` makes a transition's row unique).
MIGRATIONS.append(
    [
        """CREATE TABLE alert_channels (
            id {id},
            project_id {big} NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            target TEXT NOT NULL,
            secret TEXT,
            created_at {big} NOT NULL,
            UNIQUE (project_id, name)
        )""",
        """CREATE TABLE alert_rules (
            id {id},
            project_id {big} NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            silenced_until {big} NOT NULL DEFAULT 0,
            evaluated_upto {big} NOT NULL DEFAULT 0,
            created_at {big} NOT NULL,
            updated_at {big} NOT NULL,
            UNIQUE (project_id, name)
        )""",
        """CREATE TABLE alert_states (
            rule_id {big} NOT NULL,
            group_key TEXT NOT NULL,
            state TEXT NOT NULL,
            since {big} NOT NULL,
            value {float},
            evaluated_at {big} NOT NULL,
            notified_at {big} NOT NULL DEFAULT 0,
            PRIMARY KEY (rule_id, group_key)
        )""",
        """CREATE TABLE alert_history (
            id {id},
            rule_id {big} NOT NULL,
            group_key TEXT NOT NULL,
            at {big} NOT NULL,
            state TEXT NOT NULL,
            value {float},
            threshold {float} NOT NULL
        )""",
        "CREATE INDEX alert_history_rule_at ON alert_history (rule_id, at)",
        """CREATE TABLE alert_outbox (
            id {id},
            rule_id {big},
            channel_id {big} NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            payload TEXT NOT NULL,
            created_at {big} NOT NULL,
            attempts {big} NOT NULL DEFAULT 0,
            next_attempt_at {big} NOT NULL,
            claimed_until {big} NOT NULL DEFAULT 0,
            delivered_at {big},
            failed_at {big},
            last_error TEXT
        )""",
        "CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at)",
    ]
)

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


def render(statement: str, dialect: Dialect) -> str:
    """One DDL statement for ``dialect``."""
    return statement.format(**_TYPES[dialect])


def latest_version() -> int:
    """The schema version the code expects."""
    return len(MIGRATIONS)
