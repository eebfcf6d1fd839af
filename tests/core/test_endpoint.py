"""Endpoint safety: HTTPS, credentials, and private addresses in every spelling, at config and connect time."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from peekapi import PeekApiClient
from peekapi.config import resolve_options
from peekapi.endpoint import check_address, literal_address, parse_endpoint
from peekapi.transport import server_reason


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


def test_plain_http_within_a_private_network_when_opted_in() -> None:
    for url in ("http://10.0.0.5:8787/v1/events", "http://collector:8787/v1/events", "http://[fd00::5]/v1/events"):
        with pytest.raises(ValueError, match="allow_private_endpoint=True"):
            parse_endpoint(url)
        endpoint = parse_endpoint(url, allow_private=True)
        check_address(endpoint, "10.1.2.3")  # a host name is checked when it is resolved: private, allowed
        check_address(endpoint, "172.20.0.4")
        with pytest.raises(ConnectionRefusedError, match="refusing plain http"):
            check_address(endpoint, "93.184.216.34")
    for public in ("93.184.216.34", "[64:ff9b:1::5db8:d822]", "[::5db8:d822]", "[::ffff:93.184.216.34]"):
        with pytest.raises(ValueError, match="public address"):  # NAT64, IPv4-compatible, IPv4-mapped spellings too
            parse_endpoint(f"http://{public}/v1/events", allow_private=True)
    with pytest.raises(ConnectionRefusedError, match="refusing plain http"):
        check_address(parse_endpoint("http://collector:8787/v1/events", allow_private=True), "64:ff9b:1::5db8:d822")
    check_address(parse_endpoint("https://ingest.example.com/", allow_private=True), "93.184.216.34")


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
    client = PeekApiClient({**options, "endpoint": "https://rebind.example.com/v1/events"})
    client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
    with caplog.at_level(logging.INFO, logger="peekapi"):
        client.flush(5)  # its answer: whether the event was delivered (it is spooled, checked below)
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


@pytest.mark.parametrize("url", ["http://127.0.0.1:8787", "http://127.0.0.1:8787/", "https://ingest.example.com/?x=1"])
def test_an_endpoint_without_a_path_is_warned_about_at_configuration(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="peekapi"):
        settings = resolve_options({"api_key": "k", "endpoint": url})
    assert settings.endpoint.target.startswith("/")  # a warning, not an error: a proxy may take batches at /
    warnings = [r for r in caplog.records if r.name == "peekapi"]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert "has no path" in warnings[0].getMessage() and "/v1/events" in warnings[0].getMessage()
    assert "x=1" not in warnings[0].getMessage()


def test_an_endpoint_with_a_path_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="peekapi"):
        resolve_options({"api_key": "k", "endpoint": "http://127.0.0.1:8787/v1/events"})
        resolve_options({"api_key": "k", "endpoint": "https://proxy.example.com/peekapi"})
    assert [r for r in caplog.records if r.name == "peekapi"] == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b'{"error":"unknown or revoked api key"}', '"unknown or revoked api key"'),
        (b'{"detail":"Not Found"}', '"Not Found"'),
        (b'{"message": "quota \\"exceeded\\""}', '"quota \\"exceeded\\""'),
        (b'{"error": 42, "message": "m"}', '"m"'),
        (b'{"accepted": 0}', '"{\\"accepted\\": 0}"'),
        (b"Not Found", '"Not Found"'),
        (b"  \r\n", ""),
        (b"", ""),
        (b"line one\nline two\r\x1b[31mred\x1b[0m\x00\x7f", '"line one\\nline two\\r\\x1b[31mred\\x1b[0m\\x00\\x7f"'),
        (b"caf\xc3\xa9 \xff", '"caf\u00e9 \ufffd"'),
        (b"x" * 300, '"' + "x" * 200 + '"...'),
        (b'{"error": "' + b"e" * 300 + b'"}', '"' + "e" * 200 + '"...'),
        ("back\\slash\u2028end".encode(), '"back\\\\slash\\u2028end"'),
    ],
)
def test_a_servers_reason_is_quoted_truncated_and_escaped(answer: bytes, reason: str) -> None:
    assert server_reason(answer) == reason


def test_a_servers_reason_nested_beyond_the_json_parser_is_taken_as_text() -> None:
    reason = server_reason(b"{" + b'"a":[' * 100_000)  # RecursionError in json.loads
    assert reason.startswith('"{\\"a\\":[') and reason.endswith('"...') and len(reason) < 300


class _Answering(BaseHTTPRequestHandler):
    """Answers every POST with the status and body its server was given."""

    server: Any

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_rejection_is_logged_with_the_servers_answer_escaped(
    options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    hostile = b"denied\n2026-01-01 peekapi: forged line \x1b[2J" + b"!" * 500
    server.answer = (403, hostile)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    errors: list[Exception] = []
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/events"
        with caplog.at_level(logging.INFO, logger="peekapi"):
            client = PeekApiClient({**options, "endpoint": endpoint, "on_error": errors.append})
            client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
            client.flush(5)
            client.shutdown(1)
    finally:
        server.shutdown()
        server.server_close()
    rejected = [r.getMessage() for r in caplog.records if r.name == "peekapi" and r.levelname == "ERROR"]
    assert len(rejected) == 1, caplog.text
    assert 'HTTP 403 Forbidden: "denied\\n2026-01-01 peekapi: forged line \\x1b[2J!!!' in rejected[0]
    assert '!"...' in rejected[0] and "\n" not in rejected[0] and "\x1b" not in rejected[0]
    assert len(rejected[0]) < 400
    assert [str(e) for e in errors] == [rejected[0].removeprefix("peekapi: ").removesuffix("; not retried")]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Any]:
    """The real collector (the ``server`` extra) on a loopback port, with a project and its ingest key."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from tests.server.support import start_collector

    collector = start_collector(f"sqlite:///{tmp_path / 'collector.db'}")
    try:
        yield collector
    finally:
        collector.stop()


