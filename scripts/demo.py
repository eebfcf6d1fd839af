"""The main job on one machine, on the embedded default (SQLite): the collector with its dashboard, an API
instrumented with peekapi, and traffic, running until Ctrl-C.

1. creates a SQLite database with a project ``demo``, its ingest key and read token, two alert rules, and a
   dashboard user;
2. starts the collector and dashboard (``peekapi serve``) on 127.0.0.1 (``--port``, default 8787 when free);
3. backfills ``--hours`` of history through the ingest endpoint, as an SDK would send it (daily rhythm, several
   consumers, errors, slow requests, and an incident: a payment gateway failing for twenty minutes);
4. starts the demo shop (``scripts/demo_app.py``, FastAPI under uvicorn, with the one line of peekapi middleware)
   and sends it live traffic (``--rate`` requests per second) from several consumers;
5. prints the dashboard's address and login, and a line of progress every ``--report`` seconds;
6. on Ctrl-C (or after ``--seconds``): stops the traffic, stops the app with SIGTERM (the middleware flushes on
   lifespan shutdown), checks through the read API that every request the app answered was stored exactly once,
   and stops the collector.

Exit status 0 when the counts match. ``--keep DIR`` keeps the database (and logs) in DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from demo_app import PAYMENT_FAILURES, latency_ms  # noqa: E402

BIN = Path(sys.executable).parent
PROJECT, USER = "demo", "demo"
# x-api-key of each consumer (the SDK's default consumer id) and its share of the traffic; None: anonymous
CONSUMERS: list[tuple[str | None, float]] = [
    ("acme-mobile", 0.34),
    ("globex-web", 0.26),
    ("initech-batch", 0.18),
    ("umbrella-partner", 0.12),
    (None, 0.10),
]
# (method, route, share of the traffic)
ROUTES: list[tuple[str, str, float]] = [
    ("GET", "/v1/products", 0.17),
    ("GET", "/v1/products/{product_id}", 0.30),
    ("GET", "/v1/search", 0.12),
    ("POST", "/v1/orders", 0.10),
    ("GET", "/v1/orders/{order_id}", 0.15),
    ("POST", "/v1/payments", 0.07),
    ("GET", "/v1/me", 0.09),
]
INVALID_ORDERS = 0.05  # orders sent without a quantity: 422


@dataclass
class Call:
    """One request of the traffic model: what to send, and what the app will answer (for the backfill)."""

    method: str
    route: str
    path: str
    body: bytes
    consumer: str | None
    status: int


def plan(rng: random.Random) -> Call:
    """A request drawn from the traffic model, with the status the demo app gives it."""
    consumer = rng.choices([c for c, _ in CONSUMERS], [w for _, w in CONSUMERS])[0]
    method, route, _ = rng.choices(ROUTES, [w for _, _, w in ROUTES])[0]
    ident, body, status = rng.randint(1, 1000), b"", 200
    if route == "/v1/products":
        path = f"/v1/products?limit={rng.choice((10, 20, 50))}"
    elif route == "/v1/products/{product_id}":
        path, status = f"/v1/products/{ident}", 404 if ident > 900 else 200
    elif route == "/v1/search":
        path = f"/v1/search?q={rng.choice(('shoes', 'red+hat', 'lamp', 'usb-c+cable', 'desk'))}"
    elif route == "/v1/orders":
        invalid = rng.random() < INVALID_ORDERS
        order = {"product_id": ident} if invalid else {"product_id": ident, "quantity": rng.randint(1, 5)}
        path, body, status = "/v1/orders", json.dumps(order).encode(), 422 if invalid else 201
    elif route == "/v1/orders/{order_id}":
        path, status = f"/v1/orders/{ident}", 500 if ident % 97 == 0 else 200
    elif route == "/v1/payments":
        body = json.dumps({"order": ident, "amount": rng.randint(5, 500)}).encode()
        path, status = "/v1/payments", 502 if rng.random() < PAYMENT_FAILURES else 200
    else:
        path, status = "/v1/me", 200 if consumer else 401
    return Call(method, route, path, body, consumer, status)


# -- set-up ---------------------------------------------------------------------------------------------


def step(text: str) -> None:
    print(f"demo: {text}", flush=True)


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it can be bound on 127.0.0.1, else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise SystemExit("demo: no free port on 127.0.0.1")


def cli(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([str(BIN / "peekapi"), *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: peekapi {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, what: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: the {what} exited (status {process.returncode}); see its log")
        with contextlib.suppress(OSError):
            if request(port, "GET", path)[0] < 500:
                return
        time.sleep(0.1)
    raise SystemExit(f"demo: the {what} did not answer on 127.0.0.1:{port}{path} within {timeout:.0f} s")


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child in a session of its own: Ctrl-C reaches the demo alone, which then stops each in order."""
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- history ------------------------------------------------------------------------------------------------


