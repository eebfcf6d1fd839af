"""WSGI middleware: Flask, Bottle and any PEP 3333 application."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from time import perf_counter
from typing import Any, BinaryIO, cast

from peekapi.client import PeekApiClient

from .capture import Capture, parse_size, resolve_client
from .routes import wsgi_route
from .types import Environ, ExcInfo, StartResponse, WriteCallable, WSGIApp

logger = logging.getLogger("peekapi")

__all__ = ["PeekApiWSGI"]


class PeekApiWSGI:
    """Records every request that passes through a WSGI application.

    Either hand it a client, or options to build one (middleware given equal options share one client)::

        app.wsgi_app = PeekApiWSGI(app.wsgi_app, client=client)      # Flask
        app = PeekApiWSGI(bottle_app, api_key="ak_...", exclude_methods=["OPTIONS"])

    Invalid options raise ``ValueError`` when the middleware is built.

    The response is passed on unchanged and never buffered: the body is counted as the server iterates it (a
    list, the whole body in hand, is counted and recorded as the application returns it), ``close()`` is
    forwarded, a ``wsgi.file_wrapper`` response is returned as the very same object (so the server can still use
    ``sendfile``), ``start_response`` may be called late or again with ``exc_info``, and
    ``write()`` is counted too. An exception from the application is recorded (status 500 unless body bytes
    had gone out) and re-raised unchanged. Nothing of the middleware's own is ever raised into the application.
    Thread-safe: per-request state lives in a per-request object.
    """

    __slots__ = ("_capture", "app", "client")

    def __init__(self, app: WSGIApp, client: PeekApiClient | None = None, **options: object) -> None:
        self.app = app
        self.client = resolve_client(client, options)
        self._capture = Capture(self.client)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        capture = self._capture
        if capture.filters and capture.excluded(environ.get("REQUEST_METHOD", "GET"), path):
            return self.app(environ, start_response)
        # Filled in here rather than by an __init__: on CPython 3.12 calling a class costs more than all of
        # these stores together.
        exchange = _new_exchange(_Exchange)
        exchange.capture = capture
        exchange.environ = environ
        exchange._start_response = start_response
        exchange.path = path
        exchange.status = ""  # until start_response: no valid status (recorded as 500)
        exchange.response_headers = []
        exchange.sent = 0
        exchange.done = False
        exchange.input = None
        exchange.werkzeug_request = None
        if not environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING"):
            # A chunked upload: count the bytes the application actually reads.
            exchange.input = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        exchange.start = perf_counter()
        try:
            result = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.status = ""  # no valid status: recorded as 500
            exchange.finish()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and type(result) is file_wrapper:
            return exchange.watch_file(result)
        if type(result) is list:
            # The whole body is in hand (Bottle's responses, many plain apps'): counted and recorded now, as the
            # application hands it over (as an ASGI response is), and the list itself goes to the server, which
            # iterates it in C. A list has no close() to forward.
            try:
                exchange.sent += sum(map(len, result))
            except Exception:  # not a list of bytes: the server will say so; iterated through the exchange
                pass
            else:
                exchange.finish()
                return result
        # The exchange is the iterable the server gets: it counts the body and forwards close().
        exchange.result = result
        return exchange


class _Exchange:
    """One request/response in flight, and the response iterable handed to the server.

    Iterating it iterates the application's response, counting the bytes; ``close()`` closes the
    application's response and records the request (if the end of the body did not already). Built by
    ``PeekApiWSGI.__call__`` field by field (``object.__new__``, then every slot set).
    """

    __slots__ = (
        "_start_response",
        "_write",
        "capture",
        "done",
        "environ",
        "input",
        "path",
        "response_headers",
        "result",
        "sent",
        "start",
        "status",
        "werkzeug_request",
    )

    # Annotations of the slots. Set by PeekApiWSGI.__call__, which builds every exchange; later, and read only
    # after: result (the application's response, before the server gets this exchange) and _write (by
    # start_response, which returns the method that uses it).
    capture: Capture
    environ: Environ
    _start_response: StartResponse
    path: str
    status: str
    response_headers: list[tuple[str, str]]
    sent: int
    done: bool
    input: _CountingInput | None
    werkzeug_request: object
    start: float
    result: Iterable[bytes]
    _write: WriteCallable

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> WriteCallable:
        write = self._start_response(status, headers, exc_info)
        self.status = status
        self.response_headers = headers
        self._write = write
        # Flask clears this before its wsgi_app returns; it is still there while it starts the response.
        self.werkzeug_request = self.environ.get("werkzeug.request")
        return self.write

    def write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: counted, then passed to the server's (start_response returned it)."""
        self.sent += len(data)
        return self._write(data)

    def watch_file(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """Pass a ``wsgi.file_wrapper`` through untouched; record the request when the server closes it."""
        self.sent += self._file_size(result)
        try:
            cast(Any, result).close = _FileClose(self, getattr(result, "close", None)).close
        except Exception:  # a wrapper that takes no attributes: record now
            self.finish()
        return result

    def _file_size(self, result: object) -> int:
        for name, value in self.response_headers:
            if name.lower() == "content-length":
                return parse_size(value) or 0
        try:
            filelike: BinaryIO = getattr(result, "filelike")  # noqa: B009 - not every wrapper has one
            return max(0, os.fstat(filelike.fileno()).st_size - filelike.tell())
        except Exception:  # not a real file: its size is unknown
            return 0

    def __iter__(self) -> Iterator[bytes]:
        started = False
        try:
            for chunk in self.result:
                self.sent += len(chunk)
                yield chunk
                started = True
        except GeneratorExit:  # the server stopped iterating; close() records the request
            raise
        except BaseException:
            if not started:  # once the headers are out, the status stands
                self.status = ""
            self.finish()
            raise
        self.finish()

    def close(self) -> None:
        """Forwarded to the application's response; then the request is recorded (once)."""
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            # The response may hold our start_response (PEP 3333's own class example does): let go of it, so
            # that reference counting frees the request without waiting for the garbage collector.
            self.result = ()
            if not self.done:  # recorded already at the end of the body, as a rule: spare the call
                self.finish()

    def finish(self) -> None:
        """Record the request, once. Never raises."""
        if self.done:
            return
        end = perf_counter()
        self.done = True
        try:
            capture = self.capture
            environ = self.environ
            path = self.path
            if not path.isascii():  # PEP 3333 strings are the raw bytes as latin-1
                path = path.encode("latin-1").decode("utf-8", "replace")
            if capture.query_string:
                path = capture.with_query(path, environ.get("QUERY_STRING", ""))
            content_length = environ.get("CONTENT_LENGTH")
            request_size = parse_size(content_length) if content_length else None
            if request_size is None:
                request_size = self.input.count if self.input is not None else 0
            capture.client._buffer.record(
                environ.get("REQUEST_METHOD", "GET"),
                path,
                wsgi_route(environ, self.werkzeug_request),
                _STATUS_CODES.get(self.status) or _status_code(self.status),
                (end - self.start) * 1000.0,
                request_size,
                self.sent,
                capture.environ_consumer(environ),
            )
        except Exception:  # never into the app
            logger.exception("peekapi: could not record a WSGI request")


_new_exchange = object.__new__

_STATUS_CODES: dict[str, int] = {}


def _status_code(status: str) -> int:
    """The code of a WSGI status line (``"200 OK"``); 500 when the application never set a valid one.

    Status lines repeat: each distinct one is parsed once (up to a few hundred of them).
    """
    code = _STATUS_CODES.get(status)
    if code is None:
        try:
            code = int(status[:3])
        except ValueError:
            return 500
        if len(_STATUS_CODES) < 512:
            _STATUS_CODES[status] = code
    return code


class _FileClose:
    """Replaces a file wrapper's ``close``: closes the file, then records the request."""

    __slots__ = ("_close", "_exchange")

    def __init__(self, exchange: _Exchange, close: Any) -> None:
        self._exchange = exchange
        self._close = close

    def close(self) -> None:
        try:
            if self._close is not None:
                self._close()
        finally:
            self._exchange.finish()


class _CountingInput:
    """A ``wsgi.input`` stand-in that counts the bytes read through it; everything else is delegated."""

    __slots__ = ("_stream", "count")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size) if size is not None and size >= 0 else self._stream.read()
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size) if size is not None and size >= 0 else self._stream.readline()
        self.count += len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = self._stream.readlines(hint) if hint is not None and hint >= 0 else self._stream.readlines()
        self.count += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.count += len(line)
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
