"""End to end: the apps in examples/ under real servers, delivering to the real ingest server.

uvicorn for the ASGI apps (FastAPI, Starlette, Litestar, Django), gunicorn with 2 workers and ``--preload`` for
the WSGI apps (Flask, Bottle, Django). Every request made must arrive exactly once, with the fields the client
saw; the server is stopped with SIGTERM, as a deployment would, and what it buffered must still arrive.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.ingest import IngestServer
from tests.support.reliability import report

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class App:
    framework: str
    server: str  # "uvicorn" or "gunicorn"
    target: str
    user_path: str  # a concrete path of the parametrised route
    user_route: str  # its template, as the framework spells it
    needs: str
    # Starlette's (and so FastAPI's) 500 page comes from ServerErrorMiddleware, outside any user middleware:
    # the middleware records the 500 when the exception passes it, before those bytes exist.
    error_page_outside: bool = False


APPS = [
    App("fastapi", "uvicorn", "fastapi_app:app", "/v1/users/{}", "/v1/users/{user_id}", "fastapi", True),
    App("starlette", "uvicorn", "starlette_app:app", "/v1/users/{}", "/v1/users/{user_id:int}", "starlette", True),
    App("litestar", "uvicorn", "litestar_app:app", "/v1/orders/{}", "/v1/orders/{oid:int}", "litestar"),
    App("flask", "gunicorn", "flask_app:app", "/users/{}", "/users/<int:uid>", "flask"),
    App("bottle", "gunicorn", "bottle_app:app", "/things/{}", "/things/<tid>", "bottle"),
    App("django-wsgi", "gunicorn", "django_project.wsgi:application", "/v1/users/{}", "v1/users/<int:uid>", "django"),
    App("django-asgi", "uvicorn", "django_project.asgi:application", "/v1/users/{}", "v1/users/<int:uid>", "django"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(app: App, port: int) -> list[str]:
    if app.server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), app.target,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(EXAMPLES), "-w", "2", "--preload",
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "10", app.target,
    ]  # fmt: skip


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    deadline = time.monotonic() + 20
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            conn.close()


@pytest.mark.parametrize("app", APPS, ids=[a.framework for a in APPS])
def test_every_request_arrives_exactly_once(app: App, ingest: IngestServer, tmp_path: Path) -> None:
    pytest.importorskip(app.needs)
    pytest.importorskip(app.server)
    port = _free_port()
    env = {
        **os.environ,
        "PEEKAPI_API_KEY": "ak_e2e",
        "PEEKAPI_ENDPOINT": ingest.url,
        "XDG_DATA_HOME": str(tmp_path),  # the spool, isolated
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        _command(app, port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    made: list[tuple[str, str, int, int, int, str | None, str | None]] = []
    try:
        # (method, path, status, request bytes, response bytes, route, consumer)
        for i in range(1, 21):
            path = app.user_path.format(i)
            status, body = _request(port, "GET", path, headers={"X-API-Key": f"consumer-{i % 3}"})
            made.append(("GET", path, status, 0, len(body), app.user_route, f"consumer-{i % 3}"))
        status, body = _request(port, "POST", "/echo", b"p" * 1500, {"Content-Type": "application/octet-stream"})
        made.append(("POST", "/echo", status, 1500, len(body), None, None))
        status, body = _request(port, "GET", "/stream")
        made.append(("GET", "/stream", status, 0, len(body), None, None))
        if app.needs == "django":  # FileResponse: handed to gunicorn's wsgi.file_wrapper (sendfile) under WSGI
            status, body = _request(port, "GET", "/file")
            assert status == 200 and body == (EXAMPLES / "django_project" / "views.py").read_bytes()
            made.append(("GET", "/file", status, 0, len(body), "file", None))
        status, body = _request(port, "GET", "/boom")
        made.append(("GET", "/boom", status, 0, 0 if app.error_page_outside else len(body), None, None))
        status, body = _request(port, "GET", "/health")  # excluded: must not arrive
        assert status == 200
        if app.framework != "litestar":  # Litestar runs middleware only for matched routes
            status, body = _request(port, "GET", "/no/such/page")
            made.append(("GET", "/no/such/page", status, 0, len(body), None, None))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            log.close()
    output = (tmp_path / "server.log").read_text()
    assert server.returncode in (0, -signal.SIGTERM), output

    statuses = {path: status for _, path, status, *_ in made}
    assert statuses["/stream"] == 200 and statuses["/echo"] == 200 and statuses["/boom"] == 500, output
    assert statuses.get("/no/such/page", 404) == 404
    events = ingest.wait_for(len(made), timeout=15)
    time.sleep(0.2)  # anything late (a duplicate) would show up now
    events = ingest.events()
    spooled = [f"{p.relative_to(tmp_path)}: {p.stat().st_size} bytes" for p in tmp_path.rglob("*") if p.is_file()]
    diagnosis = f"{output}\nfiles under XDG_DATA_HOME (spool): {spooled}"
    received, expected = Counter(e["path"] for e in events), Counter(m[1] for m in made)
    report(
        f"{app.framework} under {app.server}" + (" -w 2 --preload" if app.server == "gunicorn" else ""),
        requests=len(made),
        received=sum((received & expected).values()),
        lost=sum((expected - received).values()),
        doubled=sum(n - expected[p] for p, n in received.items() if p in expected and n > expected[p]),
        unexpected=sum(n for p, n in received.items() if p not in expected),
        resent=len(ingest.all_accepted_events()) - len(events),
    )
    assert Counter(e["path"] for e in events) == Counter(m[1] for m in made), diagnosis
    by_path = {e["path"]: e for e in events}
    for method, path, status, request_size, response_size, route, consumer in made:
        event = by_path[path]
        assert (event["method"], event["status_code"]) == (method, status), event
        assert (event["request_size"], event["response_size"]) == (request_size, response_size), event
        assert event["response_time_ms"] >= 0
        if route is not None:
            assert event["route"] == route, event
        if consumer is not None:
            assert event["consumer_id"] == consumer, event
    assert "route" not in by_path.get("/no/such/page", {})
    assert all(r.headers.get("x-api-key") == "ak_e2e" for r in ingest.accepted())
