"""PeekApiWSGI against hand-written WSGI apps and the stdlib's wsgiref: the protocol itself, no framework."""

from __future__ import annotations

import gc
import io
import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest

from peekapi import default_identify_consumer, hash_consumer_id
from peekapi.middleware import PeekApiWSGI
from peekapi.middleware.types import Environ, StartResponse

from .conftest import Delivered, event_fields


def environ_for(path: str = "/", method: str = "GET", body: bytes = b"", **extra: Any) -> Environ:
    environ: Environ = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO(body)}
    if body and "CONTENT_LENGTH" not in extra:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(extra)
    setup_testing_defaults(environ)
    return environ


class Response:
    """What a server saw: status, headers, body; whether close() was called."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.written: list[bytes] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and self.written:
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.written.append


def serve(app: Any, environ: Environ | None = None) -> tuple[Response, Iterable[bytes], bytes]:
    """Call the app like a server: iterate the result, then close it."""
    response = Response()
    result = app(environ or environ_for(), response.start_response)
    try:
        body = b"".join(response.written) + b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return response, result, body


def hello(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello, ", b"world"]


class Boom(Exception):
    pass


def test_records_the_exact_fields(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("201 Created", [])
        return [b"hello, ", b"world"]

    env = environ_for("/users/42", "POST", b"hello", HTTP_X_API_KEY="ak_consumer_1")
    response, _, body = serve(PeekApiWSGI(app, client=client), env)
    assert (response.status, body) == ("201 Created", b"hello, world")
    assert delivered.one() == {
        "method": "POST",
        "path": "/users/42",
        "status_code": 201,
        "request_size": 5,
        "response_size": 12,
        "consumer_id": "ak_consumer_1",
    }


def test_a_list_body_goes_to_the_server_as_it_is_and_is_recorded_whole(client: Any, delivered: Delivered) -> None:
    body = [b"hello, ", b"", b"world"]

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        return body

    response = Response()
    result = PeekApiWSGI(app, client=client)(environ_for("/list"), response.start_response)
    assert result is body  # not wrapped: the server iterates the list itself
    assert delivered.one() == {
        "method": "GET",
        "path": "/list",
        "status_code": 200,
        "request_size": 0,
        "response_size": 12,
        "consumer_id": None,
    }


def test_a_list_of_things_without_a_length_is_left_to_the_server_to_refuse(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[Any]:
        start_response("200 OK", [])
        return [b"fine", 42]

    result = PeekApiWSGI(app, client=client)(environ_for("/bad"), Response().start_response)
    iterator = iter(result)
    assert next(iterator) == b"fine"
    with pytest.raises(TypeError):  # a server fails on it the same way (len() or its own check)
        next(iterator)
    event = delivered.one()
    assert (event["path"], event["status_code"], event["response_size"]) == ("/bad", 200, 4)


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": "Bearer secret-token"},
        {"HTTP_X_API_KEY": "ak_1", "HTTP_AUTHORIZATION": "Bearer secret-token"},
        {"HTTP_X_API_KEY": "", "HTTP_AUTHORIZATION": "Basic dTpw"},
        {"HTTP_AUTHORIZATION": "Bearer caf\xc3\xa9"},  # PEP 3333: the raw bytes as latin-1
        {"HTTP_X_API_KEY": ""},
        {},
    ],
    ids=["authorization", "api-key-first", "empty-api-key", "non-ascii", "empty", "none"],
)
def test_the_default_consumer_is_the_public_rule_applied_to_the_headers(
    client: Any, delivered: Delivered, headers: dict[str, str]
) -> None:
    serve(PeekApiWSGI(hello, client=client), environ_for("/c", **headers))
    expected = default_identify_consumer({k[5:].lower().replace("_", "-"): v for k, v in headers.items()})
    assert delivered.one().get("consumer_id") == expected
    if "HTTP_AUTHORIZATION" in headers and not headers.get("HTTP_X_API_KEY"):
        assert expected == hash_consumer_id(headers["HTTP_AUTHORIZATION"])  # the secret never leaves the app


def test_script_name_is_part_of_the_path_and_utf8_is_decoded(client: Any, delivered: Delivered) -> None:
    raw = "/café".encode().decode("latin-1")  # PEP 3333: the raw bytes as latin-1
    serve(PeekApiWSGI(hello, client=client), environ_for(raw, SCRIPT_NAME="/api"))
    assert delivered.one()["path"] == "/api/café"


def test_close_is_forwarded_even_when_the_body_is_never_iterated(client: Any, delivered: Delivered) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"never read"

        def close(self) -> None:
            closed.append(True)

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return Body()

    result = PeekApiWSGI(app, client=client)(environ_for(), Response().start_response)
    result.close()  # type: ignore[attr-defined]
    assert closed == [True]
    event = delivered.one()
    assert (event["status_code"], event["response_size"]) == (200, 0)


def test_a_response_holding_start_response_is_freed_without_the_garbage_collector(
    client: Any, delivered: Delivered
) -> None:
    # PEP 3333's class-based application keeps the start_response it was given, and the middleware's is a
    # method of its per-request object: once the server closed the response, nothing may keep them alive.
    made: list[weakref.ref[object]] = []

    class Greeting:
        def __init__(self, environ: Environ, start_response: StartResponse) -> None:
            self.start = start_response
            made.append(weakref.ref(self))

        def __iter__(self) -> Iterator[bytes]:
            self.start("200 OK", [("Content-Type", "text/plain")])
            yield b"hello"

    app = PeekApiWSGI(Greeting, client=client)
    gc.disable()
    try:
        response, result, body = serve(app)
        del result
        assert [ref() for ref in made] == [None]
    finally:
        gc.enable()
    assert (response.status, body) == ("200 OK", b"hello")
    assert delivered.one()["response_size"] == 5


def test_a_late_start_response_is_seen(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        yield b""  # nothing sent yet: start_response only comes with the first real chunk
        start_response("202 Accepted", [])
        yield b"later"

    response, _, body = serve(PeekApiWSGI(app, client=client))
    assert (response.status, body) == ("202 Accepted", b"later")
    event = delivered.one()
    assert (event["status_code"], event["response_size"]) == (202, 5)


def test_start_response_again_with_exc_info_replaces_the_status(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])
        try:
            raise Boom("while rendering")
        except Boom:
            start_response("503 Service Unavailable", [], sys.exc_info())
        return [b"sorry"]

    response, _, _ = serve(PeekApiWSGI(app, client=client))
    assert response.status == "503 Service Unavailable"
    assert delivered.one()["status_code"] == 503


def test_write_is_counted(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"legacy ")
        return [b"and iterable"]

    _, _, body = serve(PeekApiWSGI(app, client=client))
    assert body == b"legacy and iterable"
    assert delivered.one()["response_size"] == 19


def test_an_exception_from_the_app_is_500_and_reraised_unchanged(client: Any, delivered: Delivered) -> None:
    error = Boom("boom")

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [])  # headers not sent yet: the server will answer 500
        raise error

    with pytest.raises(Boom) as raised:
        serve(PeekApiWSGI(app, client=client))
    assert raised.value is error
    assert delivered.one()["status_code"] == 500


def test_an_exception_while_streaming_keeps_a_started_status(make_client: Any, delivered: Delivered) -> None:
    c = make_client()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"first"
        if environ["PATH_INFO"] == "/late":
            raise Boom("after the first chunk")
        yield b"second"

    def before_first(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        raise Boom("before any chunk")
        yield b""  # pragma: no cover

    for target, path in ((app, "/late"), (before_first, "/early")):
        with pytest.raises(Boom):
            serve(PeekApiWSGI(target, client=c), environ_for(path))
    events = {e["path"]: (e["status_code"], e["response_size"]) for e in delivered(2, c)}
    assert events == {"/late": (200, 5), "/early": (500, 0)}


def test_a_streaming_body_is_not_buffered(client: Any, delivered: Delivered) -> None:
    produced: list[int] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        for i in range(4):
            produced.append(i)
            yield b"x" * 10

    result = PeekApiWSGI(app, client=client)(environ_for(), Response().start_response)
    iterator = iter(result)
    assert next(iterator) == b"x" * 10
    assert produced == [0]  # one chunk out, one chunk produced
    assert b"".join(iterator) == b"x" * 30
    result.close()  # type: ignore[attr-defined]
    assert delivered.one()["response_size"] == 40


def test_a_chunked_upload_counts_the_bytes_read(client: Any, delivered: Delivered) -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        stream = environ["wsgi.input"]
        stream.read(4)
        stream.readline()
        for _line in stream:
            pass
        start_response("200 OK", [])
        return [b""]

    env = environ_for("/upload", "POST", HTTP_TRANSFER_ENCODING="chunked")
    env["wsgi.input"] = io.BytesIO(b"abcdef\nline two\nline three\n")
    serve(PeekApiWSGI(app, client=client), env)
    assert delivered.one()["request_size"] == 27


def test_a_file_wrapper_is_passed_through_and_counted(client: Any, delivered: Delivered, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"z" * 5000)
    handle = data.open("rb")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](handle, 1024)
        return wrapper

    env = environ_for()
    env["wsgi.file_wrapper"] = FileWrapper
    result = PeekApiWSGI(app, client=client)(env, Response().start_response)
    assert type(result) is FileWrapper  # the server still recognises it (and may use sendfile)
    assert b"".join(result) == b"z" * 5000
    assert not handle.closed
    result.close()  # type: ignore[attr-defined]
    assert handle.closed
    assert delivered.one()["response_size"] == 5000


def test_excluded_requests_are_not_recorded(make_client: Any, delivered: Delivered) -> None:
    c = make_client(exclude_paths=["/health"], exclude_methods=["HEAD"])
    app = PeekApiWSGI(hello, client=c)
    serve(app, environ_for("/health"))
    serve(app, environ_for("/", "HEAD"))
    serve(app, environ_for("/", "GET"))
    assert [e["method"] for e in delivered(1, c)] == ["GET"]


def test_query_string_and_custom_consumer(make_client: Any, delivered: Delivered) -> None:
    seen: list[dict[str, str]] = []

    def identify(headers: dict[str, str]) -> str | None:
        seen.append(headers)
        return headers.get("x-tenant")

    c = make_client(collect_query_string=True, identify_consumer=identify)
    env = environ_for("/s", QUERY_STRING="z=1&a=2", HTTP_X_TENANT="acme", CONTENT_TYPE="text/plain")
    serve(PeekApiWSGI(hello, client=c), env)
    event = event_fields(delivered(1, c)[0])
    assert (event["path"], event["consumer_id"]) == ("/s?a=2&z=1", "acme")
    assert seen[0]["x-tenant"] == "acme" and seen[0]["content-type"] == "text/plain"
    assert "host" in seen[0]


def test_under_a_real_wsgiref_server(client: Any, delivered: Delivered, tmp_path: Path) -> None:
    """wsgiref's own server: keep-alive off, real sockets, its file_wrapper; each request recorded once."""
    import http.client

    data = tmp_path / "f.txt"
    data.write_bytes(b"f" * 3000)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/file":
            start_response("200 OK", [("Content-Length", "3000")])
            wrapper: Iterable[bytes] = environ["wsgi.file_wrapper"](data.open("rb"))
            return wrapper
        return hello(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, PeekApiWSGI(app, client=client), WSGIServer, Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for path in ("/", "/file", "/"):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
            conn.request("GET", path)
            assert conn.getresponse().read()
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    events = sorted((e["path"], e["status_code"], e["response_size"]) for e in delivered(3))
    assert events == [("/", 200, 12), ("/", 200, 12), ("/file", 200, 3000)]


def test_bad_options_fail_when_the_middleware_is_built() -> None:
    with pytest.raises(ValueError, match="api_key"):
        PeekApiWSGI(hello, api_key=" ")
    with pytest.raises(ValueError, match="unknown option"):
        PeekApiWSGI(hello, api_key="k", colect_query_string=True)
