"""The SDK snippet's endpoint is checked as the SDK checks it: extra options where needed, a warning where the SDK
cannot send at all; and the code shown for a local collector is accepted by the SDK as it is."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from peekapi import PeekApiClient
from peekapi_server.dashboard.snippet import snippet_for


def request_to(scheme: str, host: str, port: int) -> Request:
    return Request({"type": "http", "scheme": scheme, "server": (host, port), "path": "/projects", "headers": []})


@pytest.mark.parametrize(
    ("scheme", "host", "port", "kwargs", "warned"),
    [
        ("http", "127.0.0.1", 8787, "", False),
        ("https", "peek.example.com", 443, "", False),
        ("https", "10.0.0.5", 443, ", allow_private_endpoint=True", False),
        ("http", "10.0.0.5", 8787, ", allow_private_endpoint=True", False),
        ("http", "peek.internal", 8787, ", allow_private_endpoint=True", True),  # only while it resolves privately
        ("http", "93.184.216.34", 80, "", True),
    ],
)
def test_the_snippet_says_what_the_sdk_needs(scheme: str, host: str, port: int, kwargs: str, warned: bool) -> None:
    s = snippet_for(request_to(scheme, host, port))
    assert s.endpoint.startswith(f"{scheme}://{host}") and s.endpoint.endswith("/v1/events")
    assert s.kwargs == kwargs
    assert (s.settings != "") == (kwargs != "")
    assert (s.warning is not None) == warned
    if warned:
        assert s.warning is not None and "https" in s.warning.lower()
    if kwargs:  # what the snippet shows configures a client
        client = PeekApiClient(
            {"api_key": "ak_live_test", "endpoint": s.endpoint, "allow_private_endpoint": True, "handle_signals": False}
        )
        client.shutdown(0.5)


def test_the_local_snippet_configures_a_client() -> None:
    s = snippet_for(request_to("http", "127.0.0.1", 8787))
    client = PeekApiClient({"api_key": "ak_live_test", "endpoint": s.endpoint, "handle_signals": False})
    client.shutdown(0.5)
