"""Starlette: ``uvicorn --app-dir examples starlette_app:app``."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from peekapi.middleware import PeekApiASGI


async def get_user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["user_id"]})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


async def stream(request: Request) -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        yield from (b"one,", b"two,", b"three")

    return StreamingResponse(chunks(), media_type="text/plain")


async def boom(request: Request) -> None:
    raise RuntimeError("boom")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[
        Mount("/v1", routes=[Route("/users/{user_id:int}", get_user)]),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/boom", boom),
        Route("/health", health),
    ]
)
app.add_middleware(PeekApiASGI, exclude_paths=["/health"])
