"""Bottle: ``gunicorn --chdir examples -w 2 --preload bottle_app:app``."""

from __future__ import annotations

from collections.abc import Iterator

import bottle

from peekapi.middleware import PeekApiWSGI

root = bottle.Bottle()


@root.get("/things/<tid>")
def get_thing(tid: str) -> dict[str, str]:
    return {"id": tid}


@root.post("/echo")
def echo() -> dict[str, int]:
    return {"received": len(bottle.request.body.read())}


@root.get("/stream")
def stream() -> Iterator[bytes]:
    yield from (b"one,", b"two,", b"three")


@root.get("/boom")
def boom() -> str:
    raise RuntimeError("boom")


@root.get("/health")
def health() -> str:
    return "ok"


app = PeekApiWSGI(root, exclude_paths=["/health"])
