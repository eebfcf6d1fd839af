"""Django through its own test Client (WSGI handler) and AsyncClient (ASGI handler)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings

import django_project.settings as example  # examples/ is on sys.path (conftest)
from peekapi.middleware.capture import resolve_client
from peekapi.middleware.django import PeekApiMiddleware

from .conftest import Delivered

if not settings.configured:
    settings.configure(**{name: getattr(example, name) for name in dir(example) if name.isupper()})
    django.setup()

VIEWS = Path(__file__).resolve().parents[2] / "examples" / "django_project" / "views.py"


@pytest.fixture
def http(client: Any) -> Any:
    with override_settings(PEEKAPI=client):
        yield Client(raise_request_exception=False)


@pytest.fixture
def ahttp(client: Any) -> Any:
    with override_settings(PEEKAPI=client):
        yield AsyncClient(raise_request_exception=False)


def consume(response: Any) -> bytes:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    response.close()
    return body


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/v1/users/3", 200, "v1/users/<int:uid>"),
        ("GET", "/v1/orders/4", 200, "v1/orders/<int:oid>"),
        ("GET", "/v1/users/x", 404, None),
        ("GET", "/boom", 500, "boom"),
        ("GET", "/stream", 200, "stream"),
        ("GET", "/file", 200, "file"),
    ],
)
def test_sync_handler(http: Any, delivered: Delivered, method: str, path: str, status: int, route: str | None) -> None:
    response = http.generic(method, path, HTTP_X_API_KEY="consumer")
    body = consume(response)
    assert response.status_code == status
    expected = {
        "method": method,
        "path": path,
        "status_code": status,
        "request_size": 0,
        "response_size": len(body),
        "consumer_id": "consumer",
    }
    if route is not None:
        expected["route"] = route
    assert delivered.one() == expected


@pytest.mark.parametrize(
    ("path", "status", "route"),
    [
        ("/v1/orders/4", 200, "v1/orders/<int:oid>"),
        ("/v1/users/3", 200, "v1/users/<int:uid>"),
        ("/astream", 200, "astream"),
        ("/stream", 200, "stream"),
        ("/nowhere", 404, None),
    ],
)
def test_async_handler(ahttp: Any, delivered: Delivered, path: str, status: int, route: str | None) -> None:
    async def go() -> tuple[Any, bytes]:
        response = await ahttp.get(path, headers={"Authorization": "Bearer abc"})
        if response.streaming and response.is_async:
            body = b"".join([chunk async for chunk in response.streaming_content])
        elif response.streaming:
            body = b"".join(response.streaming_content)
        else:
            body = response.content
        return response, body

    response, body = asyncio.run(go())
    assert response.status_code == status
    event = delivered.one()
    assert event.get("route") == route
    assert (event["path"], event["status_code"], event["response_size"]) == (path, status, len(body))
    assert event["consumer_id"].startswith("hash_")


def test_async_mode_needs_no_thread_hop(ahttp: Any, delivered: Delivered, caplog: Any) -> None:
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        asyncio.run(ahttp.get("/v1/orders/1"))
    adapted = [r.getMessage() for r in caplog.records if "adapted for middleware" in r.getMessage()]
    assert not [m for m in adapted if "PeekApiMiddleware" in m], adapted
    delivered(1)


def test_post_body_and_file_response_size(http: Any, delivered: Delivered) -> None:
    consume(http.post("/echo", data=b"z" * 64, content_type="application/octet-stream"))
    consume(http.get("/file"))
    events = {e["path"]: e for e in delivered(2)}
    assert events["/echo"]["request_size"] == 64
    assert events["/file"]["response_size"] == VIEWS.stat().st_size


def test_excluded_paths_from_settings(make_client: Any, delivered: Delivered) -> None:
    c = make_client(exclude_paths=["/health"])
    with override_settings(PEEKAPI=c):
        http = Client()
        consume(http.get("/health"))
        consume(http.get("/v1/users/1"))
    assert [e["path"] for e in delivered(1, c)] == ["/v1/users/1"]


def test_a_dict_of_options_in_settings(options: dict[str, Any], ingest: Any) -> None:
    with override_settings(PEEKAPI=options):
        consume(Client().get("/v1/users/9"))
        consume(Client().get("/v1/users/10"))  # a second handler: the same shared client
    shared = resolve_client(None, options)
    try:
        assert shared.flush(10)
        assert sorted(e["path"] for e in ingest.wait_for(2)) == ["/v1/users/10", "/v1/users/9"]
    finally:
        shared.shutdown(5)


def get_response(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"api_key": "k", "batch_size": 0}, "batch_size"),
        ({"api_key": "k", "no_such_option": 1}, "unknown option"),
        ("ak_123", "must be a dict"),
    ],
)
def test_bad_settings_fail_at_start_up(value: Any, message: str) -> None:
    with override_settings(PEEKAPI=value), pytest.raises(ImproperlyConfigured, match=message):
        PeekApiMiddleware(get_response)


def test_without_settings_and_without_an_api_key_start_up_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEEKAPI_API_KEY", raising=False)
    with override_settings(), pytest.raises(ImproperlyConfigured, match=r"'api_key' is required.*settings\.PEEKAPI"):
        del settings.PEEKAPI
        PeekApiMiddleware(get_response)


def test_without_settings_the_environment_configures_the_client(
    monkeypatch: pytest.MonkeyPatch, ingest: Any, tmp_path: Path
) -> None:
    monkeypatch.setenv("PEEKAPI_API_KEY", "ak_from_env")
    monkeypatch.setenv("PEEKAPI_ENDPOINT", ingest.url)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with override_settings():
        del settings.PEEKAPI
        middleware = PeekApiMiddleware(get_response)
    client = middleware.client
    try:
        assert client.settings.api_key == "ak_from_env" and client.settings.endpoint.url == ingest.url
    finally:
        client.shutdown(5)
