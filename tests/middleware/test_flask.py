"""Flask through its own test client (and called as a WSGI server would, for wsgi.file_wrapper)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.util import FileWrapper

import pytest

pytest.importorskip("flask")

from flask import Flask, Response, request, send_file

from peekapi.middleware import PeekApiWSGI

from .conftest import Delivered
from .test_wsgi import environ_for, serve


def make_app(client: Any, data: Path | None = None) -> Flask:
    app = Flask("test_flask")

    @app.get("/users/<int:uid>")
    def get_user(uid: int) -> dict[str, int]:
        return {"id": uid}

    @app.post("/echo")
    def echo() -> dict[str, int]:
        return {"received": len(request.get_data())}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            yield from (b"one,", b"two,", b"three")

        return Response(chunks())

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/file")
    def file() -> Response:
        assert data is not None
        return send_file(data.open("rb"), mimetype="application/octet-stream")

    app.wsgi_app = PeekApiWSGI(app.wsgi_app, client=client)  # type: ignore[method-assign]
    return app


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/users/3", 200, "/users/<int:uid>"),
        ("GET", "/users/abc", 404, None),
        ("GET", "/boom", 500, "/boom"),
        ("GET", "/stream", 200, "/stream"),
        ("DELETE", "/users/3", 405, None),
    ],
)
def test_fields_and_route_templates(
    client: Any, delivered: Delivered, method: str, path: str, status: int, route: str | None
) -> None:
    response = make_app(client).test_client().open(path, method=method, headers={"X-API-Key": "consumer"})
    assert response.status_code == status
    expected = {
        "method": method,
        "path": path,
        "status_code": status,
        "request_size": 0,
        "response_size": len(response.data),
        "consumer_id": "consumer",
    }
    if route is not None:
        expected["route"] = route
    assert delivered.one() == expected


def test_request_body_size(client: Any, delivered: Delivered) -> None:
    response = make_app(client).test_client().post("/echo", data=b"x" * 300)
    assert response.json == {"received": 300}
    event = delivered.one()
    assert (event["request_size"], event["route"]) == (300, "/echo")


def test_send_file_keeps_the_servers_file_wrapper(client: Any, delivered: Delivered, tmp_path: Path) -> None:
    data = tmp_path / "blob.bin"
    data.write_bytes(b"b" * 4096)
    env = environ_for("/file")
    env["wsgi.file_wrapper"] = FileWrapper
    result = make_app(client, data)(env, lambda status, headers, exc_info=None: None)
    assert type(result) is FileWrapper
    assert b"".join(result) == b"b" * 4096
    result.close()  # type: ignore[attr-defined]
    event = delivered.one()
    assert (event["response_size"], event["route"]) == (4096, "/file")


def test_every_request_is_recorded_once(client: Any, delivered: Delivered) -> None:
    http = make_app(client).test_client()
    for i in range(25):
        assert http.get(f"/users/{i}").data  # the test client reads the body lazily
    events = delivered(25)
    assert sorted(e["path"] for e in events) == sorted(f"/users/{i}" for i in range(25))
    assert {e["route"] for e in events} == {"/users/<int:uid>"}


def test_one_line_options_form(options: dict[str, Any], ingest: Any) -> None:
    app = Flask("one_line")
    app.add_url_rule("/ping", "ping", lambda: "pong")
    app.add_url_rule("/health", "health", lambda: "ok")
    app.wsgi_app = PeekApiWSGI(app.wsgi_app, **options, exclude_paths=["/health"])  # type: ignore[method-assign]
    http = app.test_client()
    assert http.get("/ping").data == b"pong"
    assert http.get("/health").data == b"ok"
    assert [(e["path"], e["route"]) for e in ingest.wait_for(1)] == [("/ping", "/ping")]
    assert len(ingest.events()) == 1


def test_stream_through_serve(client: Any, delivered: Delivered) -> None:
    _, _, body = serve(make_app(client), environ_for("/stream", wsgi_input=io.BytesIO()))
    assert body == b"one,two,three"
    assert delivered.one()["response_size"] == 13


def test_a_plain_werkzeug_app_is_recorded_without_a_route(client: Any, delivered: Delivered) -> None:
    # werkzeug's own Request also sits in environ["werkzeug.request"], without Flask's url_rule.
    from werkzeug.wrappers import Request
    from werkzeug.wrappers import Response as WerkzeugResponse

    @Request.application
    def app(request: Request) -> WerkzeugResponse:
        return WerkzeugResponse(f"hi {request.path}")

    response, _, body = serve(PeekApiWSGI(app, client=client), environ_for("/plain/1"))
    assert (response.status, body) == ("200 OK", b"hi /plain/1")
    event = delivered.one()
    assert (event["path"], event["status_code"], event["response_size"]) == ("/plain/1", 200, len(body))
    assert "route" not in event