def _send_one(options: dict[str, Any], caplog: pytest.LogCaptureFixture, **overrides: Any) -> list[str]:
    """Tracks one event with a client built from ``options`` and ``overrides``; the ``peekapi`` log lines."""
    with caplog.at_level(logging.INFO, logger="peekapi"):
        client = PeekApiClient({**options, **overrides})
        client.track({"method": "GET", "path": "/", "status_code": 200, "response_time_ms": 1})
        client.flush(5)
        stats = client.stats()
        client.shutdown(1)
    assert stats["dropped"]["rejected"] == stats["dropped_total"] == 1 and stats["sent"] == 0, stats
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "peekapi"]


def test_the_collector_at_an_endpoint_without_its_path(
    collector: Any, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """``http://host:8787`` as a new user writes it: warned at configuration, then a loud rejection."""
    lines = _send_one(options, caplog, endpoint=collector.url, api_key=collector.key)
    assert len([line for line in lines if line.startswith("WARNING") and "has no path" in line]) == 1, lines
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 1, lines
    # The collector's dashboard owns / (GET only): a POST there is 405; an unknown path would be 404.
    assert 'HTTP 405 Method Not Allowed: "Method Not Allowed"' in errors[0], errors
    assert "nothing takes batches at the path '/': check the 'endpoint' option" in errors[0], errors


def test_the_collector_at_a_wrong_path(
    collector: Any, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    lines = _send_one(options, caplog, endpoint=collector.url + "/v1/event", api_key=collector.key)
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 1, lines
    assert "HTTP 404 Not Found: \"Not Found\"; nothing takes batches at the path '/v1/event'" in errors[0], errors


def test_the_collectors_reason_for_an_unknown_key_is_logged(
    collector: Any, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    lines = _send_one(options, caplog, endpoint=collector.url + "/v1/events", api_key="ak_unknown")
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 1, lines
    assert "rejected by http://127.0.0.1:" in errors[0]
    assert 'HTTP 401 Unauthorized: "unknown or revoked api key"' in errors[0], errors
    assert "ak_unknown" not in "\n".join(lines)
