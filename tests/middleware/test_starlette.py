"""Starlette through its own TestClient, delivering to the real ingest server."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Host, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.testclient import TestClient

from peekapi.middleware import PeekApiASGI

from .conftest import Delivered


async def user(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"user {request.path_params['user_id']}")


async def boom(request: Request) -> Response:
    raise RuntimeError("boom")


def make_app(client: Any, tmp_path: Any) -> Starlette:
    (tmp_path / "site.css").write_text("body {}")
    inner = Starlette(routes=[Route("/items/{user_id}", user)])
    app = Starlette(
        routes=[
            Route("/users/{user_id}", user),
            Route("/typed/{user_id:int}", user, methods=["GET"]),
            Route("/boom", boom),
            Mount("/api", routes=[Mount("/v1", routes=[Route("/users/{user_id}", user)])]),
            Mount("/t/{tenant}", routes=[Route("/users/{user_id}", user)]),
            Mount("/sub", app=inner),
            Mount("/static", app=StaticFiles(directory=tmp_path)),
            Host("api.example.com", app=Starlette(routes=[Route("/hosted/{user_id}", user)])),
        ]
    )
    app.add_middleware(PeekApiASGI, client=client)
    return app


@pytest.mark.parametrize(
    ("path", "status", "route"),
    [
        ("/users/7", 200, "/users/{user_id}"),
        ("/typed/7", 200, "/typed/{user_id:int}"),
        ("/api/v1/users/7", 200, "/api/v1/users/{user_id}"),
        ("/t/acme/users/7", 200, "/t/{tenant}/users/{user_id}"),
        ("/sub/items/9", 200, "/sub/items/{user_id}"),
        ("/static/site.css", 200, "/static/{path:path}"),
        ("/nope/1", 404, None),
        ("/api/v1/nope", 404, None),
        ("/sub/nope", 404, None),
    ],
)
def test_route_templates(
    client: Any, delivered: Delivered, tmp_path: Any, path: str, status: int, route: str | None
) -> None:
    with TestClient(make_app(client, tmp_path)) as http:
        response = http.get(path)
    assert response.status_code == status
    event = delivered.one()
    expected = {
        "method": "GET",
        "path": path,
        "status_code": status,
        "request_size": 0,
        "response_size": len(response.content),
        "consumer_id": None,
    }
    if route is not None:
        expected["route"] = route
    assert event == expected


@pytest.mark.parametrize(("path", "status", "route"), [("/hosted/5", 200, "/hosted/{user_id}"), ("/nope", 404, None)])
def test_route_templates_under_a_host(
    client: Any, delivered: Delivered, tmp_path: Any, path: str, status: int, route: str | None
) -> None:
    # A Host whose routes match nothing stays the scope's route (it has no path): no template, no error.
    with TestClient(make_app(client, tmp_path)) as http:
        assert http.get(path, headers={"host": "api.example.com"}).status_code == status
    event = delivered.one()
    assert (event["path"], event["status_code"], event.get("route")) == (path, status, route)


def test_method_not_allowed_keeps_the_route(client: Any, delivered: Delivered, tmp_path: Any) -> None:
    with TestClient(make_app(client, tmp_path)) as http:
        assert http.post("/typed/3").status_code == 405
    event = delivered.one()
    assert (event["status_code"], event.get("route")) == (405, "/typed/{user_id:int}")


def test_an_exception_is_recorded_as_500_and_still_raised(client: Any, delivered: Delivered, tmp_path: Any) -> None:
    with TestClient(make_app(client, tmp_path)) as http, pytest.raises(RuntimeError, match="boom"):
        http.get("/boom")
    event = delivered.one()
    assert (event["status_code"], event["route"]) == (500, "/boom")


def test_wrapping_the_whole_app_counts_the_500_page_and_keeps_the_routes(client: Any, delivered: Delivered) -> None:
    # Outside ServerErrorMiddleware, the middleware sees the page it writes (add_middleware() puts it inside);
    # the router fills in the very scope dict the middleware holds, so the route templates are still found.
    app = PeekApiASGI(Starlette(routes=[Route("/users/{user_id}", user), Route("/boom", boom)]), client=client)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/boom").status_code == 500
        assert http.get("/users/7").status_code == 200
    failed, served = sorted(delivered(2), key=lambda e: e["path"])
    assert (failed["status_code"], failed["route"], failed["response_size"]) == (500, "/boom", 21)  # its page
    assert (served["route"], served["response_size"]) == ("/users/{user_id}", len("user 7"))


def test_streaming_and_background_tasks(client: Any, delivered: Delivered) -> None:
    ran: list[bool] = []

    async def stream(request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(10):
                yield b"chunk %d;" % i

        return StreamingResponse(chunks(), background=BackgroundTask(lambda: ran.append(True)))

    app = Starlette(routes=[Route("/stream", stream)])
    app.add_middleware(PeekApiASGI, client=client)
    with TestClient(app) as http:
        body = http.get("/stream").content
    assert ran == [True]
    assert delivered.one()["response_size"] == len(body) == 80


def test_post_body_and_consumer(client: Any, delivered: Delivered, tmp_path: Any) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    app.add_middleware(PeekApiASGI, client=client)
    with TestClient(app) as http:
        http.post("/echo", content=b"x" * 1000, headers={"X-API-Key": "consumer-key"})
    event = delivered.one()
    assert (event["request_size"], event["consumer_id"], event["route"]) == (1000, "consumer-key", "/echo")


def test_options_form_and_lifespan_flush(options: dict[str, Any], ingest: Any) -> None:
    app = Starlette(routes=[Route("/users/{user_id}", user)])
    app.add_middleware(PeekApiASGI, **{**options, "flush_interval": 3600.0})
    with TestClient(app) as http:
        http.get("/users/1")
        http.get("/users/2")
        assert ingest.events() == []  # nothing sent on a timer ...
    # ... and everything by the time lifespan shutdown completed.
    assert [e["path"] for e in ingest.events()] == ["/users/1", "/users/2"]


def test_bad_options_fail_when_the_app_is_built() -> None:
    app = Starlette(routes=[Route("/", user)])
    app.add_middleware(PeekApiASGI, api_key="k", batch_size=-1)
    with pytest.raises(ValueError, match="batch_size"), TestClient(app) as http:
        http.get("/")


def test_bad_options_without_lifespan_leave_requests_untouched(caplog: pytest.LogCaptureFixture) -> None:
    """The middleware is built on the first request (no lifespan run): that request and the next get the app's
    answer, never a 500, and the reason is logged once."""
    app = Starlette(routes=[Route("/users/{user_id}", user)])
    app.add_middleware(PeekApiASGI, api_key="k", batch_size=-1)
    http = TestClient(app)  # not entered: no lifespan
    responses = [http.get(f"/users/{i}") for i in range(3)]
    assert [(r.status_code, r.text) for r in responses] == [(200, "user 0"), (200, "user 1"), (200, "user 2")]
    errors = [r.getMessage() for r in caplog.records if r.name == "peekapi"]
    assert len(errors) == 1 and "batch_size" in errors[0], errors


def test_route_lookup_by_endpoint_when_the_scope_has_no_route() -> None:
    """Starlette versions before ``scope["route"]`` leave only ``endpoint``: the route is found by it."""
    from starlette.routing import Router

    from peekapi.middleware.routes import ASGIRoutes

    async def items(request: Request) -> Response:
        return Response()

    static = StaticFiles(directory=".", check_dir=False)
    router = Router(
        routes=[
            Route("/users/{user_id}", user),
            Mount("/api/{tenant}", routes=[Route("/items/{x}", items)]),
            Mount("/static", app=static),
        ]
    )
    routes = ASGIRoutes()
    assert routes.template({"router": router, "endpoint": user, "root_path": ""}) == "/users/{user_id}"
    mounted = {"router": router, "endpoint": items, "root_path": "/api/acme", "app_root_path": ""}
    assert routes.template(mounted) == "/api/{tenant}/items/{x}"
    static_scope = {"router": router, "endpoint": static, "root_path": "/static", "app_root_path": ""}
    assert routes.template(static_scope) == "/static/{path:path}"
    assert routes.template({"router": router, "endpoint": boom, "root_path": ""}) is None
    assert routes.template({"router": router, "endpoint": boom, "root_path": ""}) is None  # remembered


def test_a_head_response_has_no_body_on_the_wire(client: Any, delivered: Delivered, tmp_path: Any) -> None:
    # The application produces the GET body; no server sends it for HEAD (RFC 9110, 9.3.2).
    with TestClient(make_app(client, tmp_path)) as http:
        response = http.head("/users/7")
    assert (response.status_code, response.content) == (200, b"")
    event = delivered.one()
    assert (event["method"], event["response_size"], event["route"]) == ("HEAD", 0, "/users/{user_id}")
