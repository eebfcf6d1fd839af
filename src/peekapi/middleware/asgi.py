"""ASGI middleware: FastAPI, Starlette, Litestar and any ASGI 3 application."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Iterable
from time import perf_counter

from peekapi.client import PeekApiClient
from peekapi.config import DEFAULT_EXIT_TIMEOUT

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

    Invalid options raise ``ValueError`` when the middleware is built, except when it is built inside a running
    event loop: Starlette's and FastAPI's ``add_middleware`` build it on the server's first call (the lifespan
    startup, or the first request), where a raise would be taken by uvicorn for "lifespan unsupported" and then
    turn every request into a 500. Built there, the middleware fails the lifespan startup with the reason
    (``lifespan.startup.failed``, then the ``ValueError``), so the server stops at start-up; without a lifespan,
    it passes every request through untouched and untracked and logs the reason once (ERROR, ``peekapi`` logger).

    Websocket scopes pass through untouched; lifespan scopes too, except that the client is flushed when the
    application reports its shutdown complete (what is not delivered within 2 s is spooled).

    The middleware never changes, delays or buffers the response, and never raises an error of its own into
    the application: an exception from the application is recorded (status 500 unless the response had
    started) and re-raised unchanged. It keeps no per-request state on itself, so one instance serves any
    number of concurrent requests.
    """

    __slots__ = ("_capture", "_failure", "_failure_logged", "_routes", "app", "client")

    def __init__(self, app: ASGIApp, client: PeekApiClient | None = None, **options: object) -> None:
        self.app = app
        self._routes = ASGIRoutes()
        #: The configuration error, when it is reported at start-up rather than raised (see the class docstring).
        #: ``client`` is then unset.
        self._failure: ValueError | None = None
        self._failure_logged = False
        try:
            self.client = resolve_client(client, options)
        except ValueError as exc:
            if not _in_event_loop():
                raise
            self._failure = exc
            return
        self._capture = Capture(self.client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or self._failure is not None:
            await self._not_recorded(kind, scope, receive, send)
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

    async def _not_recorded(self, kind: str, scope: Scope, receive: Receive, send: Send) -> None:
        """A scope passed on without recording it: lifespan, websocket, or anything while misconfigured."""
        failure = self._failure
        if failure is None:
            if kind == "lifespan":
                await self.app(scope, receive, _LifespanSend(self.client, send).send)
            else:
                await self.app(scope, receive, send)
            return
        if kind == "lifespan":
            # As Starlette's router fails a startup: the server learns why and stops (uvicorn logs the message
            # and exits), and the exception then tells a test client too. The application's own startup never
            # runs.
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": str(failure)})
            raise failure
        if not self._failure_logged:
            self._failure_logged = True
            logger.error("%s; requests pass through untracked until the configuration is fixed", failure)
        await self.app(scope, receive, send)


def _in_event_loop() -> bool:
    """Whether an asyncio event loop runs in this thread: the middleware is built by an app already serving."""
    # Imported here, on a configuration error only: a WSGI application importing peekapi.middleware (which
    # imports this module) does not load asyncio for it (about 1 MB).
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
    """Wraps a lifespan ``send`` to flush the client before the server learns that shutdown is complete.

    What is not delivered within the exit timeout (2 s, or ``shutdown_timeout`` if shorter) is spooled: the
    server may end the process without atexit right after (uvicorn does, after a SIGTERM). The client goes on,
    for a test client that runs the lifespan again.
    """

    __slots__ = ("_send", "client")

    def __init__(self, client: PeekApiClient, send: Send) -> None:
        self.client = client
        self._send = send

    async def send(self, message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            # Blocks the loop (at most the timeout + 1.5 s) while the server waits for this very message.
            self.client._flush_or_spool(min(DEFAULT_EXIT_TIMEOUT, self.client.settings.shutdown_timeout))
        await self._send(message)
