"""FastAPI: ``uvicorn --app-dir examples fastapi_app:app``."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

from peekapi.middleware import PeekApiASGI

app = FastAPI()
# The one line: options from here, api key and endpoint from PEEKAPI_API_KEY / PEEKAPI_ENDPOINT.
app.add_middleware(PeekApiASGI, exclude_paths=["/health"])

users = APIRouter()


@users.get("/users/{user_id}")
def get_user(user_id: int) -> dict[str, int]:
    return {"id": user_id}


app.include_router(users, prefix="/v1")


@app.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@app.get("/stream")
def stream() -> StreamingResponse:
    def chunks() -> Iterator[bytes]:
        yield from (b"one,", b"two,", b"three")

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/boom")
def boom() -> None:
    raise RuntimeError("boom")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
