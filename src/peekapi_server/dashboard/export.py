"""Export: the current view's raw events as CSV or JSON, with the read API's columns (``/v1/export``).

``GET /export?<view>&format=csv|json`` streams every raw event of the view (newest first, at most
:data:`~peekapi_server.readapi.MAX_EXPORT`) through ``store.iter_events``, as ``/v1/export`` does.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from peekapi_server.readapi import MAX_EXPORT
from peekapi_server.store.base import JsonDict
from peekapi_server.store.reads import EVENT_KEYS as EXPORT_COLUMNS
from peekapi_server.store.users import Session

from .web import page, store_of, view_of


def _decoded(row: JsonDict) -> JsonDict:
    meta = row.get("metadata")
    return {**row, "metadata": json.loads(meta) if isinstance(meta, str) else None}


@page
async def export(request: Request, session: Session) -> Response:
    """``GET /export``: the view's events as a CSV or JSON download."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "json"):
        return JSONResponse({"error": "format must be csv or json"}, status_code=400)
    store = store_of(request)
    q = view.query(limit=MAX_EXPORT)

    def rows() -> Iterator[JsonDict]:
        for n, row in enumerate(store.iter_events(view.project.id, q)):
            if n >= MAX_EXPORT:
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
            yield ("," if n else "") + json.dumps(_decoded(row), separators=(",", ":"))
        yield "]"

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        as_csv() if fmt == "csv" else as_json(),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="peekapi-{view.project.id}-events.{fmt}"'},
    )
