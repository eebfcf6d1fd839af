"""What the middleware costs a request: peekapi vs the bare app vs peekapi 0.1.0.

Four measurements, each interleaving the variants in one run and reporting medians:

1. In-process (``inproc``): a minimal Starlette app (ASGI) and a minimal Flask app (WSGI) called directly, no
   sockets: microseconds per request for the bare app, with this peekapi, and with peekapi 0.1.0. Both SDKs
   deliver to a loopback sink running in a subprocess, so their background threads do their real work.
2. Over sockets (``load``): uvicorn (Starlette) and gunicorn (Flask), one worker each, loaded by ``wrk`` on
   127.0.0.1: requests per second (the change is the median of per-round ratios) and the server's CPU time per
   request (all its processes, from /proc), bare vs peekapi. (Holding delivery back for a whole run is no
   measure of the request path there: tens of thousands of held events make the garbage collector the cost.)
3. Side by side over sockets (``ab``): the ``load`` servers all up at once, many short wrk runs in shuffled
   order, the median of the per-round ratios to bare with its quartiles: finer than ``load`` on a machine whose
   speed drifts between runs.
4. Latency below saturation (``latency``): the same servers, each wrk connection pausing between its requests
   (a wrk script), so the server has room to spare: response-time percentiles, bare vs peekapi.

In every measurement a pass-through middleware that only wraps ``send``/``start_response`` and counts the body
bytes (``noop``) runs next to them: the floor under what any middleware that records responses can cost. And
``minimal``: ``noop`` plus the status, two clock reads and one tuple appended to a deque per request, the least
any middleware that records requests does (no route, consumer, request size, error handling or delivery). Over
sockets also ``floor``: ``minimal`` handing its tuples to the least batching client (``_floor.FloorClient``: a
deque, one ``json.dumps`` per 100, one kept-alive connection, in a thread), the floor under recording *and*
delivering; and peekapi 0.1.0. The load suites: uvicorn (1 worker), gunicorn with 1, 2 and 4 sync workers.

    python benchmarks/bench_middleware.py             # all four
    python benchmarks/bench_middleware.py inproc      # in-process only
    python benchmarks/bench_middleware.py load        # sockets only (needs wrk: apt-get install wrk)
    python benchmarks/bench_middleware.py ab          # sockets, every variant's server up at once, short rounds
    python benchmarks/bench_middleware.py latency --suite uvicorn --pause 5
    python benchmarks/bench_middleware.py ab --suite uvicorn,gunicorn-w2,gunicorn-w4 --variants floor,peekapi

peekapi 0.1.0 is installed on first use into /tmp/peekapi010 (``pip install --target``) and imported as
``peekapi010``, so both versions run in one process. Needs the ``frameworks`` extra. Not run in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib
import importlib.util
import io
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

OLD_DIR = Path(os.environ.get("PEEKAPI010_DIR", "/tmp/peekapi010"))
HERE = Path(__file__).resolve().parent

SINK = HERE / "_sink.py"  # the delivery benchmark's keep-alive sink, in its own process


# -- the apps ---------------------------------------------------------------------------------------------


def _sink_url() -> str:
    url = os.environ.get("BENCH_SINK")
    if not url:
        raise RuntimeError("BENCH_SINK is not set")
    return url


# The variants measured in-process. "peekapi" and "peekapi010" are measured with their delivery of the batch's events
# included. "peekapi-path" holds delivery back during a batch (batch size and interval beyond it), delivers
# after it, untimed, and counts only the serving thread: the cost on the request path alone. "noop" is a
# pass-through middleware that only wraps send / start_response and counts the body bytes (NoopASGI /
# NoopWSGI): the floor under any middleware that records responses.
VARIANTS = ("bare", "noop", "minimal", "peekapi", "peekapi-path", "peekapi010")
CLIENTS: dict[str, list[Any]] = {}


def _new_client(variant: str) -> Any:
    options: dict[str, Any] = {"api_key": "ak_bench", "endpoint": _sink_url()}
    if variant == "peekapi010":
        client = load_old().PeekApiClient(options)
    else:
        from peekapi import PeekApiClient

        options["storage_path"] = tempfile.mkdtemp(prefix="peekapi-bench-")
        if variant == "peekapi-path":
            options.update(batch_size=1_000_000, max_buffer_size=1_000_000, flush_interval=3600.0)
        client = PeekApiClient(options)
    CLIENTS.setdefault(variant, []).append(client)
    return client


def starlette_app(variant: str = "bare") -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello, world")

    app = Starlette(routes=[Route("/", hello)])
    if variant in ("peekapi", "peekapi-path"):
        from peekapi.middleware import PeekApiASGI

        app.add_middleware(PeekApiASGI, client=_new_client(variant))
    elif variant == "noop":
        app.add_middleware(NoopASGI)
    elif variant == "minimal":
        app.add_middleware(MinimalASGI)
    elif variant == "complete":
        app.add_middleware(CompleteASGI)
    elif variant == "floor":
        app.add_middleware(MinimalASGI, record=_floor_record)
    elif variant == "peekapi010":
        app.add_middleware(load_old_middleware("asgi").PeekApiASGI, client=_new_client(variant))
    return app


def flask_app(variant: str = "bare") -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/")
    def hello() -> str:
        return "hello, world"

    if variant in ("peekapi", "peekapi-path"):
        from peekapi.middleware import PeekApiWSGI

        app.wsgi_app = PeekApiWSGI(app.wsgi_app, client=_new_client(variant))  # type: ignore[method-assign]
    elif variant == "noop":
        app.wsgi_app = NoopWSGI(app.wsgi_app)  # type: ignore[method-assign]
    elif variant == "minimal":
        app.wsgi_app = MinimalWSGI(app.wsgi_app)  # type: ignore[method-assign]
    elif variant == "complete":
        app.wsgi_app = CompleteWSGI(app.wsgi_app)  # type: ignore[method-assign]
    elif variant == "floor":
        app.wsgi_app = MinimalWSGI(app.wsgi_app, record=_floor_record)  # type: ignore[method-assign]
    elif variant == "peekapi010":
        old = load_old_middleware("wsgi").PeekApiWSGI
        app.wsgi_app = old(app.wsgi_app, client=_new_client(variant))  # type: ignore[method-assign]
    return app


class NoopASGI:
    """The least an ASGI middleware that records a response can do: wrap ``send`` and count the body bytes.

    The floor under any such middleware's cost (peekapi's included), measured next to it under load.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = 0

        def counting_send(message: Any) -> Any:
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            return send(message)

        await self.app(scope, receive, counting_send)


