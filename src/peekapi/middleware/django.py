"""Django middleware, configured from ``settings.PEEKAPI``; sync and async capable.

Django is imported only when the middleware is built, so this module imports without Django installed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import fields
from time import perf_counter
from typing import TYPE_CHECKING, Any

from peekapi.client import PeekApiClient
from peekapi.config import Options

from .capture import Capture, parse_size, resolve_client

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django.http.response import HttpResponseBase

logger = logging.getLogger("peekapi")

__all__ = ["PeekApiMiddleware"]

GetResponse = Callable[["HttpRequest"], "HttpResponseBase"]
AsyncGetResponse = Callable[["HttpRequest"], Awaitable["HttpResponseBase"]]


class PeekApiMiddleware:
    """Records every request Django handles. Put it first in ``MIDDLEWARE``::

        PEEKAPI = {"api_key": "ak_...", "exclude_paths": ["/health"]}
        MIDDLEWARE = ["peekapi.middleware.django.PeekApiMiddleware", ...]

    ``settings.PEEKAPI`` is a dict of options (or an ``Options``, or a ``PeekApiClient``); without it, the
    environment's ``PEEKAPI_API_KEY`` and ``PEEKAPI_ENDPOINT`` and the defaults apply. Middleware built from
    equal settings share one client. An invalid ``PEEKAPI`` (or no api key at all) raises
    ``ImproperlyConfigured`` with the reason when Django loads its middleware, at start-up.

    Under ASGI the middleware runs in async mode on the event loop (no thread hop). The request is recorded
    when Django closes the response, after the last body byte went out; ``route`` is the matched URL pattern
    (``users/<int:uid>``). The response is never changed: streaming bodies are counted as they pass, and a
    ``FileResponse`` served through ``wsgi.file_wrapper`` keeps it (its size is its Content-Length).
    Nothing of the middleware's own is raised into Django. Thread-safe.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.client = _client_from_settings()
        self._capture = Capture(self.client)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        capture = self._capture
        if capture.filters and capture.excluded(request.method or "GET", request.path):
            return self.get_response(request)
        start = perf_counter()
        try:
            response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        except BaseException:
            _Exchange(capture, request, start).record(500)
            raise
        _Exchange(capture, request, start).watch(response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        capture = self._capture
        get_response: AsyncGetResponse = self.get_response  # type: ignore[assignment]
        if capture.filters and capture.excluded(request.method or "GET", request.path):
            return await get_response(request)
        start = perf_counter()
        try:
            response = await get_response(request)
        except BaseException:
            _Exchange(capture, request, start).record(500)
            raise
        _Exchange(capture, request, start).watch(response)
        return response


def _client_from_settings() -> PeekApiClient:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    config = getattr(settings, "PEEKAPI", None)
    if config is None:  # the options' defaults, the api key and endpoint from PEEKAPI_API_KEY / PEEKAPI_ENDPOINT
        try:
            return resolve_client(None, {})
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{exc}; or set settings.PEEKAPI to a dict of peekapi options, e.g. PEEKAPI = {{'api_key': 'ak_...'}}"
            ) from exc
    if isinstance(config, PeekApiClient):
        return config
    if isinstance(config, Options):
        config = {f.name: getattr(config, f.name) for f in fields(config)}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(
            f"peekapi: settings.PEEKAPI must be a dict of peekapi options, not {type(config).__name__}"
        )
    try:
        return resolve_client(None, config)
    except ValueError as exc:
        raise ImproperlyConfigured(f"settings.PEEKAPI: {exc}") from exc


class _Exchange:
    """One request: records it when Django closes the response (or at once when the view raised)."""

    __slots__ = ("_close", "capture", "request", "response", "sent", "start")

    def __init__(self, capture: Capture, request: HttpRequest, start: float) -> None:
        self.capture = capture
        self.request = request
        self.start = start
        self.sent = -1  # unknown until the body is measured
        self.response: HttpResponseBase | None = None
        self._close: Callable[[], None] | None = None

    def watch(self, response: HttpResponseBase) -> None:
        """Count a streaming body as it passes and record the request when the response is closed."""
        try:
            self.response = response
            if response.streaming:
                self.sent = 0
                if getattr(response, "file_to_stream", None) is not None:
                    # A FileResponse: under WSGI Django hands the file itself to wsgi.file_wrapper (sendfile),
                    # bypassing streaming_content, so its size is its Content-Length.
                    size = parse_size(response.get("Content-Length"))
                    if size is not None or self.request.META.get("wsgi.file_wrapper") is not None:
                        self.sent = size or 0
                    else:
                        self._count_stream(response)
                else:
                    self._count_stream(response)
            self._close = response.close
            response.close = self.close  # type: ignore[method-assign]
        except Exception:
            logger.exception("peekapi: could not watch a Django response")

    def _count_stream(self, response: Any) -> None:
        if getattr(response, "is_async", False):
            response.streaming_content = self._count_async(response.streaming_content)
        else:
            response.streaming_content = self._count_sync(response.streaming_content)

    def _count_sync(self, content: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in content:
            self.sent += len(chunk)
            yield chunk

    async def _count_async(self, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in content:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        """Stands in for ``response.close``: closes the response, then records the request."""
        try:
            if self._close is not None:
                self._close()
        finally:
            response = self.response
            if response is not None:
                self.response = None
                try:
                    if self.sent < 0:
                        self.sent = len(response.content)  # type: ignore[attr-defined]
                    self.record(response.status_code)
                except Exception:
                    logger.exception("peekapi: could not record a Django request")

    def record(self, status: int) -> None:
        """Hand the request's event to the client. Never raises."""
        end = perf_counter()
        try:
            capture = self.capture
            request = self.request
            meta = request.META
            path = request.path
            if capture.query_string:
                path = capture.with_query(path, meta.get("QUERY_STRING", ""))
            match = request.resolver_match
            route = match.route if match is not None else None
            capture.client._buffer.record(
                request.method or "GET",
                path,
                route or None,
                status,
                (end - self.start) * 1000.0,
                parse_size(meta.get("CONTENT_LENGTH")) or 0,
                max(self.sent, 0),
                capture.environ_consumer(meta),
            )
        except Exception:
            logger.exception("peekapi: could not record a Django request")
