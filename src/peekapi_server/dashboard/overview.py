"""The overview page, the endpoint page and the consumer page, with their JSON twins.

Each page is rendered with its filters and tables; its charts are drawn in the browser by uPlot from the JSON
twin (the same URL with ``.json``), which holds ``store.overview`` for the view and for the period just before
it (the figures the read API's ``/v1/overview`` gives), plus the page's tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from peekapi_server.store import ReadQuery, Store
from peekapi_server.store.base import stored_resolution
from peekapi_server.store.users import Session

from .distribution import bins
from .snippet import snippet_for
from .web import View, base_context, page, project_names, render, store_of, view_of

_FILTER_CHOICES = 200
Detail = Callable[[Store, View], dict[str, Any]]


def _has_events(store: Store, view: View) -> bool:
    """True when the project ever received an event (one indexed row read, not a count)."""
    now = int(time.time())
    return bool(store.recent_events(view.project.id, ReadQuery(start=0, end=now + 86400, limit=1)))


def _series(store: Store, view: View, now: int | None = None) -> dict[str, Any]:
    """The figures of the view and of the period just before it, for the charts, evened out where only hourly or
    daily figures are kept (see :func:`_even_out`)."""
    at = int(time.time()) if now is None else now
    return {
        "view": view.as_json(),
        "current": _even_out(store.overview(view.project.id, view.query()), at),
        "previous": _even_out(store.overview(view.project.id, view.query(previous=True)), at),
    }


#: The figures of a series point that add up (spread over the buckets of an hour or a day; the others are kept).
_COUNTS = ("requests", "errors", "errors_4xx", "errors_5xx", "bytes_in", "bytes_out")


def _even_out(figures: dict[str, Any], now: int) -> dict[str, Any]:
    """``figures`` (an overview) with each hour or day that is kept only whole spread evenly over the series'
    buckets within it.

    Minute figures older than a day become hourly ones, hourly ones older than a week daily ones
    (:func:`stored_resolution`): in 15-minute buckets (the 24-hour view) an hour's requests all fall in its first
    bucket and none in the three others, which draws a false sawtooth for steady traffic. Counts are divided
    evenly among the buckets of their hour or day in the range (so they still add up to the totals); the error
    rate is the hour's or day's, and its latencies are repeated. ``evened_out`` says it was done.
    """
    iv = int(figures["interval"])
    series: list[dict[str, Any]] = figures["series"]
    blocks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for point in series:
        kept = stored_resolution(point["t"], now)
        if kept > iv:
            blocks.setdefault((kept, point["t"] // kept * kept), []).append(point)
    evened: dict[int, dict[str, Any]] = {}
    for points in blocks.values():
        if len(points) < 2:
            continue
        totals = {key: sum(point[key] for point in points) for key in _COUNTS}
        whole = next((point for point in points if point["requests"]), points[0])  # where the hour's row fell
        for point in points:
            evened[point["t"]] = {
                **whole,
                "t": point["t"],
                **{key: totals[key] / len(points) for key in _COUNTS},
                "error_rate": totals["errors"] / totals["requests"] if totals["requests"] else 0.0,
            }
    if not evened:
        return figures
    return {**figures, "series": [evened.get(point["t"], point) for point in series], "evened_out": True}


def _choices(store: Store, view: View) -> dict[str, Any]:
    """The endpoints and consumers of the range, unfiltered, for the filter menus."""
    unfiltered = view.filtered()
    q = unfiltered.query(limit=_FILTER_CHOICES)
    return {
        "endpoints": store.endpoints_table(view.project.id, q),
        "consumers": store.consumers_table(view.project.id, q),
    }


async def _page(
    request: Request, session: Session, template: str, active: str, detail: Detail | None = None
) -> Response:
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    store = store_of(request)
    has_events = await run_in_threadpool(_has_events, store, view)
    choices = await run_in_threadpool(_choices, store, view) if has_events else {"endpoints": [], "consumers": []}
    tables = await run_in_threadpool(detail, store, view) if detail and has_events else {}
    return render(
        template,
        **base_context(request, session, view, active),
        projects=await project_names(request),
        has_events=has_events,
        choices=choices,
        data_src=f"{request.url.path}.json?{view.qs()}",
        snippet=snippet_for(request),
        tables=tables,
    )


@page
async def overview_page(request: Request, session: Session) -> Response:
    """``GET /overview``: requests, error rates, latency percentiles and bytes over time, with filters."""
    return await _page(request, session, "overview.html", "overview")


@page
async def overview_json(request: Request, session: Session) -> Response:
    """``GET /overview.json``: the overview's figures for the view and for the period before it."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    return JSONResponse(await run_in_threadpool(_series, store_of(request), view))


@page
async def endpoint_page(request: Request, session: Session) -> Response:
    """``GET /endpoint?endpoint=ROUTE&method=M``: one endpoint's charts, status codes and consumers."""
    if not request.query_params.get("endpoint"):  # the filter was cleared: the overview shows the rest
        return RedirectResponse(f"/overview?{request.url.query}", status_code=303)
    return await _page(request, session, "endpoint.html", "endpoints", _endpoint_tables)


def _endpoint_tables(store: Store, view: View) -> dict[str, Any]:
    q = view.query()
    return {
        "status_codes": store.status_codes(view.project.id, q),
        "consumers": store.consumers_table(view.project.id, q),
        "latency": bins(store.latency_histogram(view.project.id, q)),
    }


def _endpoint(store: Store, view: View) -> dict[str, Any]:
    tables = _endpoint_tables(store, view)
    tables["latency"] = [b.as_json() for b in tables["latency"]]
    return {**_series(store, view), **tables}


@page
async def endpoint_json(request: Request, session: Session) -> Response:
    """``GET /endpoint.json``: the endpoint page's series, status codes and consumers."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    return JSONResponse(await run_in_threadpool(_endpoint, store_of(request), view))


@page
async def consumer_page(request: Request, session: Session) -> Response:
    """``GET /consumer?consumer=ID``: one consumer's charts and the endpoints it calls."""
    if not request.query_params.get("consumer"):
        return RedirectResponse(f"/overview?{request.url.query}", status_code=303)
    return await _page(request, session, "consumer.html", "consumers", _consumer_tables)


def _consumer_tables(store: Store, view: View) -> dict[str, Any]:
    q = view.query()
    return {
        "endpoints": store.endpoints_table(view.project.id, q),
        "status_codes": store.status_codes(view.project.id, q),
    }


def _consumer(store: Store, view: View) -> dict[str, Any]:
    return {**_series(store, view), **_consumer_tables(store, view)}


@page
async def consumer_json(request: Request, session: Session) -> Response:
    """``GET /consumer.json``: the consumer page's series, endpoints and status codes."""
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    return JSONResponse(await run_in_threadpool(_consumer, store_of(request), view))