class NoopWSGI:
    """The WSGI counterpart of ``NoopASGI``: wrap ``start_response`` and count the body bytes as they pass."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: Any, start_response: Any) -> Any:
        status: list[str] = []

        def recording_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        result = self.app(environ, recording_start_response)
        try:
            sent = 0
            for chunk in result:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


# What the "minimal" middleware records: one tuple per request, dropped (cleared) after each batch or, in a
# server, whenever it holds 10,000.
MINIMAL_RECORDS: collections.deque[tuple[Any, ...]] = collections.deque()


def _minimal_record(entry: tuple[Any, ...]) -> None:
    MINIMAL_RECORDS.append(entry)
    if len(MINIMAL_RECORDS) >= 10_000:
        MINIMAL_RECORDS.clear()


# The "floor" variant: "minimal" handing each record to the least batching client (``_floor.FloorClient``:
# a deque, one json.dumps per 100 records, one kept-alive connection, in a thread), created in the serving process.
_FLOOR: list[Any] = []


def _floor_record(entry: tuple[Any, ...]) -> None:
    if not _FLOOR:
        from _floor import FloorClient

        _FLOOR.append(FloorClient(_sink_url()))
    _FLOOR[0].track(entry)


class MinimalASGI:
    """The least a middleware that records requests can do: ``NoopASGI``, plus the status, two clock reads and
    one tuple (method, path, status, milliseconds, body bytes, wall time) appended to a deque per request.

    No route, no consumer, no sizes of the request, no exception handling, no delivery: a floor under the cost of
    recording, to read peekapi's request path against (it does all of that and more).
    """

    def __init__(self, app: Any, record: Callable[[tuple[Any, ...]], None] = _minimal_record) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        sent = 0

        def recording_send(message: Any) -> Any:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            return send(message)

        start = time.perf_counter()
        await self.app(scope, receive, recording_send)
        elapsed = (time.perf_counter() - start) * 1000.0
        self.record((scope["method"], scope["path"], status, elapsed, sent, time.time()))


class MinimalWSGI:
    """The WSGI counterpart of ``MinimalASGI``: ``NoopWSGI`` plus the status, two clock reads and one tuple.

    Written out rather than built on ``NoopWSGI`` with a hook: a hook would put a call into ``noop``, the floor
    under this one.
    """

    def __init__(self, app: Any, record: Callable[[tuple[Any, ...]], None] = _minimal_record) -> None:
        self.app = app
        self.record = record

    def __call__(self, environ: Any, start_response: Any) -> Any:
        status: list[str] = []

        def recording_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        start = time.perf_counter()
        result = self.app(environ, recording_start_response)
        sent = 0
        try:
            for chunk in result:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            elapsed = (time.perf_counter() - start) * 1000.0
            code = status[-1] if status else ""
            self.record((environ["REQUEST_METHOD"], environ["PATH_INFO"], code, elapsed, sent, time.time()))


class CompleteASGI:
    """``MinimalASGI`` plus the rest of what peekapi records, written as leanly as that: the route template (the
    matched route's path, or FastAPI's effective route), the request body bytes (``receive`` wrapped), the request
    headers (kept for the consumer, which peekapi resolves off the request path too), status 500 when the
    application raises, and nothing of its own raised into the application.

    The floor under any middleware that records peekapi's event. It leaves out what peekapi also handles (mounts,
    Litestar, pathsend, exclusions, the query-string option, a custom ``identify_consumer``, recording at the last
    body byte, the misconfiguration path), and its record is a tuple appended to a deque. Counted by
    ``bench_instructions`` only (no server factory).
    """

    def __init__(self, app: Any, record: Callable[[tuple[Any, ...]], None] = _minimal_record) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        sent = 0
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        def recording_send(message: Any) -> Any:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            return send(message)

        path = scope["path"]
        start = time.perf_counter()
        try:
            await self.app(scope, counting_receive, recording_send)
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            try:
                route = scope.get("route")
                fastapi = scope.get("fastapi")
                if fastapi is not None:
                    route = fastapi.get("effective_route_context") or route
                template = route.path if route is not None else None
                entry = (scope["method"], path, template, status or 500, elapsed, received, sent, scope["headers"])
                self.record((*entry, time.time()))
            except Exception:
                pass


class CompleteWSGI:
    """The WSGI counterpart of ``CompleteASGI``: ``MinimalWSGI`` plus the route template (Flask's
    ``url_rule``, taken from the request werkzeug keeps in the environ while the response starts), the status code
    as an int, the request size (Content-Length), the two consumer headers, status 500 when the application raises
    before any body went out, and nothing of its own raised into the application. Left out, as in ``CompleteASGI``:
    non-ASCII paths, chunked uploads, ``write()``, ``wsgi.file_wrapper``, the list fast path, exclusions, the query
    string. A record that cannot be built (a non-numeric Content-Length) is dropped: the benchmark apps never send
    one. Counted by ``bench_instructions`` only (no server factory).
    """

    def __init__(self, app: Any, record: Callable[[tuple[Any, ...]], None] = _minimal_record) -> None:
        self.app = app
        self.record = record

    def __call__(self, environ: Any, start_response: Any) -> Any:
        status = ""
        request = None

        def recording_start_response(code: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status, request
            status = code
            request = environ.get("werkzeug.request")
            return start_response(code, headers, exc_info)

        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        sent = 0
        start = time.perf_counter()
        try:
            result = self.app(environ, recording_start_response)
            try:
                for chunk in result:
                    sent += len(chunk)
                    yield chunk
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except GeneratorExit:  # the server stopped iterating: the status stands
            raise
        except BaseException:
            if not sent:  # once body bytes are out, the status stands
                status = ""
            raise
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            try:
                rule = request.url_rule if request is not None else None
                template = rule.rule if rule is not None else None
                code = int(status[:3]) if status else 500
                size = int(environ.get("CONTENT_LENGTH") or 0)
                consumer = (environ.get("HTTP_X_API_KEY"), environ.get("HTTP_AUTHORIZATION"))
                entry = (environ["REQUEST_METHOD"], path, template, code, elapsed, size, sent, consumer)
                self.record((*entry, time.time()))
            except Exception:
                pass


# Factories for the servers of the load test (uvicorn --factory, gunicorn "module:call()").
def starlette_bare() -> Any:
    return starlette_app("bare")


def starlette_noop() -> Any:
    return starlette_app("noop")


def flask_noop() -> Any:
    return flask_app("noop")


def starlette_minimal() -> Any:
    return starlette_app("minimal")


def flask_minimal() -> Any:
    return flask_app("minimal")


def starlette_peekapi() -> Any:
    return starlette_app("peekapi")


def flask_bare() -> Any:
    return flask_app("bare")


def flask_peekapi() -> Any:
    return flask_app("peekapi")


def starlette_floor() -> Any:
    return starlette_app("floor")


def flask_floor() -> Any:
    return flask_app("floor")


def starlette_peekapi010() -> Any:
    return starlette_app("peekapi010")


def flask_peekapi010() -> Any:
    return flask_app("peekapi010")


# -- peekapi 0.1.0 next to this one -----------------------------------------------------------------------


def load_old() -> types.ModuleType:
    """peekapi 0.1.0 imported as ``peekapi010`` (installed into OLD_DIR on first use)."""
    if "peekapi010" in sys.modules:
        return sys.modules["peekapi010"]
    package = OLD_DIR / "peekapi"
    if not (package / "__init__.py").exists():
        print(f"installing peekapi==0.1.0 into {OLD_DIR} ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(OLD_DIR), "peekapi==0.1.0"],
            check=True,
        )
    spec = importlib.util.spec_from_file_location(
        "peekapi010", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["peekapi010"] = module
    spec.loader.exec_module(module)
    return module


def load_old_middleware(name: str) -> types.ModuleType:
    load_old()
    return importlib.import_module(f"peekapi010.middleware.{name}")


# -- in-process -------------------------------------------------------------------------------------------

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "state": {},
}


def asgi_runner(app: Any, n: int) -> Callable[[], None]:
    """A callable that sends ``n`` requests through ``app``."""
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: Any) -> None:
        return None

    async def batch() -> None:
        template = SCOPE
        for _ in range(n):
            scope = dict(template)
            scope["state"] = {}
            await app(scope, receive, send)

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(batch())


def wsgi_runner(app: Any, n: int) -> Callable[[], None]:
    """A callable that sends ``n`` requests through ``app``."""
    template = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return None

    def batch() -> None:
        for _ in range(n):
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(b"")
            result = app(environ, start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return batch


def _drain(variant: str) -> None:
    """Deliver everything the variant's clients hold (0.1.0's flush() sends one batch a call)."""
    for client in CLIENTS.get(variant, ()):
        if variant == "peekapi010":
            while client._buffer:
                client.flush()
        else:
            client.flush(60)


def _timed(variant: str, run: Callable[[], None], n: int) -> float:
    """CPU µs per request.

    "peekapi" and "peekapi010": CPU time of the whole process (all its threads) for the batch plus the
    delivery of its events, so the SDKs' background work counts. "bare", "noop", "minimal" and "peekapi-path":
    CPU time of the thread serving the requests only (the request path; for "peekapi-path" its events are
    delivered after the batch, untimed, and "minimal"'s records dropped). Process or thread CPU time rather
    than wall time: other load on the machine does not count.
    """
    clock = time.thread_time if variant in ("bare", "noop", "minimal", "peekapi-path") else time.process_time
    start = clock()
    run()
    if variant != "peekapi-path":
        _drain(variant)
    spent = clock() - start
    if variant == "peekapi-path":
        _drain(variant)
    elif variant == "minimal":
        MINIMAL_RECORDS.clear()  # untimed, as peekapi-path's delivery
    return spent / n * 1e6


def inproc(rounds: int, n: int) -> dict[str, dict[str, float]]:
    load_old()
    suites = {
        "starlette (ASGI)": {v: asgi_runner(starlette_app(v), n) for v in VARIANTS},
        "flask (WSGI)": {v: wsgi_runner(flask_app(v), n) for v in VARIANTS},
    }
    results: dict[str, dict[str, float]] = {}
    for suite, runners in suites.items():
        for variant, run in runners.items():  # warm up
            _timed(variant, run, n)
        samples: dict[str, list[float]] = {v: [] for v in runners}
        order = list(runners)
        for _ in range(rounds):
            random.shuffle(order)
            for variant in order:
                samples[variant].append(_timed(variant, runners[variant], n))
        medians = {v: statistics.median(s) for v, s in samples.items()}
        results[suite] = medians
        bare = samples["bare"]
        print(f"\n{suite}: CPU µs per request, median of {rounds} interleaved batches of {n}; added: the median")
        print("  of the per-round differences to bare (the same round: paired), and its ratio; peekapi,")
        print("  peekapi and peekapi010 include the CPU time of delivering their events")
        for variant, values in samples.items():
            extra = ""
            if variant != "bare":
                added = statistics.median(v - b for v, b in zip(values, bare, strict=True))
                ratio = statistics.median(v / b for v, b in zip(values, bare, strict=True))
                extra = f"   added {added:+7.2f} µs   x{ratio:.3f}"
            print(f"  {variant:<16} {medians[variant]:8.2f}{extra}")
    return results


# -- over sockets -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _server_command(kind: str, factory: str, port: int) -> list[str]:
    workers = "1"
    if kind.startswith("gunicorn-w"):
        kind, workers = "gunicorn", kind.removeprefix("gunicorn-w")
    if kind == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "--factory", f"bench_middleware:{factory}",
            "--app-dir", str(HERE), "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-w", workers, "-b", f"127.0.0.1:{port}",
        "--log-level", "warning", f"bench_middleware:{factory}()",
    ]  # fmt: skip


# In production neither the load (the API's clients) nor the collector runs on the API's machine. Here all three
# share two cores, so wrk runs at a higher priority (it must not starve while a background process runs: the
# server would idle, and the run measure the load generator) and the sink at SCHED_IDLE (it takes only CPU
# time nobody else wants).
# from the same two cores, is counted in the server's CPU per request, and must keep up (checked: "delivered").
PRIORITIES = os.geteuid() == 0 and os.environ.get("BENCH_PRIORITIES", "1") != "0"
WRK_PREFIX = ["nice", "-n", "-10"] if PRIORITIES else []
SINK_PREFIX = ["chrt", "--idle", "0"] if PRIORITIES else []


def _wrk(port: int, seconds: int, connections: int) -> tuple[float, int]:
    """Requests per second and the number of requests of one wrk run."""
    out = subprocess.run(
        [*WRK_PREFIX, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    return float(rate.group(1)), int(count.group(1))


LOAD_SUITES = {
    "uvicorn + starlette": ("uvicorn", "starlette"),
    "gunicorn + flask": ("gunicorn", "flask"),
    "gunicorn-w2 + flask": ("gunicorn-w2", "flask"),
    "gunicorn-w4 + flask": ("gunicorn-w4", "flask"),
}
# "floor": "minimal" handing its records to the least batching client (see _floor_record).
LOAD_VARIANTS = {
    "bare": "bare",
    "noop": "noop",
    "minimal": "minimal",
    "floor": "floor",
    "peekapi": "peekapi",
    "peekapi010": "peekapi010",
}


_LOOP = "d = {}\nfor i in range(300_000):\n    d[i % 5000] = str(i)"
_SPIN = "d = {}\nwhile True:\n    for i in range(300_000):\n        d[i % 5000] = str(i)"


def core_interference(rounds: int = 8) -> float | None:
    """How much slower a Python loop runs on CPU 0 while another runs on CPU 1 (median ratio; None if < 2 CPUs).

    On a machine whose CPUs share a physical core (SMT siblings, as virtual CPUs often are), any background work
    -- the load generator's, the collector's -- slows the server too: a figure to read the load results by.
    """
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    cpus = sorted(os.sched_getaffinity(0))[:2]

    def timed() -> float:
        out = subprocess.run(
            ["taskset", "-c", str(cpus[0]), sys.executable, "-m", "timeit", "-n", "1", "-r", "3", _LOOP],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        value, unit = re.search(r"best of 3: ([\d.]+) (\w+)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"nsec": 1e-9, "usec": 1e-6, "msec": 1e-3, "sec": 1.0}[unit]

    ratios = []
    for _ in range(rounds):
        alone = timed()
        spinner = subprocess.Popen(["taskset", "-c", str(cpus[1]), sys.executable, "-c", _SPIN])
        try:
            time.sleep(0.2)
            ratios.append(timed() / alone)
        finally:
            spinner.kill()
            spinner.wait()
    return statistics.median(ratios)


def load(rounds: int, seconds: int, connections: int, suites: list[str]) -> dict[str, dict[str, float]]:
    slowdown = core_interference()
    if slowdown is not None:
        print(f"\nA Python loop on one CPU runs x{slowdown:.2f} slower while another runs on a second CPU.")
    results: dict[str, dict[str, float]] = {}
    for suite in suites:
        kind, app = LOAD_SUITES[suite]
        factories = {variant: f"{app}_{name}" for variant, name in LOAD_VARIANTS.items()}
        samples: dict[str, list[float]] = {v: [] for v in factories}
        cpu: dict[str, list[float]] = {v: [] for v in factories}
        delivered: dict[str, list[float]] = {v: [] for v in factories}
        ratios: dict[str, list[float]] = {v: [] for v in factories if v != "bare"}
        for round_ in range(rounds):
            # The variants back to back, in alternating order: each round sees about the same machine load.
            order = list(factories.items())
            if round_ % 2:
                order.reverse()
            for variant, factory in order:
                rate, cpu_per_request, share = _serve_and_load(kind, factory, seconds, connections)
                samples[variant].append(rate)
                cpu[variant].append(cpu_per_request)
                delivered[variant].append(share)
            for variant, paired in ratios.items():
                paired.append(samples[variant][-1] / samples["bare"][-1])
        medians = {v: statistics.median(s) for v, s in samples.items()}
        results[suite] = medians
        print(
            f"\n{suite}: requests/s and server CPU µs/request, medians of {rounds} runs of {seconds} s"
            f" (wrk -c{connections}{', priorities: wrk nice -10, sink SCHED_IDLE' if PRIORITIES else ''})"
        )
        bare_cpu = statistics.median(cpu["bare"])
        for variant, value in medians.items():
            cpu_median = statistics.median(cpu[variant])
            change = ""
            if variant != "bare":
                change = (
                    f"  {(statistics.median(ratios[variant]) - 1) * 100:+.1f}% req/s (paired),"
                    f" CPU +{cpu_median - bare_cpu:.1f} µs/request"
                )
            if variant.startswith("peekapi"):
                change += f", delivered during the run {statistics.median(delivered[variant]) * 100:.0f}%"
            runs = ", ".join(f"{x:.0f}" for x in samples[variant])
            print(f"  {variant:<15} {value:8.0f} req/s {cpu_median:7.1f} µs{change}   runs: {runs}")
    slowdown = core_interference()
    if slowdown is not None:
        print(f"\nAfterwards, the loop on one CPU runs x{slowdown:.2f} slower while another runs on a second CPU.")
    return results


def ab(rounds: int, seconds: int, connections: int, suites: list[str]) -> dict[str, dict[str, float]]:
    """Load, side by side: every variant's server up at once, ``rounds`` rounds of one short wrk run each, in a
    new shuffled order every round; the change is the median of the per-round ratios to bare.

    Finer than ``load``, whose servers start one after another: the machine's speed drifts by more than the
    differences measured (see README.md) over a whole load run, much less within one round of a few seconds.
    After each run it waits until the sink's count stops moving, so that no variant's delivery runs into the
    next one's measurement (a peekapi variant's delivery during its own run is measured, as in ``load``).
    """
    results: dict[str, dict[str, float]] = {}
    for suite in suites:
        kind, app = LOAD_SUITES[suite]
        factories = {variant: f"{app}_{name}" for variant, name in LOAD_VARIANTS.items()}
        rates: dict[str, list[float]] = {v: [] for v in factories}
        cpu: dict[str, list[float]] = {v: [] for v in factories}
        with contextlib.ExitStack() as stack:
            servers = {v: stack.enter_context(_serving(kind, f, connections)) for v, f in factories.items()}
            for _ in range(rounds):
                order = list(factories)
                random.shuffle(order)
                for variant in order:
                    port, pid = servers[variant]
                    cpu_before = _tree_cpu(pid)
                    rate, count = _wrk(port, seconds, connections)
                    cpu[variant].append((_tree_cpu(pid) - cpu_before) / count * 1e6)
                    rates[variant].append(rate)
                    _sink_settled()
        print(
            f"\n{suite}: side by side, {rounds} rounds of {seconds} s per variant in shuffled order (wrk"
            f" -c{connections}); requests/s (median), its ratio to bare in the same round (median, quartiles),"
            " server CPU µs/request (median)"
        )
        bare_cpu = statistics.median(cpu["bare"])
        results[suite] = {}
        for variant in factories:
            ratios = [r / b for r, b in zip(rates[variant], rates["bare"], strict=True)]
            q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            cpu_median = statistics.median(cpu[variant])
            results[suite][variant] = median
            print(
                f"  {variant:<15} {statistics.median(rates[variant]):8.0f} req/s   x{median:.3f}"
                f" ({q1:.3f}-{q3:.3f})   {cpu_median:6.1f} µs ({cpu_median - bare_cpu:+.1f})"
            )
    return results


def _sink_settled(timeout: float = 15.0) -> None:
    """Wait until the sink's event count has not moved for half a second (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last, still_since = _sink_events(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - still_since < 0.5:
        time.sleep(0.1)
        now = _sink_events()
        if now != last:
            last, still_since = now, time.monotonic()


