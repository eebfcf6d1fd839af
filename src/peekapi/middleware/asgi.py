"""ASGI middleware: FastAPI, Starlette, Litestar and any ASGI 3 application."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from time import perf_counter

from peekapi.client import PeekApiClient

from .capture import Capture, asgi_header_dict, parse_size, resolve_client
from .routes import ASGIRoutes
from .types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("peekapi")

__all__ = ["PeekApiASGI"]


class PeekApiASGI:
    """Records every HTTP request that passes through an ASGI application.

    Either hand it a client, or options to build one (middleware given equal options share one client)::

        app.add_middleware(PeekApiASGI, client=client)                   # FastAPI, Starlette
        app.add_middleware(PeekApiASGI, api_key="ak_...", exclude_paths=["/health"])
        Litestar(..., middleware=[DefineMiddleware(PeekApiASGI, client=client)])
        app = PeekApiASGI(any_asgi_app, client=client)

    Invalid options raise ``ValueError`` when the middleware is built. Websocket scopes pass through untouched;
    lifespan scopes too, except that the client is flushed when the application reports its shutdown complete.

    The middleware never changes, delays or buffers the response, and never raises an error of its own into
    the application: an exception from the application is recorded (status 500 unless the response had
    started) and re-raised unchanged. It keeps no per-request state on itself, so one instance serves any
    number of concurrent requests.
    """

    __slots__ = ("_capture", "_routes", "app", "client")

    def __init__(self, app: ASGIApp, client: PeekApiClient | None = None, **options: object) -> None:
        self.app = app
        self.client = resolve_client(client, options)
        self._capture = Capture(self.client)
        self._routes = ASGIRoutes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self.app(scope, receive, _LifespanSend(self.client, send).send)
            else:
                await self.app(scope, receive, send)
            return
        capture = self._capture
        if capture.filters and capture.excluded(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        # Filled in here rather than by an __init__: on CPython 3.12 calling a class costs more than all of
        # these stores together (about 800 instructions per request).
        exchange = _new_exchange(_Exchange)
        exchange.middleware = self
        exchange.scope = scope
        exchange._receive = receive
        exchange._send = send
        # Routers may rewrite it as they descend (Litestar, mounts): keep what the client asked for.
        exchange.path = scope["path"]
        exchange.status = 0
        exchange.sent = 0
        exchange.received = 0
        exchange.response_start = None  # its headers are read for a pathsend only
        exchange.done = False
        exchange.start = perf_counter()
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except BaseException:
            if not exchange.done:
                exchange.finish()
            raise
        if not exchange.done:
            exchange.finish()


class _Exchange:
    """One HTTP request/response in flight: counts what goes through ``receive`` and ``send``.

    Built by ``PeekApiASGI.__call__`` field by field (``object.__new__``, then every slot set).
    """

    __slots__ = (
        "_receive",
        "_send",
        "done",
        "middleware",
        "path",
        "received",
        "response_start",
        "scope",
        "sent",
        "start",
        "status",
    )

    # Annotations of the slots (set by PeekApiASGI.__call__, which builds every exchange).
    middleware: PeekApiASGI
    scope: Scope
    _receive: Receive
    _send: Send
    path: str
    status: int
    sent: int
    received: int
    response_start: Message | None
    done: bool
    start: float

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
        return message

    def send(self, message: Message) -> Awaitable[None]:
        # A plain function handing back the server's own awaitable: no coroutine of its own per message. The
        # request is recorded as the application hands its last body byte to the server (the server's
        # writing it to the socket buffer is not waited for); a pathsend, after the server sent the file.
        kind = message["type"]
        if kind == "http.response.body":
            self.sent += len(message.get("body", b""))
            if not message.get("more_body") and not self.done:
                self.finish()
        elif kind == "http.response.start":
            self.status = message["status"]
            self.response_start = message
        elif kind == "http.response.pathsend":
            return self._send_last(message)
        return self._send(message)

    async def _send_last(self, message: Message) -> None:
        await self._send(message)
        # The server sent a whole file: its Content-Length is the body size.
        start = self.response_start
        self.sent = (_content_length(start.get("headers") or ()) if start is not None else None) or 0
        self.finish()

    def finish(self) -> None:
        """Record the request, once: at its last body byte, or when the application returned or raised."""
        end = perf_counter()
        self.done = True
        try:
            middleware = self.middleware
            capture = middleware._capture
            scope = self.scope
            headers = scope.get("headers")
            if type(headers) is not list:
                headers = list(headers or ())
            path = self.path
            request_size = self.received
            # By default the headers are read later, off the request path (see peekapi.event.resolve_compact).
            consumer_id: str | list[tuple[bytes, bytes]] | None = headers
            if not capture.plain:
                if capture.query_string:
                    path = capture.with_query(path, scope.get("query_string", b"").decode("latin-1"))
                if capture.identify is not None:
                    consumer_id = capture.custom_consumer(asgi_header_dict(headers))
                    declared = _content_length(headers)
                    if declared is not None:
                        request_size = declared
            capture.client._buffer.record(
                scope["method"],
                path,
                middleware._routes.template(scope),
                self.status or 500,
                (end - self.start) * 1000.0,
                request_size,
                self.sent,
                consumer_id,
            )
        except Exception:  # never into the app
            logger.exception("peekapi: could not record an ASGI request")


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The valid Content-Length among ``headers``, else None."""
    for name, value in headers:
        if name.lower() == b"content-length":
            return parse_size(value)
    return None


_new_exchange = object.__new__


class _LifespanSend:
    """Wraps a lifespan ``send`` to flush the client before the server learns that shutdown is complete."""

    __slots__ = ("_send", "client")

    def __init__(self, client: PeekApiClient, send: Send) -> None:
        self.client = client
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            # Blocks the loop for at most shutdown_timeout, while the server waits for this very message.
            self.client.flush(self.client.settings.shutdown_timeout)
        await self._send(message)