def history(hours: float, per_minute: float, now: float, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Events for the ``hours`` before ``now``: a daily rhythm around ``per_minute`` requests a minute, and an
    incident two hours ago (payments failing and slow, searches slow) lasting twenty minutes."""
    incident = (now - 2 * 3600, now - 2 * 3600 + 1200)
    first = int((now - hours * 3600) // 60)
    for minute in range(first, int(now // 60)):
        hour_of_day = (minute % 1440) / 60
        rhythm = 1.0 + 0.6 * math.sin(2 * math.pi * (hour_of_day - 9) / 24)
        for _ in range(max(0, round(rng.gauss(per_minute * rhythm, math.sqrt(per_minute * rhythm))))):
            ts = minute * 60 + rng.random() * 60
            call = plan(rng)
            ms = latency_ms(call.method, call.route, rng)
            if incident[0] <= ts < incident[1] and call.route in ("/v1/payments", "/v1/search"):
                ms *= 4
                if call.route == "/v1/payments" and rng.random() < 0.6:
                    call.status = 502
            yield {
                "method": call.method,
                "path": call.path,
                "route": call.route,
                "status_code": call.status,
                "response_time_ms": round(ms, 3),
                "request_size": len(call.body),
                "response_size": rng.randint(60, 2400) if call.status < 400 else rng.randint(30, 90),
                "consumer_id": call.consumer,
                "timestamp": datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds"),
            }


def backfill(port: int, key: str, hours: float, per_minute: float, now: float) -> int:
    """Posts the history in batches of 500 through the ingest endpoint, showing progress; returns the count."""
    events = list(history(hours, per_minute, now, random.Random(20261204)))
    sent, shown = 0, -1
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for i in range(0, len(events), 500):
            chunk = events[i : i + 500]
            headers = {
                "content-type": "application/json",
                "x-api-key": key,
                "x-peekapi-batch-id": secrets.token_hex(16),
            }
            conn.request("POST", "/v1/events", body=json.dumps(chunk).encode(), headers=headers)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"demo: the collector refused the history: {response.status} {answer[:200]!r}")
            sent += len(chunk)
            percent = sent * 100 // len(events)
            if percent // 10 != shown:
                shown = percent // 10
                step(f"  backfilled {sent:,} / {len(events):,} events ({percent} %)")
    finally:
        conn.close()
    return sent


# -- live traffic -----------------------------------------------------------------------------------------------


class Traffic:
    """Live requests to the app from ``threads`` threads at ``rate`` requests per second in all; counts the
    answered ones (the requests the middleware tracks) and the errors among them."""

    def __init__(self, port: int, rate: float, threads: int = 4) -> None:
        self.port, self.rate, self.threads = port, rate, threads
        self.answered = self.errors = self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        gap = self.threads / self.rate
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        next_at = time.monotonic() + rng.random() * gap
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += rng.expovariate(1.0 / gap)
            call = plan(rng)
            headers = {"content-type": "application/json"}
            if call.consumer:
                headers["x-api-key"] = call.consumer
            try:
                conn.request(call.method, call.path, body=call.body or None, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                with self._lock:
                    self.failed += 1  # may or may not have been tracked: the final check is then skipped
                continue
            with self._lock:
                self.answered += 1
                self.errors += response.status >= 400


# -- the run ----------------------------------------------------------------------------------------------


def stored(port: int, token: str, since: float) -> int:
    """Requests the collector holds from ``since`` (epoch seconds) on, through the read API."""
    start, end = int(since), int(time.time()) + 120
    status, body = request(
        port, "GET", f"/v1/overview?from={start}&to={end}&interval=3600", headers={"authorization": f"Bearer {token}"}
    )
    if status != 200:
        raise SystemExit(f"demo: the read API answered {status}: {body[:200]!r}")
    return int(json.loads(body)["totals"]["requests"])


class Stop(Exception):
    """SIGTERM: ends the demo the way Ctrl-C does."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Stop


#: Alert rules the demo creates, without a channel: the Alerts page shows where they stand. They are evaluated from
#: their creation on (the live traffic stays below them); the form's preview of a new rule replays the backfilled
#: incident of two hours ago.
DEMO_RULES = [
    ("5xx errors", "--metric", "error_rate_5xx", "--above", "5", "--window", "5m", "--for", "2m",
     "--min-requests", "20", "--recovery", "2", "--group-by", "endpoint"),
    ("slow p95", "--metric", "p95_ms", "--above", "800", "--window", "5m", "--min-requests", "20"),
]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8787, help="the collector's port (default 8787, or any free one)")
    parser.add_argument(
        "--hours", type=float, default=48.0, help="hours of history to backfill (default 48: a day, and the day before)"
    )
    parser.add_argument("--per-minute", type=float, default=40.0, help="history: mean requests a minute (40)")
    parser.add_argument("--rate", type=float, default=5.0, help="live requests per second (default 5)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: run until Ctrl-C)")
    parser.add_argument("--report", type=float, default=10.0, help="seconds between progress lines (default 10)")
    parser.add_argument("--keep", metavar="DIR", help="keep the SQLite database and the logs in DIR")
    args = parser.parse_args()
    if args.rate <= 0 or args.hours < 0 or args.per_minute < 0:
        parser.error("--rate must be positive, --hours and --per-minute at least 0")
    signal.signal(signal.SIGTERM, _on_sigterm)
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="peekapi-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'peekapi.db'}"
    collector: subprocess.Popen[bytes] | None = None
    app: subprocess.Popen[bytes] | None = None
    traffic: Traffic | None = None
    try:
        step(f"[1/5] creating the database in {workdir}: project {PROJECT!r}, its keys, dashboard user {USER!r}")
        projects = [line.split("\t")[1] for line in cli("project", "list", "--database", database).splitlines()]
        if PROJECT not in projects:  # a kept directory already has it
            cli("project", "create", PROJECT, "--database", database)
        key = cli("key", "create", PROJECT, "--database", database)
        token = cli("token", "create", PROJECT, "--database", database)
        rules = cli("alert", "list", "--project", PROJECT, "--database", database)
        for name, *condition in DEMO_RULES:
            if name not in rules:  # a kept directory already has them
                cli("alert", "create", PROJECT, name, *condition, "--database", database)
        password = secrets.token_urlsafe(12)
        action = "password" if (workdir / ".demo-user").exists() else "create"
        cli("user", action, USER, "--password-stdin", "--database", database, stdin=password + "\n")
        (workdir / ".demo-user").touch()

        port = free_port(args.port)
        step(
            f"[2/5] starting the collector and dashboard on http://127.0.0.1:{port} (log: {workdir / 'collector.log'})"
        )
        collector = start(
            [str(BIN / "peekapi"), "serve", "--database", database, "--port", str(port), "--log-level", "warning"],
            workdir / "collector.log",
        )
        wait_http(port, "/healthz", "collector", collector)

        started = time.time()
        step(f"[3/5] backfilling {args.hours:g} hours of history through the ingest endpoint")
        history_count = backfill(port, key, args.hours, args.per_minute, started)

        app_port = free_port()
        step(f"[4/5] starting the demo shop (FastAPI + peekapi) on 127.0.0.1:{app_port} (log: {workdir / 'app.log'})")
        env = {
            **os.environ,
            "PEEKAPI_API_KEY": key,
            "PEEKAPI_ENDPOINT": f"http://127.0.0.1:{port}/v1/events",
            "XDG_DATA_HOME": str(workdir / "sdk"),  # the SDK's spool for this run
        }
        uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "scripts"), "demo_app:app"]
        app = start([*uvicorn, "--port", str(app_port), "--log-level", "warning"], workdir / "app.log", env)
        wait_http(app_port, "/health", "demo app", app)
        live_since = started // 60 * 60  # the history ends at the minute the demo started

        step(f"[5/5] sending live traffic: about {args.rate:g} requests a second from {len(CONSUMERS)} consumers")
        traffic = Traffic(app_port, args.rate)
        traffic.start()
        print(
            f"\n  Dashboard:  http://127.0.0.1:{port}/overview?project={PROJECT}&range=24h\n"
            f"  Login:      {USER} / {password}\n"
            f"  Demo shop:  http://127.0.0.1:{app_port}/v1/products (and /docs)\n"
            f"  Read API:   curl -H 'authorization: Bearer {token}' http://127.0.0.1:{port}/v1/endpoints\n"
            f"\n  {f'Stops after {args.seconds:g} s.' if args.seconds else 'Press Ctrl-C to stop.'}\n",
            flush=True,
        )
        deadline = time.monotonic() + args.seconds if args.seconds else math.inf
        next_report = time.monotonic() + args.report
        with contextlib.suppress(KeyboardInterrupt, Stop):
            while time.monotonic() < deadline:
                time.sleep(max(0.05, min(0.5, deadline - time.monotonic())))
                if time.monotonic() >= next_report:
                    next_report += args.report
                    step(f"live: {traffic.answered:,} requests answered, {traffic.errors:,} of them errors")

        step("stopping: traffic, then the app (SIGTERM: the middleware delivers what it holds), then the collector")
        traffic.stop()
        stop(app)
        answered, failed = traffic.answered, traffic.failed
        count, wait_until = 0, time.monotonic() + 20
        while time.monotonic() < wait_until:
            count = stored(port, token, live_since)
            if count >= answered:
                break
            time.sleep(0.2)
        total = stored(port, token, started - args.hours * 3600 - 60)
        step(
            f"{answered:,} live requests answered by the app, {count:,} stored by the collector; "
            f"{total:,} events in all with the history ({history_count:,} backfilled)"
        )
        if failed:
            step(f"{failed} requests failed on the way (not counted): the exact check is skipped")
            return 0
        if count != answered or total != answered + history_count:
            step("MISMATCH: some requests were lost or counted twice")
            return 1
        return 0
    except (KeyboardInterrupt, Stop):
        step("interrupted during set-up; stopping")
        return 130
    finally:
        if traffic is not None:
            traffic.stop()
        for process, sig in ((app, signal.SIGTERM), (collector, signal.SIGINT)):
            if process is not None:
                stop(process, sig)
        if args.keep:
            step(f"kept: {database} and the logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
