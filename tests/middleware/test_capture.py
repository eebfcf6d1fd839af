"""The shared capture core: which client a middleware uses, query strings, exclusions, headers."""

from __future__ import annotations

from typing import Any

import pytest

from peekapi import PeekApiClient
from peekapi.middleware.capture import Capture, asgi_header_dict, environ_header_dict, parse_size, resolve_client


def test_equal_options_share_a_client_and_different_ones_do_not(options: dict[str, Any]) -> None:
    first = resolve_client(None, dict(options, exclude_paths=["/a"]))
    try:
        assert resolve_client(None, dict(options, exclude_paths=["/a"])) is first
        other = resolve_client(None, dict(options, exclude_paths=["/b"]))
        try:
            assert other is not first
        finally:
            other.shutdown(timeout=5)
    finally:
        first.shutdown(timeout=5)


def test_a_shared_client_that_was_shut_down_is_replaced(options: dict[str, Any]) -> None:
    first = resolve_client(None, options)
    first.shutdown(timeout=5)
    second = resolve_client(None, options)
    try:
        assert second is not first
        assert resolve_client(None, options) is second
    finally:
        second.shutdown(timeout=5)


def test_options_from_a_different_environment_get_their_own_client(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = {k: v for k, v in options.items() if k != "api_key"}
    monkeypatch.setenv("PEEKAPI_API_KEY", "ak_one")
    first = resolve_client(None, bare)
    monkeypatch.setenv("PEEKAPI_API_KEY", "ak_two")
    second = resolve_client(None, bare)
    try:
        assert (first.settings.api_key, second.settings.api_key) == ("ak_one", "ak_two")
    finally:
        first.shutdown(timeout=5)
        second.shutdown(timeout=5)


def test_a_given_client_is_used_as_is(client: PeekApiClient) -> None:
    assert resolve_client(client, {}) is client


@pytest.mark.parametrize(
    ("query", "expected"),
    [("", "/p"), ("b=2&a=1", "/p?a=1&b=2"), ("a=1&&b=", "/p?a=1&b="), ("x", "/p?x")],
)
def test_with_query(query: str, expected: str) -> None:
    assert Capture.with_query("/p", query) == expected


def test_exclusions(make_client: Any) -> None:
    capture = Capture(make_client(exclude_paths=["/health", "/admin/*"], exclude_methods=["options", "HEAD"]))
    assert capture.filters
    assert capture.excluded("GET", "/health") and capture.excluded("GET", "/admin/users")
    assert capture.excluded("options", "/x") and capture.excluded("HEAD", "/x")
    assert not capture.excluded("GET", "/healthz") and not capture.excluded("GET", "/admins")
    assert not Capture(make_client()).filters


def test_header_dicts() -> None:
    assert asgi_header_dict([(b"X-A", b"1"), (b"x-a", b"2"), (b"b", b"\xe9")]) == {"x-a": "1, 2", "b": "é"}
    environ = {"HTTP_X_API_KEY": "k", "CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "", "PATH_INFO": "/"}
    assert environ_header_dict(environ) == {"x-api-key": "k", "content-type": "text/plain"}


@pytest.mark.parametrize(("raw", "size"), [(None, None), ("", None), ("12", 12), (b"7", 7), ("-1", None), ("x", None)])
def test_parse_size(raw: Any, size: int | None) -> None:
    assert parse_size(raw) == size