def latency(rounds: int, seconds: int, connections: int, pause_ms: int, suites: list[str]) -> None:
    """Latency below saturation: each wrk connection pauses ``pause_ms`` on average between its requests.

    What a user of a server that is not flat out sees: the percentiles of the response time, bare vs peekapi.
    """
    script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "paced.lua"
    # Random pauses (mean ``pause_ms``), so that the connections do not fall into step and arrive in bursts.
    script.write_text(f"function delay()\n  return math.random(0, {2 * int(pause_ms)})\nend\n")
    for suite in suites:
        kind, app = LOAD_SUITES[suite]
        factories = {variant: f"{app}_{name}" for variant, name in LOAD_VARIANTS.items()}
        figures: dict[str, list[dict[str, float]]] = {v: [] for v in factories}
        for round_ in range(rounds):
            order = list(factories.items())
            if round_ % 2:
                order.reverse()
            for variant, factory in order:
                with _serving(kind, factory, connections) as (port, _pid):
                    figures[variant].append(_wrk_latency(port, seconds, connections, script))
        print(
            f"\n{suite}: latency in ms below saturation (wrk -c{connections}, {pause_ms} ms between a connection's"
            f" requests on average), medians of {rounds} runs of {seconds} s"
        )
        print(f"  {'':15} {'req/s':>8} {'p50':>7} {'p75':>7} {'p90':>7} {'p99':>7}")
        for variant, runs in figures.items():
            cells = [statistics.median(run[key] for run in runs) for key in ("rate", "50", "75", "90", "99")]
            print(f"  {variant:<15} {cells[0]:8.0f} " + " ".join(f"{value:7.3f}" for value in cells[1:]))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_latency(port: int, seconds: int, connections: int, script: Path) -> dict[str, float]:
    """Requests per second and the latency percentiles (ms) of one paced wrk run."""
    out = subprocess.run(
        [*WRK_PREFIX, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout  # fmt: skip
    found: dict[str, float] = {}
    for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE):
        found[percent] = float(value) * _UNITS[unit]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None or len(found) < 4 or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed:\n{out}")
    found["rate"] = float(rate.group(1))
    return found


def _sink_events() -> int:
    with urllib.request.urlopen(_sink_url().replace("/v1/events", "/_stats"), timeout=10) as answer:
        return int(json.load(answer)["events"])


def _serve_and_load(kind: str, factory: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """Requests per second under wrk, the server's CPU µs per request (all its processes), and the share of
    the run's requests that reached the sink during the run (whether delivery kept up)."""
    with _serving(kind, factory, connections) as (port, pid):
        cpu_before, events_before = _tree_cpu(pid), _sink_events()
        rate, count = _wrk(port, seconds, connections)
        cpu = (_tree_cpu(pid) - cpu_before) / count * 1e6
        return rate, cpu, (_sink_events() - events_before) / count


@contextlib.contextmanager
def _serving(kind: str, factory: str, connections: int) -> Iterator[tuple[int, int]]:
    """A server of ``factory`` on a free port, warmed up by a short wrk run: yields its port and pid."""
    port = _free_port()
    server = subprocess.Popen(_server_command(kind, factory, port), start_new_session=True)
    try:
        _wait_port(port)
        _wrk(port, 2, connections)  # warm up
        yield port, server.pid
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants (Linux /proc).

    Descendants, not the process group: a helper process may run in a session of its own.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)  # fields after "(comm)": state, ppid, ..., utime (11), stime (12)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid, spent in times.items():
        ancestor = pid
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            total += spent
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=("inproc", "load", "ab", "latency", "all"), default="all")
    parser.add_argument(
        "--rounds", type=int, default=0, help="interleaved rounds (default 41 inproc, 3 load and latency, 15 ab)"
    )
    parser.add_argument("--requests", type=int, default=1000, help="requests per in-process batch")
    parser.add_argument("--seconds", type=int, default=0, help="seconds per wrk run (default 10; ab 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--suite", help="load suites, comma-separated: uvicorn, gunicorn (1 worker), gunicorn-w2, gunicorn-w4"
    )
    parser.add_argument("--variants", help=f"load variants, comma-separated (default all: {', '.join(LOAD_VARIANTS)})")
    parser.add_argument("--pause", type=int, default=5, help="latency: ms between a connection's requests")
    args = parser.parse_args()
    sink = subprocess.Popen(
        [*SINK_PREFIX, sys.executable, str(SINK)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None
        os.environ["BENCH_SINK"] = f"http://127.0.0.1:{sink.stdout.readline().strip()}/v1/events"
        os.environ.setdefault("PYTHONPATH", str(HERE.parent / "src"))
        wanted = args.suite.split(",") if args.suite else None
        suites = [name for name, (kind, _) in LOAD_SUITES.items() if wanted is None or kind in wanted]
        if args.variants:
            for variant in set(LOAD_VARIANTS) - {"bare", *args.variants.split(",")}:
                del LOAD_VARIANTS[variant]
        if args.what in ("inproc", "all"):
            inproc(args.rounds or 41, args.requests)
        if args.what in ("load", "all"):
            load(args.rounds or 3, args.seconds or 10, args.connections, suites)
        if args.what in ("ab", "all"):
            ab(args.rounds or 15, args.seconds or 2, args.connections, suites)
        if args.what in ("latency", "all"):
            latency(args.rounds or 3, args.seconds or 10, args.connections, args.pause, suites)
    finally:
        if sink.stdin is not None:
            sink.stdin.close()  # the sink serves until its stdin closes
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
