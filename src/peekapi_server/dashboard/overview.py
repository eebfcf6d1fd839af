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
    """The figures of the view and of the period just before it, for the charts.

    The period before may lie where only hourly or daily figures are kept (the 24-hour view's previous day, in
    15-minute buckets): it is then read at that resolution and its requests spread evenly over the chart's
    buckets (see :func:`_spread`), rather than drawn as one full bucket per hour between empty ones.
    """
    previous = view.query(previous=True)
    stored = stored_resolution(previous.start, int(time.time()) if now is None else now)
    if stored > previous.interval:
        coarse = store.overview(view.project.id, view.query(previous=True, interval=stored))
        previous_figures = _spread(coarse, previous)
    else:
        previous_figures = store.overview(view.project.id, previous)
    return {
        "view": view.as_json(),
        "current": store.overview(view.project.id, view.query()),
        "previous": previous_figures,
    }


def _spread(coarse: dict[str, Any], q: ReadQuery) -> dict[str, Any]:
    """``coarse`` (an overview read at a multiple of ``q.interval``) with its series on ``q``'s buckets: each
    bucket's requests divided evenly among the finer buckets of it inside the range (so that they add up to the
    totals). Only ``t`` and ``requests`` (what the chart draws of the previous period); ``spread_from`` says
    the interval the figures were kept at."""
    iv = q.interval
    first = q.start // iv * iv
    series: list[dict[str, Any]] = []
    for point in coarse["series"]:
        stamps = [t for t in range(point["t"], point["t"] + coarse["interval"], iv) if first <= t < q.end]
        series += ({"t": t, "requests": point["requests"] / len(stamps)} for t in stamps)
    return {**coarse, "interval": iv, "spread_from": coarse["interval"], "series": series}


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
