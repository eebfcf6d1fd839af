"""The ASGI and WSGI protocol types, declared once for every middleware module.

They are structural: any framework's own ``Scope``/``Receive``/``Send`` (Starlette's, Litestar's) or
``WSGIApplication`` (werkzeug's, typeshed's) is accepted where these are expected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Protocol

__all__ = [
    "ASGIApp",
    "Environ",
    "ExcInfo",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "WSGIApp",
    "WriteCallable",
]

# ASGI (https://asgi.readthedocs.io/en/latest/specs/www.html): the values of a scope and of a message are of
# many types by specification, hence ``Any``.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# WSGI (PEP 3333).
Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
WriteCallable = Callable[[bytes], object]


class StartResponse(Protocol):
    """The ``start_response`` callable a WSGI server passes to the application."""

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = ...,
        /,
    ) -> WriteCallable: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
