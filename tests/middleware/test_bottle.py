"""Bottle, called as a WSGI server would call it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("bottle")

import bottle

from peekapi.middleware import PeekApiWSGI

from .conftest import Delivered
from .test_wsgi import environ_for, serve


def make_app(client: Any) -> Any:
    app = bottle.Bottle(catchall=True)

    @app.get("/things/<tid>")
    def get_thing(tid: str) -> dict[str, str]:
        return {"id": tid}

    @app.get("/typed/<n:int>")
    def typed(n: int) -> str:
        return str(n)

    @app.post("/echo")
    def echo() -> str:
        return str(len(bottle.request.body.read()))

    @app.get("/stream")
    def stream() -> Iterator[bytes]:
        yield from (b"a" * 10, b"b" * 10)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    return PeekApiWSGI(app, client=client)


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/things/t-1", 200, "/things/<tid>"),
        ("GET", "/typed/7", 200, "/typed/<n:int>"),
        ("GET", "/stream", 200, "/stream"),
        ("GET", "/boom", 500, "/boom"),
        ("GET", "/nowhere", 404, None),
    ],
)
def test_fields_and_route_templates(
    client: Any, delivered: Delivered, method: str, path: str, status: int, route: str | None
) -> None:
    response, _, body = serve(make_app(client), environ_for(path, method, HTTP_AUTHORIZATION="Basic abc"))
    assert int(response.status[:3]) == status
    event = delivered.one()
    assert event.get("route") == route
    assert (event["path"], event["status_code"], event["response_size"]) == (path, status, len(body))
    assert event["consumer_id"].startswith("hash_")


def test_request_body_size(client: Any, delivered: Delivered) -> None:
    _, _, body = serve(make_app(client), environ_for("/echo", "POST", b"y" * 77))
    assert body == b"77"
    assert delivered.one()["request_size"] == 77


def test_a_non_ascii_path(client: Any, delivered: Delivered) -> None:
    raw = "/things/café".encode().decode("latin-1")
    serve(make_app(client), environ_for(raw))
    event = delivered.one()
    assert (event["path"], event["route"]) == ("/things/café", "/things/<tid>")
