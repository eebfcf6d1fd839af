"""The read API: JSON (and CSV) endpoints the dashboard uses, each behind a project's read token.

Every endpoint takes ``Authorization: Bearer <read token>`` (ingest keys are refused) and the query parameters
``from``/``to`` (epoch seconds or ISO-8601, 1970..9999; default the last 24 hours), ``endpoint`` (a route),
``method``, ``consumer``, ``status_class`` (``1``..``5`` or ``1xx``..``5xx``) and ``limit``; the overview also
``interval``, the export ``format``. See :mod:`.openapi` for each one.

A parameter that is not one of the endpoint's or is given twice, a value holding NUL, or a value that cannot be
understood answers ``400`` with an ``error`` naming the parameter. Every value reaches the database as a bound
parameter.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .events import parse_timestamp
from .ingest import json_response
from .runtime import Collector
from .store import ReadQuery, Store
from .store.base import DAY, HOUR, MINUTE
from .store.reads import EVENT_KEYS as EXPORT_COLUMNS

MAX_LIMIT = 1000
MAX_EXPORT = 1_000_000
_MAX_RANGE = 400 * DAY
#: Times are accepted from 1970-01-01 up to (not including) the year 10000, in epoch seconds.
MAX_TIME = 253_402_300_800
_DIGITS = re.compile(r"[0-9]{1,20}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

#: The query parameters every read endpoint takes.
FILTERS = frozenset({"from", "to", "endpoint", "method", "consumer", "status_class", "limit"})
OVERVIEW_PARAMETERS = FILTERS | {"interval"}
EXPORT_PARAMETERS = FILTERS | {"format"}


class BadQuery(ValueError):
    """A query parameter that cannot be understood; the message names it."""


def _time(value: str, name: str) -> int:
    """Epoch seconds from ``value`` (digits, an ISO-8601 time, or a date: its midnight, UTC); :class:`BadQuery`
    outside 1970..9999."""
    if _DIGITS.fullmatch(value):
        seconds = int(value)
    else:
        if _DATE.fullmatch(value):
            value += "T00:00:00Z"
        ms = parse_timestamp(value, 0, -(2**62), 2**62) if value else None
        if ms is None:
            raise BadQuery(f"{name} must be epoch seconds or an ISO-8601 time, got {value[:100]!r}")
        seconds = ms // 1000
    if not 0 <= seconds < MAX_TIME:
        raise BadQuery(f"{name} must be a time from 1970 to 9999, got {value[:100]!r}")
    return seconds


def _interval(value: str | None, span: int) -> int:
    if value is None or value == "auto":
        return MINUTE if span <= 6 * HOUR else HOUR if span <= 8 * DAY else DAY
    named = {"minute": MINUTE, "hour": HOUR, "day": DAY}
    if value in named:
        return named[value]
    if _DIGITS.fullmatch(value) and MINUTE <= int(value) <= _MAX_RANGE and int(value) % MINUTE == 0:
        return int(value)
    raise BadQuery(
        f"interval must be auto, minute, hour, day or a multiple of 60 seconds up to 400 days, got {value[:100]!r}"
    )


def parse_query(
    request: Request, allowed: frozenset[str] = FILTERS, default_limit: int = 100, max_limit: int = MAX_LIMIT
) -> ReadQuery:
    """A :class:`ReadQuery` from the request's query string; :class:`BadQuery` for a bad parameter.

    ``allowed`` names the parameters the endpoint takes: any other one is refused, naming it, so a misspelt
    filter never silently reads everything.
    """
    p = request.query_params
    unknown = sorted({name for name in p if name not in allowed})
    if unknown:
        names = ", ".join(repr(name[:100]) for name in unknown[:10])
        raise BadQuery(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {names}; allowed: {', '.join(sorted(allowed))}"
        )
    for name, value in p.multi_items():
        if "\x00" in value:
            raise BadQuery(f"{name} must not contain NUL characters")
        if len(p.getlist(name)) > 1:
            raise BadQuery(f"{name} is given more than once")
    end = _time(p["to"], "to") if "to" in p else int(time.time()) + 1
    start = _time(p["from"], "from") if "from" in p else end - DAY
    if start >= end:
        raise BadQuery("from must be before to")
    if end - start > _MAX_RANGE:
        raise BadQuery("the time range may span at most 400 days")
    status_class: int | None = None
    if "status_class" in p:
        raw = p["status_class"].lower().removesuffix("xx")
        if raw not in ("1", "2", "3", "4", "5"):
            raise BadQuery(f"status_class must be 1..5 or 1xx..5xx, got {p['status_class'][:100]!r}")
        status_class = int(raw)
    limit = default_limit
    if "limit" in p:
        if not _DIGITS.fullmatch(p["limit"]) or not 1 <= int(p["limit"]) <= max_limit:
            raise BadQuery(f"limit must be an integer from 1 to {max_limit}")
        limit = int(p["limit"])
    return ReadQuery(
        start=start,
        end=end,
        interval=_interval(p.get("interval"), end - start),
        endpoint=p.get("endpoint") or None,
        consumer=p.get("consumer") or None,
        method=(p.get("method") or "").upper() or None,
        status_class=status_class,
        limit=limit,
    )


async def _authorise(request: Request) -> int | None:
    collector: Collector = request.app.state.collector
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return await collector.read_tokens.project_for(token.strip())


def _unauthorised() -> Response:
    return json_response(
        401, {"error": "a read token is required: Authorization: Bearer rt_..."}, {"www-authenticate": "Bearer"}
    )


async def _prepare(
    request: Request, allowed: frozenset[str] = FILTERS, default_limit: int = 100, max_limit: int = MAX_LIMIT
) -> tuple[int, ReadQuery] | Response:
    """The read token's project and the parsed query, else the 401 or 400 response to send."""
    project_id = await _authorise(request)
    if project_id is None:
        return _unauthorised()
    try:
        return project_id, parse_query(request, allowed, default_limit, max_limit)
    except BadQuery as exc:
        return json_response(400, {"error": str(exc)})


