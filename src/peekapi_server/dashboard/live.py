"""The live page: requests as they arrive, pushed as server-sent events, newest first, filterable.

``GET /live/stream`` (with the view's filters) polls the store once a second for events newer than the last
one sent (by timestamp, then id) and sends each as one ``data:`` line of JSON, with ``id: TS_MS.ID``; the
browser adds them as text. A new stream starts with the newest :data:`BATCH` events; a reconnecting
``EventSource`` sends ``Last-Event-ID`` and gets only what came after it. A stream ends after
:data:`STREAM_SECONDS` (so a stopping server waits for it at most that long; the browser reconnects) or as
soon as its session ends (logout); Starlette cancels it when the client leaves.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from peekapi_server.store import ReadQuery
from peekapi_server.store.base import JsonDict
from peekapi_server.store.users import Session

from .web import View, base_context, current_session, page, project_names, render, store_of, view_of

POLL_SECONDS = 1.0
STREAM_SECONDS = 15.0
#: Events sent at most per poll, and shown when the page opens.
BATCH = 100
#: How far back a poll looks for events that arrived late (timestamps are the client's).
_SLACK_MS = 60_000


def _event(row: JsonDict) -> JsonDict:
    """The fields the live page shows (all as sent on the wire, rendered as text by the page)."""
    keys = ("id", "ts_ms", "method", "path", "route", "status_code", "response_time_ms", "response_size", "consumer_id")
    return {k: row[k] for k in keys}


def _recent(request: Request, view: View, since_ms: int | None) -> list[JsonDict]:
    now = int(time.time())
    start = 0 if since_ms is None else max(since_ms - _SLACK_MS, 0) // 1000
    q = ReadQuery(
        start=start,
        end=now + 3600,
        endpoint=view.endpoint,
        consumer=view.consumer,
        method=view.method,
        status_class=view.status_class,
        limit=BATCH,
    )
    return [_event(r) for r in store_of(request).recent_events(view.project.id, q)]


@page
async def live_page(request: Request, session: Session) -> Response:
    """``GET /live``: the page (the stream starts from the events already stored)."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    return render(
        "live.html",
        **base_context(request, session, view, "live"),
        projects=await project_names(request),
        stream_src=f"/live/stream?{view.qs()}",
    )


@page
async def live_json(request: Request, session: Session) -> Response:
    """``GET /live.json``: the newest events of the view (at most 100), newest first."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    return JSONResponse({"view": view.as_json(), "events": await run_in_threadpool(_recent, request, view, None)})


def _last_event_id(value: str) -> tuple[int, int] | None:
    """``(ts_ms, id)`` from a ``Last-Event-ID`` of the form ``TS_MS.ID``, else ``None``."""
    ts, _, ident = value.partition(".")
    if ts.isascii() and ts.isdigit() and ident.isascii() and ident.isdigit() and len(value) <= 40:
        return int(ts), int(ident)
    return None


@page
async def live_stream(request: Request, session: Session) -> Response:
    """``GET /live/stream``: ``text/event-stream`` of new events (oldest of each poll first)."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view

    last = _last_event_id(request.headers.get("last-event-id", ""))

    async def events() -> AsyncIterator[str]:
        nonlocal last
        deadline = time.monotonic() + STREAM_SECONDS
        yield "retry: 1000\n\n"
        while time.monotonic() < deadline:
            rows = await run_in_threadpool(_recent, request, view, None if last is None else last[0])
            fresh = [r for r in rows if last is None or (int(r["ts_ms"]), int(r["id"])) > last]
            for row in reversed(fresh):
                event_id = f"{int(row['ts_ms'])}.{int(row['id'])}"
                yield f"id: {event_id}\ndata: {json.dumps(row, separators=(',', ':'))}\n\n"
            if fresh:
                newest = fresh[0]
                last = max(last or (0, 0), (int(newest["ts_ms"]), int(newest["id"])))
            elif last is None:
                last = (0, 0)
            await asyncio.sleep(POLL_SECONDS)
            if await current_session(request) is None:
                return

    return StreamingResponse(events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})
