"""FastAPI through Starlette's TestClient: routers, prefixes, mounts, dependencies."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi import APIRouter, FastAPI, HTTPException
from starlette.testclient import TestClient

from peekapi.middleware import PeekApiASGI

from .conftest import Delivered


def make_app(client: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    def get_user(user_id: int) -> dict[str, int]:
        if user_id == 0:
            raise HTTPException(status_code=404, detail="no such user")
        return {"id": user_id}

    prefixed = APIRouter(prefix="/own")

    @prefixed.get("/items/{item_id}")
    def own(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    included = APIRouter()

    @included.get("/orders/{order_id}")
    def order(order_id: str, tenant: str) -> dict[str, str]:
        return {"id": order_id, "tenant": tenant}

    nested = APIRouter(prefix="/deep")

    @nested.get("/x/{a}")
    def deep(a: str) -> dict[str, str]:
        return {"a": a}

    included.include_router(nested, prefix="/in")
    app.include_router(prefixed)
    app.include_router(included, prefix="/v2/{tenant}")

    sub = FastAPI()

    @sub.get("/things/{tid}")
    def thing(tid: str) -> dict[str, str]:
        return {"id": tid}

    app.mount("/sub/{region}", sub)
    app.add_middleware(PeekApiASGI, client=client)
    return app


@pytest.mark.parametrize(
    ("path", "status", "route"),
    [
        ("/users/5", 200, "/users/{user_id}"),
        ("/users/0", 404, "/users/{user_id}"),
        ("/users/abc", 422, "/users/{user_id}"),
        ("/own/items/3", 200, "/own/items/{item_id}"),
        ("/v2/acme/orders/9", 200, "/v2/{tenant}/orders/{order_id}"),
        ("/v2/acme/in/deep/x/1", 200, "/v2/{tenant}/in/deep/x/{a}"),
        ("/sub/eu/things/4", 200, "/sub/{region}/things/{tid}"),
        ("/sub/eu/nothing", 404, None),
        ("/missing", 404, None),
    ],
)
def test_route_templates(client: Any, delivered: Delivered, path: str, status: int, route: str | None) -> None:
    with TestClient(make_app(client)) as http:
        response = http.get(path, headers={"Authorization": "Bearer t"})
    assert response.status_code == status
    event = delivered.one()
    assert event.get("route") == route
    assert (event["path"], event["status_code"], event["response_size"]) == (path, status, len(response.content))
    assert event["consumer_id"].startswith("hash_")


def test_one_line_options_form(options: dict[str, Any], ingest: Any) -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    app.add_middleware(PeekApiASGI, **options, exclude_paths=["/docs*", "/openapi.json"])
    with TestClient(app) as http:
        http.get("/ping")
        http.get("/docs")
        http.get("/openapi.json")
    events = ingest.wait_for(1)
    assert [(e["path"], e["route"]) for e in events] == [("/ping", "/ping")]


def test_a_method_not_allowed_on_an_included_route_keeps_its_prefixed_template(
    client: Any, delivered: Delivered
) -> None:
    with TestClient(make_app(client)) as http:
        response = http.post("/v2/acme/orders/9")
    assert response.status_code == 405
    event = delivered.one()
    assert (event["method"], event["status_code"]) == ("POST", 405)
    assert event.get("route") == "/v2/{tenant}/orders/{order_id}"
