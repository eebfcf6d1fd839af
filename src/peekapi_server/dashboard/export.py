"""Export: the current view's raw events as CSV or JSON, with the read API's columns (``/v1/export``).

``GET /export?<view>&format=csv|json`` streams every raw event of the view (newest first, at most
:data:`~peekapi_server.readapi.MAX_EXPORT`) through ``store.iter_events``, as ``/v1/export`` does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from peekapi_server.readapi import MAX_EXPORT, stream_events
from peekapi_server.store.users import Session

from .web import page, store_of, view_of


@page
async def export(request: Request, session: Session) -> Response:
    """``GET /export``: the view's events as a CSV or JSON download."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "json"):
        return JSONResponse({"error": "format must be csv or json"}, status_code=400)
    q = view.query(limit=MAX_EXPORT)
    return stream_events(store_of(request), view.project.id, q, fmt, f"peekapi-{view.project.id}-events")
