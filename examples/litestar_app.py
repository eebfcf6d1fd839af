"""Litestar: ``uvicorn --app-dir examples litestar_app:app``.

Litestar runs middleware only for requests that matched a route handler; to record 404s too, wrap the whole
app instead: ``app = PeekApiASGI(Litestar(...), ...)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar import Litestar, Request, Router, get, post
from litestar.middleware import DefineMiddleware
from litestar.response import Stream

from peekapi.middleware import PeekApiASGI

try:  # Litestar >= 2.2x wants path parameters declared; older versions infer them
    from litestar.params import FromPath

    OrderId = FromPath[int]
except ImportError:
    OrderId = int  # type: ignore[misc]


@get("/orders/{oid:int}")
async def get_order(oid: OrderId) -> dict[str, int]:
    return {"id": oid}


@post("/echo", status_code=200)
async def echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@get("/stream")
async def stream() -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one,", b"two,", b"three"):
            yield chunk

    return Stream(chunks())


@get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@get("/health")
async def health() -> str:
    return "ok"


app = Litestar(
    route_handlers=[Router("/v1", route_handlers=[get_order]), echo, stream, boom, health],
    middleware=[DefineMiddleware(PeekApiASGI, exclude_paths=["/health"])],
)
