"""The example's views: sync, async, streaming and a file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt


def get_user(request: HttpRequest, uid: int) -> JsonResponse:
    return JsonResponse({"id": uid})


async def get_order(request: HttpRequest, oid: int) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"id": oid})


@csrf_exempt
def echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"received": len(request.body)})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield from (b"one,", b"two,", b"three")

    return StreamingHttpResponse(chunks(), content_type="text/plain")


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one,", b"two,", b"three"):
            yield chunk

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def file(request: HttpRequest) -> FileResponse:
    return FileResponse(Path(__file__).open("rb"), content_type="text/plain")


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")
