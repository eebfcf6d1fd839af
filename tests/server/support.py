"""Helpers for the collector tests: loopback HTTP, a collector running under uvicorn, wire events."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from peekapi_server import ServerConfig, create_app
from peekapi_server.store import Project, Store, open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> Response:
    """One HTTP request over loopback with the standard library; error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


@dataclass
class Collector:
    """A running collector: its base URL, its database URL, a project with an ingest key and a read token."""

    url: str
    db_url: str
    store: Store
    project: Project
    key: str
    token: str
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def post(self, events: Any, headers: dict[str, str] | None = None, raw: bytes | None = None) -> Response:
        body = raw if raw is not None else json.dumps(events).encode()
        h = {"content-type": "application/json", "x-api-key": self.key, **(headers or {})}
        return http("POST", self.url + "/v1/events", body, h)

    def get(self, path: str, token: str | None = None) -> Response:
        return http("GET", self.url + path, headers={"authorization": f"Bearer {token or self.token}"})

    def drain(self, timeout: float = 10.0) -> None:
        """Waits until every accepted event has been written (the writer's queue is empty)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http("GET", self.url + "/healthz").json()["queued_events"] == 0:
                return
            time.sleep(0.01)
        raise AssertionError("the collector did not drain its queue in time")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def start_collector(db_url: str, like: Collector | None = None, **config: Any) -> Collector:
    """Runs ``create_app`` under uvicorn in a thread on a free loopback port and waits until it answers.

    A new project with a key and a token is created, unless ``like`` (another collector on the same
    database) is given, whose project, key and token are then shared.
    """
    store = open_store(db_url)
    if like is None:
        project = store.create_project(f"proj-{uuid.uuid4().hex[:10]}")
        _, key = store.create_credential(project.name, "ingest")
        _, token = store.create_credential(project.name, "read")
    else:
        project, key, token = like.project, like.key, like.token
    config.setdefault("auth_cache_seconds", 0.0)
    config.setdefault("maintenance_interval_seconds", 0.0)
    config.setdefault("alert_interval_seconds", 0.0)  # alert passes only when a test runs them, at its own clock
    app = create_app(ServerConfig(database_url=db_url, **config))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("collector did not start")
        time.sleep(0.01)
    return Collector(f"http://127.0.0.1:{port}", db_url, store, project, key, token, server, thread)


def event(**overrides: Any) -> dict[str, Any]:
    """A valid wire event (WIRE.md), with overrides."""
    e: dict[str, Any] = {
        "method": "GET",
        "path": "/users/42",
        "status_code": 200,
        "response_time_ms": 12.5,
        "request_size": 0,
        "response_size": 128,
        "consumer_id": "ak_consumer",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    e.update(overrides)
    return e
