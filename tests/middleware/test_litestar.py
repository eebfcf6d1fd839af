"""Litestar through its own TestClient: DefineMiddleware, and wrapping the whole app."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("litestar")

from litestar import Litestar, Router, get
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient

from peekapi.middleware import PeekApiASGI

try:  # Litestar >= 2.2x wants path parameters declared; older versions infer them
    from litestar.params import FromPath

    OrderId = FromPath[int]
except ImportError:  # pragma: no cover
    OrderId = int  # type: ignore[misc]

from .conftest import Delivered


@get("/orders/{oid:int}")
async def get_order(oid: OrderId) -> dict[str, int]:
    return {"id": oid}


@get("/fail")
async def fail() -> None:
    raise RuntimeError("boom")


def test_define_middleware_records_typed_route_templates(client: Any, delivered: Delivered) -> None:
    app = Litestar(
        route_handlers=[get_order, Router("/v1", route_handlers=[get_order]), fail],
        middleware=[DefineMiddleware(PeekApiASGI, client=client)],
    )
    with TestClient(app) as http:
        assert http.get("/orders/1").status_code == 200
        assert http.get("/v1/orders/2").status_code == 200
        assert http.get("/fail").status_code == 500
    events = sorted(delivered(3), key=lambda e: e["path"])
    assert [(e["path"], e["status_code"], e["route"]) for e in events] == [
        ("/fail", 500, "/fail"),
        ("/orders/1", 200, "/orders/{oid:int}"),
        ("/v1/orders/2", 200, "/v1/orders/{oid:int}"),
    ]
    assert events[1]["response_size"] == len(b'{"id":1}')


def test_options_form_shares_one_client_across_route_handlers(options: dict[str, Any], ingest: Any) -> None:
    app = Litestar(
        route_handlers=[get_order, fail],
        middleware=[DefineMiddleware(PeekApiASGI, **options)],
    )
    with TestClient(app) as http:
        http.get("/orders/1")
        http.get("/fail")
    events = ingest.wait_for(2)
    assert sorted(e["path"] for e in events) == ["/fail", "/orders/1"]


def test_wrapping_the_app_also_records_404s(client: Any, delivered: Delivered) -> None:
    app = PeekApiASGI(Litestar(route_handlers=[get_order]), client=client)
    with TestClient(app) as http:
        assert http.get("/orders/5").status_code == 200
        assert http.get("/nowhere").status_code == 404
    events = {e["path"]: e for e in delivered(2)}
    assert events["/orders/5"]["route"] == "/orders/{oid:int}"
    assert events["/nowhere"]["status_code"] == 404 and "route" not in events["/nowhere"]
