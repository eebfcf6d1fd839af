"""Calling an ASGI app directly, as a server would, and recording what it sends."""

from __future__ import annotations

import asyncio
from typing import Any

from peekapi.middleware.types import ASGIApp, Message, Scope


def http_scope(
    path: str = "/",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    query_string: bytes = b"",
    **extra: Any,
) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query_string,
        "headers": headers or [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


class Call:
    """One request through an ASGI app: ``body`` chunks go in, ``sent`` collects the messages out."""

    def __init__(self, body: list[bytes] | None = None) -> None:
        chunks = body or [b""]
        self.incoming: list[Message] = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
        ]
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def run(app: ASGIApp, scope: Scope, call: Call | None = None) -> Call:
    """Run one request to completion (exceptions from the app propagate)."""
    call = call or Call()
    asyncio.run(app(scope, call.receive, call.send))
    return call
