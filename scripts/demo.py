"""The main job, end to end on one machine, on the embedded default (SQLite).

1. creates a project, an ingest key and a read token in a fresh SQLite database;
2. starts the collector (``peekapi serve``) on a free loopback port;
3. starts the FastAPI example app under uvicorn, with the one line of peekapi middleware pointed at it;
4. drives traffic at the app (several endpoints, consumers, errors, a 404, an excluded health check);
5. stops the app with SIGTERM (the middleware flushes on lifespan shutdown);
6. reads the traffic back through the collector's read API and prints it, checking that every tracked request
   was stored exactly once.

Exit status 0 when the counts match. ``--keep DIR`` keeps the database in DIR instead of a temporary one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> str:
    return subprocess.run([str(BIN / "peekapi"), *args], check=True, capture_output=True, text=True).stdout.strip()


def wait_http(port: int, path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _ = request(port, "GET", path)
        except OSError:
            time.sleep(0.1)
            continue
        if status < 500:
            return
    raise SystemExit(f"demo: nothing answered on 127.0.0.1:{port}{path}")


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def drive(port: int) -> int:
    """Send the traffic; return how many requests the middleware should have recorded."""
    consumers = [{"x-api-key": "customer-a"}, {"x-api-key": "customer-b"}, {"authorization": "Bearer secret-c"}, {}]
    tracked = 0
    for i in range(300):
        headers = consumers[i % len(consumers)]
        if i % 10 == 9:
            request(port, "POST", "/echo", body=b"x" * (i * 3), headers={**headers, "content-type": "text/plain"})
        elif i % 25 == 7:
            request(port, "GET", "/boom", headers=headers)
        elif i % 30 == 11:
            request(port, "GET", f"/no/such/page/{i}", headers=headers)
        elif i % 20 == 3:
            request(port, "GET", "/stream", headers=headers)
        else:
            request(port, "GET", f"/v1/users/{i % 40}", headers=headers)
        tracked += 1
        if i % 50 == 0:
            request(port, "GET", "/health")  # excluded from tracking
    return tracked


def read_api(port: int, token: str, path: str) -> Any:
    status, body = request(port, "GET", path, headers={"authorization": f"Bearer {token}"})
    if status != 200:
        raise SystemExit(f"demo: GET {path} answered {status}: {body[:200]!r}")
    return json.loads(body)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", metavar="DIR", help="keep the SQLite database in DIR")
    args = parser.parse_args()
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="peekapi-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'peekapi.db'}"
    cli("project", "create", "demo", "--database", database)
    key = cli("key", "create", "demo", "--database", database)
    token = cli("token", "create", "demo", "--database", database)

    collector_port, app_port = free_port(), free_port()
    collector = subprocess.Popen(
        [str(BIN / "peekapi"), "serve", "--database", database, "--port", str(collector_port)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "collector.log").open("wb"),
    )
    env = {
        **os.environ,
        "PEEKAPI_API_KEY": key,
        "PEEKAPI_ENDPOINT": f"http://127.0.0.1:{collector_port}/v1/events",
        "XDG_DATA_HOME": str(workdir / "sdk"),  # the SDK's spool for this run
    }
    app_log = (workdir / "app.log").open("wb")
    app = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "examples"),
            "fastapi_app:app",
            "--port",
            str(app_port),
            "--log-level",
            "warning",
        ],
        env=env,
        stderr=app_log,  # the example's /boom route raises on purpose: its tracebacks go here
    )
    try:
        wait_http(collector_port, "/healthz")
        wait_http(app_port, "/health")
        started = time.monotonic()
        tracked = drive(app_port)
        elapsed = time.monotonic() - started
        print(f"demo: made {tracked} tracked requests to the FastAPI example in {elapsed:.1f} s")
        stop(app)  # SIGTERM: uvicorn's lifespan shutdown makes the middleware flush
        stored = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            overview = read_api(collector_port, token, "/v1/overview?interval=60")
            stored = int(overview["totals"]["requests"])
            if stored >= tracked:
                break
            time.sleep(0.2)
        endpoints = read_api(collector_port, token, "/v1/endpoints")
        consumers = read_api(collector_port, token, "/v1/consumers")
        show(overview, endpoints, consumers)
        kept = f" (database kept: {database})" if args.keep else ""
        print(f"\ndemo: {tracked} requests tracked, {stored} stored by the collector{kept}")
        return 0 if stored == tracked else 1
    finally:
        stop(app)
        stop(collector, signal.SIGINT)
        app_log.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def show(overview: dict[str, Any], endpoints: dict[str, Any], consumers: dict[str, Any]) -> None:
    totals = overview["totals"]
    print("\nlast 24 hours:", ", ".join(f"{k}={_fmt(v)}" for k, v in totals.items()))
    print(f"\n{'endpoint':<34} {'requests':>8} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for row in endpoints["endpoints"]:
        name = f"{row['method']} {row['route']}"
        p50, p95 = _fmt(row.get("p50_ms")), _fmt(row.get("p95_ms"))
        print(f"{name:<34} {row['requests']:>8} {row['errors']:>7} {p50:>8} {p95:>8}")
    print(f"\n{'consumer':<34} {'requests':>8} {'errors':>7}")
    for row in consumers["consumers"]:
        print(f"{row['consumer'] or '(anonymous)':<34} {row['requests']:>8} {row['errors']:>7}")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
