"""The capture core shared by the ASGI, WSGI and Django middleware.

Written once here: which client a middleware reports to, exclusions, the query-string option, reading the
headers that identify the consumer and parsing the request size. The event itself is built where it is
appended, by ``EventBuffer.record`` (one call per request). The protocol modules only know where their
framework keeps each piece.

Everything on the request path is cheap and never raises into the application.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from peekapi.client import PeekApiClient
from peekapi.config import ENV_VARIABLES
from peekapi.consumer import identify_consumer

logger = logging.getLogger("peekapi")

__all__ = ["Capture", "asgi_header_dict", "environ_header_dict", "parse_size", "resolve_client"]

# Clients built by middleware from options (``PeekApiASGI(app, api_key=...)``), one per distinct set of options.
# Frameworks may construct a middleware many times (Litestar once per route handler, Django once per handler,
# test clients once per client): they must all feed one client, not start a worker thread each.
_shared_clients: dict[Hashable, PeekApiClient] = {}
_shared_lock = threading.Lock()


def resolve_client(client: PeekApiClient | None, options: Mapping[str, Any]) -> PeekApiClient:
    """The client a middleware reports to: ``client`` when given, else one built from ``options``.

    Middleware given equal options share one client per process. Raises ``ValueError`` when both or a
    non-client are given, and whatever ``PeekApiClient`` raises (``ValueError``) for invalid options, so a
    bad configuration fails when the app is built, never silently at request time. Thread-safe.
    """
    if client is not None:
        if not isinstance(client, PeekApiClient):
            raise ValueError(f"peekapi: 'client' must be a PeekApiClient, got {type(client).__name__}")
        if options:
            raise ValueError(
                f"peekapi: pass either client= or options, not both (got options {', '.join(sorted(options))})"
            )
        return client
    key = _options_key(options)
    if key is None:
        return PeekApiClient(dict(options))
    with _shared_lock:
        shared = _shared_clients.get(key)
        if shared is None or shared._closed:  # a client shut down (by a test, say) is not handed out again
            shared = _shared_clients[key] = PeekApiClient(dict(options))
        return shared


def _options_key(options: Mapping[str, Any]) -> Hashable | None:
    """A hashable identity of ``options`` by value (callables by identity), with the environment variables that
    options come from, or None when there is none."""
    try:
        key = tuple(sorted((str(name), _freeze(value)) for name, value in options.items()))
        hash(key)
    except TypeError:
        return None
    return key, tuple(os.environ.get(name) for name in ENV_VARIABLES)


def _freeze(value: object) -> Hashable:
    if isinstance(value, list | tuple):
        return ("seq", tuple(_freeze(item) for item in value))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(_freeze(item) for item in value))
    if not isinstance(value, Hashable):
        raise TypeError("unhashable option")
    return (type(value).__qualname__, value)


def asgi_header_dict(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict of lower-cased names; repeated headers joined with ``", "``."""
    out: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def environ_header_dict(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request headers in a WSGI environ (or Django's ``request.META``) with lower-cased names."""
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            out[key.replace("_", "-").lower()] = value
    return out


def parse_size(raw: str | bytes | None) -> int | None:
    """A Content-Length value as a non-negative int, or None when absent or malformed."""
    if not raw:
        return None
    try:
        size = int(raw)
    except ValueError:
        return None
    return size if size >= 0 else None


class Capture:
    """What one middleware instance needs from its client's settings, and the event builder.

    Immutable after construction, so it is thread-safe; no method raises.
    """

    __slots__ = (
        "_methods",
        "_paths",
        "_prefixes",
        "client",
        "filters",
        "identify",
        "plain",
        "query_string",
    )

    def __init__(self, client: PeekApiClient) -> None:
        settings = client.settings
        #: The client. A middleware records a request with ``client._buffer.record(...)`` (looked up per request:
        #: a forked child gets a new buffer): ``track()`` in one call, without building a dict or copying it.
        self.client = client
        self.identify = settings.identify_consumer
        self.query_string = settings.collect_query_string
        self._paths = settings.exclude_paths
        self._prefixes = settings.exclude_path_prefixes
        self._methods = settings.exclude_methods
        #: Whether any exclusion is configured (checked before calling :meth:`excluded`).
        self.filters = bool(self._paths or self._prefixes or self._methods)
        #: Neither ``identify_consumer`` nor ``collect_query_string``: the event takes the path and headers as
        #: they are (one check on the request path instead of two).
        self.plain = self.identify is None and not self.query_string

    def excluded(self, method: str, path: str) -> bool:
        """Whether a request is not to be recorded (``exclude_methods``, ``exclude_paths`` and prefixes)."""
        return (
            method.upper() in self._methods
            or path in self._paths
            or (bool(self._prefixes) and path.startswith(self._prefixes))
        )

    @staticmethod
    def with_query(path: str, query: str) -> str:
        """``path`` with the query string's parameters sorted (``/p?a=1&b=2``), as ``collect_query_string`` asks."""
        if not query:
            return path
        return path + "?" + "&".join(sorted(part for part in query.split("&") if part))

    def custom_consumer(self, headers: dict[str, str]) -> str | None:
        """The user's ``identify_consumer`` answer for ``headers``; None when it raises (logged)."""
        return identify_consumer(headers, self.identify)

    def environ_consumer(self, environ: Mapping[str, Any]) -> str | list[tuple[bytes, Any]] | None:
        """The consumer of a WSGI environ or Django ``request.META``, for ``EventBuffer.record``. Never raises.

        With ``identify_consumer`` set, its answer. Else the two headers the default rule reads, as a header
        list that the background resolves (``peekapi.event.resolve_compact``: the authorization is hashed there,
        off the request path), or None when neither is there.
        """
        if self.identify is not None:
            return identify_consumer(environ_header_dict(environ), self.identify)
        api_key = environ.get("HTTP_X_API_KEY")
        authorization = environ.get("HTTP_AUTHORIZATION")
        if api_key is None and authorization is None:
            return None
        return [(b"x-api-key", api_key), (b"authorization", authorization)]
