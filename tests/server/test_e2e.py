"""End to end: our SDK and middleware under uvicorn send to a running collector; every request is stored once.

Also through a loopback proxy that loses the collector's first responses (the request reached the collector,
the answer never reached the SDK): the SDK retries the same batch id and the collector stores it once.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from peekapi_server.store import ReadQuery
from tests.server.support import Collector, free_port, start_collector

peekapi = pytest.importorskip("peekapi")
middleware = pytest.importorskip("peekapi.middleware")
starlette_apps = pytest.importorskip("starlette.applications")

import uvicorn  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

pytestmark = pytest.mark.slow


async def user(request: Request) -> JSONResponse:
    uid = int(request.path_params["uid"])
    if uid % 10 == 0:
        return JSONResponse({"error": "not found"}, status_code=404)
    return JSONResponse({"id": uid, "name": "x" * uid})


async def orders(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse("created " + str(len(body)), status_code=201)


class LossyProxy:
    """Forwards POSTs to the collector, but for the first ``lose`` requests drops the answer on the floor."""

    def __init__(self, target_port: int, lose: int) -> None:
        self.lose = lose
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                proxy.forwarded += 1
                if proxy.lose > 0:  # the collector has the batch; the SDK never hears back
                    proxy.lose -= 1
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class App:
    """A Starlette app wrapped in PeekApiASGI, served by uvicorn on a loopback port."""

    def __init__(self, endpoint: str, api_key: str, spool: Path) -> None:
        self.client = peekapi.PeekApiClient(
            {
                "api_key": api_key,
                "endpoint": endpoint,
                "storage_path": str(spool),
                "flush_interval": 0.2,
                "handle_signals": False,
                "retry_base_delay": 0.01,
            }
        )
        app = starlette_apps.Starlette(
            routes=[Route("/users/{uid:int}", user), Route("/orders", orders, methods=["POST"])]
        )
        wrapped = middleware.PeekApiASGI(app, client=self.client)
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(wrapped, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "app did not start"
            time.sleep(0.01)

    def request(self, method: str, path: str, body: bytes | None = None, key: str | None = None) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        if key:
            req.add_header("x-api-key", key)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                return int(r.status)
        except urllib.error.HTTPError as e:
            with e:
                return int(e.code)

    def stop(self) -> None:
        self.client.shutdown(10)
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def collector_e2e(db_url: str) -> Iterator[Collector]:
    c = start_collector(db_url)
    try:
        yield c
    finally:
        c.stop()
        c.store.close()


def drive(app: App, n: int) -> dict[tuple[str, str, int], int]:
    """Makes ``n`` requests; returns how many of each (method, route, status) were made."""
    made: dict[tuple[str, str, int], int] = {}
    for i in range(1, n + 1):
        if i % 3 == 0:
            key = ("POST", "/orders", app.request("POST", "/orders", b"x" * i, key=f"consumer-{i % 4}"))
        else:
            key = ("GET", "/users/{uid:int}", app.request("GET", f"/users/{i}", key=f"consumer-{i % 4}"))
        made[key] = made.get(key, 0) + 1
    return made


def stored(c: Collector) -> dict[tuple[str, str, int], int]:
    q = ReadQuery(start=int(time.time()) - 3600, end=int(time.time()) + 60, limit=100_000)
    counts: dict[tuple[str, str, int], int] = {}
    for e in c.store.iter_events(c.project.id, q):
        key = (e["method"], e["route"], e["status_code"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_every_request_is_stored_exactly_once(collector_e2e: Collector, tmp_path: Path) -> None:
    c = collector_e2e
    app = App(c.url + "/v1/events", c.key, tmp_path / "spool")
    try:
        made = drive(app, 300)
        assert app.client.flush(10)
    finally:
        app.stop()
    c.drain()
    assert sum(made.values()) == 300
    assert stored(c) == made
    overview = c.get("/v1/overview").json()["totals"]
    assert overview["requests"] == 300
    assert overview["errors_4xx"] == made.get(("GET", "/users/{uid:int}", 404), 0)
    consumers = {r["consumer"] for r in c.get("/v1/consumers").json()["consumers"]}
    assert consumers == {f"consumer-{i}" for i in range(4)}


def test_a_retry_after_a_lost_response_is_not_double_counted(collector_e2e: Collector, tmp_path: Path) -> None:
    c = collector_e2e
    port = int(c.url.rsplit(":", 1)[1])
    proxy = LossyProxy(port, lose=2)
    app = App(f"http://127.0.0.1:{proxy.port}/v1/events", c.key, tmp_path / "spool")
    try:
        made = drive(app, 120)
        deadline = time.monotonic() + 20
        while proxy.lose and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.client.flush(20)
    finally:
        app.stop()
        proxy.close()
    c.drain()
    assert proxy.lose == 0, "the proxy never got to lose a response"
    assert proxy.forwarded >= 3  # at least the two lost deliveries and their successful retry
    assert stored(c) == made
    batch_ids = list(c.store.iter_rows("SELECT COUNT(*) FROM batches WHERE project_id = ?", (c.project.id,)))  # type: ignore[attr-defined]
    assert int(batch_ids[0][0]) < proxy.forwarded  # some deliveries were retries of a stored batch id


def test_hostile_requests_and_events_are_stored_or_counted_as_dropped_never_lost(
    collector_e2e: Collector, tmp_path: Path
) -> None:
    """What the collector would reject inside its 200 (which SDKs do not read) is repaired or dropped by the SDK.

    A scanner's ``%00`` in the path through the middleware, and hand-made events through ``track()``: every
    event counted ``sent`` is stored, and the rest is counted ``dropped``.
    """
    c = collector_e2e
    app = App(c.url + "/v1/events", c.key, tmp_path / "spool")
    try:
        assert app.request("GET", "/users/%00") == 404
        assert app.request("GET", "/x%00y") == 404
        hostile: list[dict[str, Any]] = [
            {"path": "/nul\x00x"},
            {"consumer_id": "a\x00b"},
            {"timestamp": "yesterday"},
            {"timestamp": "1960-01-01T00:00:00Z"},
            {"timestamp": 1733000000},
            {"request_size": 2**70},
            {"response_time_ms": 1e300},  # dropped
            {"status_code": 42},  # dropped
        ]
        for fields in hostile:
            app.client.track({"method": "GET", "path": "/t", "status_code": 200, "response_time_ms": 1, **fields})
        app.client.flush(10)
        stats = app.client.stats()
    finally:
        app.stop()
    c.drain()
    events = list(c.store.iter_events(c.project.id, ReadQuery(start=0, end=int(time.time()) + 60, limit=1000)))
    assert (stats["tracked"], stats["sent"], stats["dropped"]["invalid"]) == (10, 8, 2)
    assert len(events) == stats["sent"]
    assert sorted(e["path"] for e in events if e["path"] != "/t") == ["/nul\ufffdx", "/users/\ufffd", "/x\ufffdy"]
