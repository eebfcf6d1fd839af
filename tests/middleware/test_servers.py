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

from tests.support.ingest import Answer, IngestServer
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


class Server:
    """``app`` under its server, in a session of its own, with its output in ``log``; the spool under ``data``."""

    def __init__(self, app: App, ingest: IngestServer, data: Path, log: Path) -> None:
        pytest.importorskip(app.needs)
        pytest.importorskip(app.server)
        self.port = _free_port()
        env = {
            **os.environ,
            "PEEKAPI_API_KEY": "ak_e2e",
            "PEEKAPI_ENDPOINT": ingest.url,
            "XDG_DATA_HOME": str(data),  # the spool, isolated
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
        }
        self.log = log
        with log.open("a") as out:
            self.process = subprocess.Popen(
                _command(app, self.port), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def terminate(self) -> float:
        """SIGTERM to the whole session, as a deployment stops it; seconds until the server exited."""
        start = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        elapsed = time.monotonic() - start
        assert self.process.returncode in (0, -signal.SIGTERM), self.output()
        return elapsed

    def output(self) -> str:
        return self.log.read_text()


@pytest.mark.parametrize("app", APPS, ids=[a.framework for a in APPS])
def test_every_request_arrives_exactly_once(app: App, ingest: IngestServer, tmp_path: Path) -> None:
    server = Server(app, ingest, tmp_path, tmp_path / "server.log")
    port = server.port
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
        server.terminate()
    output = server.output()

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


@pytest.mark.parametrize("app", APPS, ids=[a.framework for a in APPS])
def test_sigterm_while_the_collector_hangs_spools_and_a_restart_delivers(
    app: App, ingest: IngestServer, tmp_path: Path
) -> None:
    """The collector takes the batch and never answers in time; the server is stopped meanwhile, in a request.

    Under uvicorn no atexit runs (it restores the default SIGTERM action and raises the signal again once its
    shutdown is done): what the client held must be on disk by then. The next start sends it, once.
    """
    log = tmp_path / "server.log"
    server = Server(app, ingest, tmp_path, log)
    ingest.default(Answer(503, delay=10.0))  # accepts the request, answers too late
    paths = [app.user_path.format(i) for i in range(1, 6)]
    for path in paths:
        assert _request(server.port, "GET", path)[0] == 200
    elapsed = _stop_with_a_request_in_flight(server)  # the events are buffered (flush_interval: 10 s)
    paths.append("/echo")
    spooled = [p for p in tmp_path.rglob("*.jsonl") if p.is_file()]
    assert spooled, server.output()
    assert ingest.connections and not ingest.accepted()  # the flushes at the signal and at exit were sent, in vain
    # The signal handler's flush (2 s), 0.5 s for the request to the collector, then the cut; once more at the
    # lifespan shutdown or exit, for the request in flight: within a deployment's grace period (30 s by default
    # on Kubernetes), and no wait for the request timeout.
    assert elapsed < 10.0, (elapsed, server.output())

    ingest.default(Answer(200))
    again = Server(app, ingest, tmp_path, log)  # sends the spool as it starts
    events = ingest.wait_for(len(paths), timeout=15)
    time.sleep(0.3)  # a duplicate would show up now
    again.terminate()
    events = ingest.events()
    received = Counter(e["path"] for e in events)
    report(
        f"{app.framework} under {app.server}, SIGTERM while the collector hangs",
        requests=len(paths),
        received=sum((received & Counter(paths)).values()),
        lost=sum((Counter(paths) - received).values()),
        doubled=sum(n - 1 for p, n in received.items() if p in paths and n > 1),
        unexpected=sum(n for p, n in received.items() if p not in paths),
    )
    assert received == Counter(paths), server.output()
    assert len(ingest.all_accepted_events()) == len(paths)  # not even a duplicate for the collector to drop


def _stop_with_a_request_in_flight(server: Server) -> float:
    """SIGTERM while a request is in flight (held open by its body, sent in two parts around the signal).

    The server finishes the requests it has begun before it exits. Returns the seconds from the signal to the exit.
    """
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 8\r\n\r\n"
        conn.sendall(head.encode() + b"half")
        time.sleep(0.3)  # the server has the request; its body is not complete
        start = time.monotonic()
        os.killpg(server.process.pid, signal.SIGTERM)
        time.sleep(0.3)  # the server is shutting down, waiting for this request
        conn.sendall(b"rest")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    server.process.wait(timeout=30)
    assert server.process.returncode in (0, -signal.SIGTERM), server.output()
    return time.monotonic() - start


@pytest.mark.parametrize("app", APPS, ids=[a.framework for a in APPS])
def test_a_request_in_flight_at_sigterm_arrives(app: App, ingest: IngestServer, tmp_path: Path) -> None:
    server = Server(app, ingest, tmp_path, tmp_path / "server.log")
    assert _request(server.port, "GET", app.user_path.format(1))[0] == 200
    _stop_with_a_request_in_flight(server)
    events = ingest.wait_for(2, timeout=10)
    time.sleep(0.2)  # a duplicate would show up now
    assert sorted(e["path"] for e in ingest.events()) == sorted([app.user_path.format(1), "/echo"]), server.output()
    echo = next(e for e in events if e["path"] == "/echo")
    assert (echo["method"], echo["status_code"], echo["request_size"]) == ("POST", 200, 8)
