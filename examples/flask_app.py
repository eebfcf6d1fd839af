"""Flask: ``gunicorn --chdir examples -w 2 --preload flask_app:app``."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, request

from peekapi.middleware import PeekApiWSGI

app = Flask(__name__)
app.wsgi_app = PeekApiWSGI(app.wsgi_app, exclude_paths=["/health"])  # type: ignore[method-assign]


@app.get("/users/<int:uid>")
def get_user(uid: int) -> dict[str, int]:
    return {"id": uid}


@app.post("/echo")
def echo() -> dict[str, int]:
    return {"received": len(request.get_data())}


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[bytes]:
        yield from (b"one,", b"two,", b"three")

    return Response(chunks(), mimetype="text/plain")


@app.get("/boom")
def boom() -> str:
    raise RuntimeError("boom")


@app.get("/health")
def health() -> str:
    return "ok"
