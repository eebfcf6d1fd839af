"""PeekApiASGI against hand-written ASGI apps: the protocol itself, no framework."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest

from peekapi.middleware import PeekApiASGI
from peekapi.middleware.types import Message, Receive, Scope, Send

from .asgi_driver import Call, http_scope, run
from .conftest import Delivered, event_fields


def responder(status: int = 200, chunks: tuple[bytes, ...] = (b"hello, world",), read_body: bool = True) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if read_body:
            more = True
            while more:
                message = await receive()
                more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


class Boom(Exception):
    pass


def test_records_the_exact_fields(client: Any, delivered: Delivered) -> None:
    app = PeekApiASGI(responder(201, (b"hello, ", b"world")), client=client)
    headers = [(b"host", b"x"), (b"content-length", b"5"), (b"x-api-key", b"ak_consumer_1")]
    call = run(app, http_scope("/users/42", "POST", headers), Call([b"he", b"llo"]))
    assert [m["type"] for m in call.sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert delivered.one() == {
        "method": "POST",
        "path": "/users/42",
        "status_code": 201,
        "request_size": 5,
        "response_size": 12,
        "consumer_id": "ak_consumer_1",
    }


def test_authorization_is_hashed(client: Any, delivered: Delivered) -> None:
    app = PeekApiASGI(responder(), client=client)
    run(app, http_scope(headers=[(b"authorization", b"Bearer secret-token")]))
    expected = "hash_" + hashlib.sha256(b"Bearer secret-token").hexdigest()[:12]
    assert delivered.one()["consumer_id"] == expected


def test_an_exception_before_the_response_is_500_and_reraised_unchanged(client: Any, delivered: Delivered) -> None:
    error = Boom("boom")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise error

    with pytest.raises(Boom) as raised:
        run(PeekApiASGI(app, client=client), http_scope("/boom"))
    assert raised.value is error
    event = delivered.one()
    assert (event["status_code"], event["response_size"]) == (500, 0)


def test_an_exception_after_the_response_started_keeps_its_status(client: Any, delivered: Delivered) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise Boom("late")

    with pytest.raises(Boom):
        run(PeekApiASGI(app, client=client), http_scope())
    event = delivered.one()
    assert (event["status_code"], event["response_size"]) == (200, 7)


def test_an_app_that_returns_without_responding_is_500(client: Any, delivered: Delivered) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    run(PeekApiASGI(app, client=client), http_scope())
    assert delivered.one()["status_code"] == 500


def test_a_chunked_upload_counts_the_bytes_read(client: Any, delivered: Delivered) -> None:
    app = PeekApiASGI(responder(), client=client)
    run(app, http_scope(method="PUT", headers=[(b"transfer-encoding", b"chunked")]), Call([b"x" * 10] * 3))
    assert delivered.one()["request_size"] == 30


def test_a_streaming_body_is_passed_on_at_once_and_counted(client: Any, delivered: Delivered) -> None:
    forwarded: list[int] = []
    call = Call()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(5):
            await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
            forwarded.append(len(call.sent))  # the server already has the chunk: nothing is held back
        await send({"type": "http.response.body", "body": b""})

    run(PeekApiASGI(app, client=client), http_scope(), call)
    assert forwarded == [2, 3, 4, 5, 6]
    assert delivered.one()["response_size"] == 500


def test_the_messages_reach_the_server_unchanged(client: Any, delivered: Delivered) -> None:
    start = {"type": "http.response.start", "status": 404, "headers": [(b"x-a", b"1")], "trailers": False}
    body = {"type": "http.response.body", "body": b"nope"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start)
        await send(body)

    call = run(PeekApiASGI(app, client=client), http_scope())
    assert call.sent[0] is start and call.sent[1] is body
    assert call.sent == [
        {"type": "http.response.start", "status": 404, "headers": [(b"x-a", b"1")], "trailers": False},
        {"type": "http.response.body", "body": b"nope"},
    ]
    delivered(1)


def test_response_time_runs_to_the_last_body_byte(client: Any, delivered: Delivered) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(0.3)  # background work after the response does not count

    run(PeekApiASGI(app, client=client), http_scope())
    elapsed = delivered(1)[0]["response_time_ms"]
    assert 45 <= elapsed < 300


@pytest.mark.parametrize(
    ("headers", "size"),
    [([(b"content-type", b"text/plain"), (b"content-length", b"1234")], 1234), (None, 0)],
    ids=["content-length", "headers-none"],
)
def test_pathsend_counts_the_files_content_length(
    client: Any, delivered: Delivered, headers: list[tuple[bytes, bytes]] | None, size: int
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": "/some/file"})

    run(PeekApiASGI(app, client=client), http_scope(extensions={"http.response.pathsend": {}}))
    assert delivered.one()["response_size"] == size


def test_query_string_is_sorted_when_collected(make_client: Any, delivered: Delivered) -> None:
    c = make_client(collect_query_string=True)
    app = PeekApiASGI(responder(), client=c)
    run(app, http_scope("/search", query_string=b"q=x&b=2&a=1"))
    run(app, http_scope("/plain"))
    paths = sorted(e["path"] for e in delivered(2, c))
    assert paths == ["/plain", "/search?a=1&b=2&q=x"]


def test_query_string_is_left_out_by_default(client: Any, delivered: Delivered) -> None:
    run(PeekApiASGI(responder(), client=client), http_scope("/search", query_string=b"token=secret"))
    assert delivered.one()["path"] == "/search"


def test_excluded_paths_and_methods_are_not_recorded(make_client: Any, delivered: Delivered) -> None:
    c = make_client(exclude_paths=["/health", "/internal/*"], exclude_methods=["options"])
    app = PeekApiASGI(responder(), client=c)
    for path, method in [("/health", "GET"), ("/internal/metrics", "GET"), ("/users", "OPTIONS")]:
        call = run(app, http_scope(path, method))
        assert call.sent[0]["status"] == 200  # still served
    run(app, http_scope("/healthz"))
    assert [e["path"] for e in delivered(1, c)] == ["/healthz"]


def test_a_custom_identify_consumer_sees_lower_cased_headers(make_client: Any, delivered: Delivered) -> None:
    seen: list[dict[str, str]] = []

    def identify(headers: dict[str, str]) -> str | None:
        seen.append(headers)
        return "tenant-" + headers["x-tenant"]

    c = make_client(identify_consumer=identify)
    headers = [(b"x-tenant", b"acme"), (b"accept", b"a"), (b"accept", b"b")]
    run(PeekApiASGI(responder(), client=c), http_scope(headers=headers))
    assert event_fields(delivered(1, c)[0])["consumer_id"] == "tenant-acme"
    assert seen == [{"x-tenant": "acme", "accept": "a, b"}]


def test_a_raising_identify_consumer_loses_only_the_consumer_id(make_client: Any, delivered: Delivered) -> None:
    def identify(headers: dict[str, str]) -> str | None:
        raise KeyError("nope")

    c = make_client(identify_consumer=identify)
    call = run(PeekApiASGI(responder(), client=c), http_scope(headers=[(b"x-api-key", b"k")]))
    assert call.sent[0]["status"] == 200
    assert event_fields(delivered(1, c)[0])["consumer_id"] is None


def test_websocket_scopes_pass_through_untouched(client: Any, delivered: Delivered) -> None:
    received: list[tuple[Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append((receive, send))

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    asyncio.run(PeekApiASGI(app, client=client)({"type": "websocket", "path": "/ws"}, receive, send))
    assert received == [(receive, send)]
    assert received[0][0] is receive and received[0][1] is send
    delivered(0)


def test_the_client_is_flushed_before_lifespan_shutdown_completes(make_client: Any, ingest: Any) -> None:
    c = make_client(flush_interval=3600.0)  # nothing leaves on a timer: only a flush sends
    seen_at_shutdown: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await responder(read_body=False)(scope, receive, send)

    middleware = PeekApiASGI(app, client=c)
    run(middleware, http_scope("/before-shutdown"))
    incoming: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete":
            seen_at_shutdown.append(len(ingest.events()))
        sent.append(message)

    asyncio.run(middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert seen_at_shutdown == [1]


def test_concurrent_requests_are_recorded_separately(client: Any, delivered: Delivered) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": int(scope["path"][1:]), "headers": []})
        await asyncio.sleep(0.01 * (scope["path"] == "/201"))
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    middleware = PeekApiASGI(app, client=client)

    async def both() -> None:
        await asyncio.gather(*(middleware(http_scope(f"/{s}"), Call().receive, Call().send) for s in (200, 201, 202)))

    asyncio.run(both())
    events = sorted((e["path"], e["status_code"], e["response_size"]) for e in delivered(3))
    assert events == [("/200", 200, 4), ("/201", 201, 4), ("/202", 202, 4)]


def test_options_form_builds_one_shared_client(options: dict[str, Any], delivered: Delivered) -> None:
    first = PeekApiASGI(responder(), **options)
    second = PeekApiASGI(responder(), **options)
    try:
        assert first.client is second.client
        run(first, http_scope("/one"))
        run(second, http_scope("/two"))
        assert sorted(e["path"] for e in delivered(2, first.client)) == ["/one", "/two"]
    finally:
        first.client.shutdown(timeout=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": "k", "flush_intervall": 1}, "unknown option"),
        ({"api_key": "k", "batch_size": 0}, "batch_size"),
        ({"api_key": "k", "endpoint": "http://10.0.0.1/v1/events"}, "endpoint"),
        ({"api_key": "k", "exclude_paths": "/health"}, "exclude_paths"),
    ],
)
def test_bad_options_fail_when_the_middleware_is_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PeekApiASGI(responder(), **kwargs)


async def _built_in_a_running_loop(**options: Any) -> PeekApiASGI:
    """As Starlette's add_middleware builds it: inside the server's first call, on the event loop."""
    return PeekApiASGI(responder(), **options)


def test_bad_options_built_in_a_running_loop_fail_the_lifespan_startup() -> None:
    middleware = asyncio.run(_built_in_a_running_loop(api_key="k", flush_intervall=1))
    app_called = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        app_called.append(scope["type"])

    middleware.app = app
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    with pytest.raises(ValueError, match="unknown option"):
        asyncio.run(middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    assert sent == [{"type": "lifespan.startup.failed", "message": sent[0]["message"]}]
    assert "unknown option(s) 'flush_intervall'" in sent[0]["message"]
    assert app_called == []  # the application's own startup never ran


def test_bad_options_built_in_a_running_loop_pass_requests_through_and_log_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    middleware = asyncio.run(_built_in_a_running_loop(api_key=""))
    calls = [run(middleware, http_scope(f"/{i}"), Call([b"body"])) for i in range(3)]
    for call in calls:  # exactly what the app sent, untouched
        assert call.sent == [
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]},
            {"type": "http.response.body", "body": b"hello, world", "more_body": False},
        ]
    errors = [r for r in caplog.records if r.name == "peekapi" and r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "'api_key' is required" in errors[0].getMessage()
    assert "pass through untracked" in errors[0].getMessage()
    # A websocket scope passes too, without a second line.
    run(middleware, {"type": "websocket", "path": "/ws"})
    assert len([r for r in caplog.records if r.name == "peekapi"]) == 1


def test_client_and_options_together_are_refused(client: Any) -> None:
    with pytest.raises(ValueError, match="either client= or options"):
        PeekApiASGI(responder(), client=client, api_key="k")
    with pytest.raises(ValueError, match="PeekApiClient"):
        PeekApiASGI(responder(), client="ak_123")  # type: ignore[arg-type]


def test_middleware_overhead_is_small(client: Any) -> None:
    """A smoke check that nothing slow runs per request (the benchmark measures it properly)."""
    app = responder(read_body=False)
    wrapped = PeekApiASGI(app, client=client)

    async def loop(target: Any, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await target(http_scope(), Call().receive, Call().send)
        return (time.perf_counter() - start) / n

    async def measure() -> tuple[float, float]:
        await loop(wrapped, 200)
        return min([await loop(app, 500) for _ in range(3)]), min([await loop(wrapped, 500) for _ in range(3)])

    bare, with_peekapi = asyncio.run(measure())
    assert with_peekapi - bare < 100e-6


def test_many_headers_are_read_as_well_as_few(client: Any, delivered: Delivered) -> None:
    headers = [(f"x-h{i}".encode(), b"v") for i in range(12)]
    headers += [(b"content-length", b"3"), (b"authorization", b"Basic x"), (b"x-api-key", b"many")]
    run(PeekApiASGI(responder(), client=client), http_scope(method="POST", headers=headers), Call([b"abc"]))
    event = delivered.one()
    assert (event["request_size"], event["consumer_id"]) == (3, "many")