async def overview(request: Request) -> Response:
    """``GET /v1/overview``: time series and totals."""
    prepared = await _prepare(request, OVERVIEW_PARAMETERS)
    if isinstance(prepared, Response):
        return prepared
    store = request.app.state.collector.store
    return json_response(200, await run_in_threadpool(store.overview, prepared[0], prepared[1]))


async def _table(request: Request, query: str, key: str) -> Response:
    """One of the tables: the store's ``query`` for the request's project and filters, under ``key``."""
    prepared = await _prepare(request)
    if isinstance(prepared, Response):
        return prepared
    rows = await run_in_threadpool(getattr(request.app.state.collector.store, query), prepared[0], prepared[1])
    return json_response(200, {key: rows})


async def endpoints(request: Request) -> Response:
    """``GET /v1/endpoints``: the endpoints table."""
    return await _table(request, "endpoints_table", "endpoints")


async def consumers(request: Request) -> Response:
    """``GET /v1/consumers``: the consumers table."""
    return await _table(request, "consumers_table", "consumers")


async def status_codes(request: Request) -> Response:
    """``GET /v1/status-codes``: requests per status code."""
    return await _table(request, "status_codes", "status_codes")


def _decode(row: dict[str, object]) -> dict[str, object]:
    meta = row.get("metadata")
    return {**row, "metadata": json.loads(meta) if isinstance(meta, str) else None}


async def recent(request: Request) -> Response:
    """``GET /v1/events/recent``: raw events, newest first."""
    prepared = await _prepare(request, FILTERS, default_limit=50)
    if isinstance(prepared, Response):
        return prepared
    rows = await run_in_threadpool(request.app.state.collector.store.recent_events, prepared[0], prepared[1])
    return json_response(200, {"events": [_decode(r) for r in rows]})


async def export(request: Request) -> Response:
    """``GET /v1/export?format=csv|json``: raw events streamed as CSV or a JSON array."""
    prepared = await _prepare(request, EXPORT_PARAMETERS, default_limit=MAX_EXPORT, max_limit=MAX_EXPORT)
    if isinstance(prepared, Response):
        return prepared
    fmt = request.query_params.get("format", "json")
    if fmt not in ("csv", "json"):
        return json_response(400, {"error": f"format must be csv or json, got {fmt[:100]!r}"})
    project_id, q = prepared
    return stream_events(request.app.state.collector.store, project_id, q, fmt, "peekapi-events")


def stream_events(store: Store, project_id: int, q: ReadQuery, fmt: str, filename: str) -> Response:
    """A download of the raw events of ``q`` (newest first, at most ``q.limit``) as CSV or a JSON array.

    ``fmt`` is ``"csv"`` or ``"json"``; the file is called ``{filename}.{fmt}``. Rows are fetched in chunks as the
    response is sent, so memory stays bounded whatever the count.
    """

    def rows() -> Iterator[dict[str, object]]:
        for n, row in enumerate(store.iter_events(project_id, q)):
            if n >= q.limit:
                return
            yield row

    def as_csv() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows():
            writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
            if buf.tell() > 65536:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    def as_json() -> Iterator[str]:
        yield "["
        for n, row in enumerate(rows()):
            yield ("," if n else "") + json.dumps(_decode(row), separators=(",", ":"))
        yield "]"

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    disposition = f'attachment; filename="{filename}.{fmt}"'
    return StreamingResponse(
        as_csv() if fmt == "csv" else as_json(), media_type=media, headers={"content-disposition": disposition}
    )
