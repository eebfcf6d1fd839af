"""Endpoint safety: HTTPS, credentials, and private addresses in every spelling, at config and connect time."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from peekapi import PeekApiClient
from peekapi.config import resolve_options
from peekapi.endpoint import check_address, literal_address, parse_endpoint


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8787/v1/events",
        "http://127.0.0.1/v1/events",
        "http://[::1]:9000/e",
        "https://ingest.peekapi.dev/v1/events",
        "https://8.8.8.8/v1/events",
        "https://[2001:4860:4860::8888]/e",
    ],
)
def test_allowed_endpoints(url: str) -> None:
    assert parse_endpoint(url).url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://ingest.example.com/", "https"),
        ("file:///etc/passwd", "https"),
        ("gopher://x/", "https"),
        ("http://ingest.example.com/v1/events", "must use https"),
        ("https://user:pass@ingest.example.com/", "credentials"),
        ("https://token@ingest.example.com/", "credentials"),
        ("https:///v1/events", "no host"),
        ("https://ingest.example.com:99999/", "not a valid URL"),
        ("", "non-empty"),
        ("https://exa mple.com/", "whitespace"),
    ],
)
def test_rejected_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.2", "loopback"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("2130706434", "loopback"),  # decimal 127.0.0.2
        ("0x7f000002", "loopback"),  # hex
        ("0177.0.0.2", "loopback"),  # octal
        ("127.2", "loopback"),  # short form
        ("0xa9.254.169.254", "link-local"),
        ("3232235777", "private"),  # 192.168.1.1
        ("0", "unspecified"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[fc00::1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[::]", "unspecified"),
        ("[ff02::1]", "multicast"),
        ("[2002:0a00:0001::1]", "private"),  # 6to4 around 10.0.0.1
        ("[64:ff9b::a00:1]", "private"),  # NAT64 around 10.0.0.1
    ],
)
def test_private_addresses_are_rejected_in_every_spelling(host: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_endpoint(f"https://{host}/v1/events")


def test_private_endpoint_allowed_when_opted_in() -> None:
    assert parse_endpoint("https://10.0.0.5/v1/events", allow_private=True).host == "10.0.0.5"
    s = resolve_options(
        {"api_key": "k", "endpoint": "https://192.168.1.10:8787/v1/events", "allow_private_endpoint": True}
    )
    assert s.endpoint.allow_private


def test_literal_address_reads_resolver_spellings() -> None:
    assert str(literal_address("2130706433")) == "127.0.0.1"
    assert str(literal_address("0x7f.1")) == "127.0.0.1"
    assert literal_address("ingest.example.com") is None
    assert literal_address("deadbeef.example") is None


def test_connect_time_check_refuses_private_resolutions() -> None:
    endpoint = parse_endpoint("https://ingest.example.com/v1/events")
    check_address(endpoint, "93.184.216.34")
    for address in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "::ffff:192.168.0.1", "fd00::5"):
        with pytest.raises(ConnectionRefusedError, match="refusing"):
            check_address(endpoint, address)
    check_address(parse_endpoint("https://ingest.example.com/", allow_private=True), "10.1.2.3")


def test_a_host_name_resolving_to_a_private_address_is_never_contacted(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # DNS cannot run here: the resolver's answer is the one fake; the connection attempt is real.
    real = socket.getaddrinfo
    contacted: list[Any] = []

    def fake_getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 443))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    original_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda self, addr: contacted.append(addr) or original_connect(self, addr)
    )
    # The fake resolver lives in this process: deliver from it (the check is the same code in both modes).
    client = PeekApiClient({**options, "endpoint": "https://rebind.example.com/v1/events", "delivery": "thread"})
    client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
    with caplog.at_level(logging.INFO, logger="peekapi"):
        assert client.flush(5)
    assert contacted == []
    assert "private address" in caplog.text
    assert client.stats()["spooled"] == 1
    client.shutdown(1)


def test_api_key_never_appears_in_logs_or_errors(options: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    secret = "ak_live_SECRET_do_not_log"
    errors: list[Exception] = []
    with caplog.at_level(logging.DEBUG, logger="peekapi"):
        client = PeekApiClient(
            {**options, "api_key": secret, "debug": True, "endpoint": "http://127.0.0.1:9/e", "on_error": errors.append}
        )
        client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
        client.flush(5)
        client.shutdown(1)
    assert errors
    assert secret not in caplog.text
    assert all(secret not in str(e) for e in errors)
    assert secret not in repr(client.settings)
