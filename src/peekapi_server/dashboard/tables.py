"""The endpoints and consumers tables, sortable by any column (``sort``, ``dir`` in the query string), with a
sparkline per row drawn from the JSON twin (requests per interval of the view, one ``store.overview`` per row).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from peekapi_server.store import Store
from peekapi_server.store.base import JsonDict
from peekapi_server.store.users import Session

from .web import View, base_context, page, project_names, render, store_of, view_of

#: Sortable columns (the figure's key in a table row) and their headers.
COLUMNS: dict[str, str] = {
    "requests": "Requests",
    "error_rate": "Errors",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
    "bytes_in": "In",
    "bytes_out": "Out",
}
TABLE_ROWS = 100
#: Rows that get a sparkline (each costs one overview query).
SPARKLINE_ROWS = 50
#: Points per sparkline at most (24 hours: one per hour).
SPARKLINE_POINTS = 60


def sort_rows(rows: list[JsonDict], key: str, descending: bool) -> list[JsonDict]:
    """``rows`` ordered by ``key`` (a column of :data:`COLUMNS`; ``None`` values last), ties by request count."""

    def value(row: JsonDict) -> tuple[bool, float, int]:
        v = row.get(key)
        missing = v is None
        number = float(v) if isinstance(v, (int, float)) else 0.0
        return (missing, -number if descending else number, -int(row["requests"]))

    return sorted(rows, key=value)


def _sorting(request: Request) -> tuple[str, bool]:
    key = request.query_params.get("sort", "requests")
    return (key if key in COLUMNS else "requests"), request.query_params.get("dir", "desc") != "asc"


def _rows(store: Store, view: View, kind: str, key: str, descending: bool) -> list[JsonDict]:
    q = view.query(limit=TABLE_ROWS)
    table = store.endpoints_table if kind == "endpoints" else store.consumers_table
    rows = table(view.project.id, q)
    return sort_rows(rows, key, descending)


def _sparklines(store: Store, view: View, kind: str, rows: list[JsonDict]) -> list[list[int]]:
    out: list[list[int]] = []
    for row in rows[:SPARKLINE_ROWS]:
        if kind == "endpoints":
            v = view.filtered(
                endpoint=row["route"], method=row["method"], consumer=view.consumer, status_class=view.status_class
            )
        elif row["consumer"] is not None:
            v = view.filtered(
                endpoint=view.endpoint, method=view.method, consumer=row["consumer"], status_class=view.status_class
            )
        else:  # requests without a consumer cannot be filtered on
            out.append([])
            continue
        series = store.overview(view.project.id, v.query(interval=view.coarse_interval(SPARKLINE_POINTS)))["series"]
        out.append([int(point["requests"]) for point in series])
    return out


async def _page(request: Request, session: Session, kind: str) -> Response:
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    key, descending = _sorting(request)
    rows = await run_in_threadpool(_rows, store_of(request), view, kind, key, descending)
    return render(
        f"{kind}.html",
        **base_context(request, session, view, kind),
        projects=await project_names(request),
        rows=rows,
        choices={"endpoints": rows if kind == "endpoints" else [], "consumers": rows if kind == "consumers" else []},
        columns=COLUMNS,
        sort=key,
        descending=descending,
        data_src=f"{request.url.path}.json?{request.url.query}",
    )


async def _json(request: Request, kind: str) -> Response:
    view = await view_of(request)
    if isinstance(view, Response):
        return view
    key, descending = _sorting(request)
    store = store_of(request)

    def build() -> dict[str, Any]:
        rows = _rows(store, view, kind, key, descending)
        return {"view": view.as_json(), kind: rows, "sparklines": _sparklines(store, view, kind, rows)}

    return JSONResponse(await run_in_threadpool(build))


@page
async def endpoints_page(request: Request, session: Session) -> Response:
    """``GET /endpoints``: one row per endpoint (method and route) of the view."""
    return await _page(request, session, "endpoints")


@page
async def endpoints_json(request: Request, session: Session) -> Response:
    """``GET /endpoints.json``: the rows, in the page's order, and each row's requests per interval."""
    return await _json(request, "endpoints")


@page
async def consumers_page(request: Request, session: Session) -> Response:
    """``GET /consumers``: one row per consumer of the view."""
    return await _page(request, session, "consumers")


@page
async def consumers_json(request: Request, session: Session) -> Response:
    """``GET /consumers.json``: the rows, in the page's order, and each row's requests per interval."""
    return await _json(request, "consumers")
