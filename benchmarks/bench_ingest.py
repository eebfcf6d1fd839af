"""Ingest throughput of `peekapi serve`: events/s over loopback with keep-alive, batches of 100.

    python benchmarks/bench_ingest.py                       # SQLite (a temporary file)
    python benchmarks/bench_ingest.py --database postgresql://user@127.0.0.1:5432/db
    python benchmarks/bench_ingest.py --database "$PEEKAPI_TEST_POSTGRES_URL" --workers 2
    python benchmarks/bench_ingest.py --against /tmp/peekapi-old     # side by side with another checkout's collector

Starts one collector process (`python -m peekapi.cli serve`), then client processes, each with --connections
threads that POST pre-encoded batches (each with its own x-peekapi-batch-id) on keep-alive connections for
--seconds per round. A round's figure is the events *stored* per second: from the first request until the
collector's queue is drained and the store's count matches what was acknowledged (checked every round).
With --against, a second collector runs from that checkout's src/ (e.g. a `git worktree` of an older commit) on
a database of its own, and rounds alternate between the two, so both are measured under the same conditions.
Reports every round and the medians. Bounded: rounds x seconds plus drain time (a drain over 60 s fails).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_bodies(batch: int, consumers: int, count: int = 64) -> list[bytes]:
    rng = random.Random(1)
    now = datetime.now(timezone.utc).isoformat()
    routes = [f"/api/v1/resource{i}/{{id}}" for i in range(30)]
    bodies = []
    for _ in range(count):
        events = []
        for _ in range(batch):
            route = rng.choice(routes)
            events.append(
                {
                    "method": rng.choice(["GET", "GET", "POST", "PUT"]),
                    "path": route.replace("{id}", str(rng.randrange(100000))),
                    "status_code": rng.choice([200, 200, 200, 201, 404, 500]),
                    "response_time_ms": round(rng.lognormvariate(3, 1), 3),
                    "request_size": rng.randrange(2000),
                    "response_size": rng.randrange(20000),
                    "consumer_id": f"consumer-{rng.randrange(consumers)}",
                    "timestamp": now,
                }
            )
        bodies.append(json.dumps(events).encode())
    return bodies


_TOTALS_LOCK = threading.Lock()


def connection(port: int, key: str, bodies: list[bytes], batch: int, deadline: float, totals: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = refused = 0
    i = 0
    prefix = uuid.uuid4().hex
    while time.time() < deadline:
        headers = {"content-type": "application/json", "x-api-key": key, "x-peekapi-batch-id": f"{prefix}-{i}"}
        conn.request("POST", "/v1/events", bodies[i % len(bodies)], headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            sent += batch
        elif resp.status in (429, 503):
            refused += 1
            time.sleep(0.01)
        else:
            raise RuntimeError(f"unexpected status {resp.status}")
        i += 1
    conn.close()
    with _TOTALS_LOCK:
        totals[0] += sent
        totals[1] += refused


def client(  # type: ignore[type-arg]
    port: int, key: str, batch: int, consumers: int, connections: int, deadline: float, out: mp.Queue
) -> None:
    bodies = make_bodies(batch, consumers)
    totals = [0, 0]
    threads = [
        threading.Thread(target=connection, args=(port, key, bodies, batch, deadline, totals))
        for _ in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((totals[0], totals[1]))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and of its waited-for children: uvicorn's workers), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime (after the state field)
    return ticks / os.sysconf("SC_CLK_TCK")


def queued(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return int(body["queued_events"])


class Variant:
    """One collector under test: its checkout, its server process, its database and project."""

    def __init__(self, name: str, src: str | None, url: str, workers: int) -> None:
        self.name = name
        self.url = url
        self.workers = workers
        self.env = {**os.environ}
        if src is not None:
            self.env["PYTHONPATH"] = os.path.join(src, "src")
        # set up through the variant's own command line, so its own schema version is what the database gets
        project = f"bench-{uuid.uuid4().hex[:8]}"
        self._cli("project", "create", project)
        self.key = self._cli("key", "create", project).strip()
        self.project_id = int(self._query("SELECT id FROM projects WHERE name = ?", project))
        self.port = free_port()
        cmd = [sys.executable, "-m", "peekapi.cli", "serve", "--port", str(self.port), "--database", url]
        cmd += ["--workers", str(workers), "--log-level", "warning"]
        self.server = subprocess.Popen(cmd, env=self.env)
        self.stored_before = 0
        self.rates: list[float] = []
        self.accepted: list[float] = []
        self.cpu_us: list[float] = []

    def _cli(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "peekapi.cli", *args, "--database", self.url]
        return subprocess.run(cmd, env=self.env, check=True, capture_output=True, text=True).stdout

    def _query(self, sql: str, *params: object) -> object:
        """One value, read with the engine's own driver (not the store: it would migrate an older schema)."""
        if self.url.startswith(("postgresql://", "postgres://")):
            import psycopg

            with psycopg.connect(self.url) as conn:
                row = conn.execute(sql.replace("?", "%s"), params).fetchone()
        else:
            import sqlite3

            with contextlib.closing(sqlite3.connect(self.url.removeprefix("sqlite:///"))) as conn:
                row = conn.execute(sql, params).fetchone()
        assert row is not None
        return row[0]

    def count_events(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM events WHERE project_id = ?", self.project_id))  # type: ignore[call-overload]

    def wait_ready(self) -> None:
        deadline = time.time() + 30
        while True:
            try:
                queued(self.port)
                return
            except OSError:
                if time.time() > deadline or self.server.poll() is not None:
                    raise
                time.sleep(0.1)

    def round(self, r: int, args: argparse.Namespace) -> None:
        out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        cpu_before = cpu_seconds(self.server.pid)
        start = time.time()
        procs = [
            mp.Process(
                target=client,
                args=(self.port, self.key, args.batch, args.consumers, args.connections, start + args.seconds, out),
            )
            for _ in range(args.clients)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=args.seconds + 60) for _ in procs]
        for p in procs:
            p.join()
        sent = sum(s for s, _ in results)
        refused = sum(f for _, f in results)
        accept_s = time.time() - start
        drain_deadline = time.time() + 60
        # one worker: its queue (queued + being written) is empty exactly when everything is stored; several
        # workers each have their own queue, so then poll the store's count (slowly: counting costs CPU)
        while True:
            if self.workers == 1:
                done = not queued(self.port)
            else:
                done = self.count_events() - self.stored_before >= sent and not queued(self.port)
            if done:
                break
            if time.time() > drain_deadline:
                raise RuntimeError(f"{self.name} round {r}: acknowledged {sent} events, not all stored after 60 s")
            time.sleep(0.005 if self.workers == 1 else 0.25)
        elapsed = time.time() - start
        cpu = cpu_seconds(self.server.pid) - cpu_before
        stored = self.count_events() - self.stored_before
        self.stored_before += stored
        if stored != sent:
            raise RuntimeError(f"{self.name} round {r}: acknowledged {sent} events but stored {stored}")
        rate = stored / elapsed
        self.rates.append(rate)
        self.accepted.append(sent / accept_s)
        self.cpu_us.append(cpu / max(stored, 1) * 1e6)
        print(
            f"{self.name:>8} round {r + 1}: {stored} events stored in {elapsed:.2f} s = {rate:,.0f} events/s stored"
            f" (acknowledged at {sent / accept_s:,.0f} events/s over {accept_s:.2f} s,"
            f" {refused} requests refused with 503; collector CPU {self.cpu_us[-1]:.1f} us/event)",
            flush=True,
        )

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file per collector)")
    parser.add_argument("--against-database", help="database URL for the --against collector (default: --database)")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per round (5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per collector (5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections per client process (16)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (100)")
    parser.add_argument("--consumers", type=int, default=50, help="distinct consumer ids in the traffic (50)")
    parser.add_argument("--workers", type=int, default=1, help="collector worker processes (PostgreSQL only)")
    parser.add_argument("--against", help="a checkout (its root) whose collector runs side by side, e.g. a worktree")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="peekapi-bench-")
    engine = (args.database or "sqlite:").split(":", 1)[0]
    variants: list[Variant] = []
    try:
        for name, src in [("this", None)] + ([("against", args.against)] if args.against else []):
            given = args.against_database if name == "against" and args.against_database else args.database
            url = given or f"sqlite:///{tmp}/{name}.db"
            variants.append(Variant(name, src, url, args.workers))
        for v in variants:
            v.wait_ready()
        print(
            f"engine={engine} workers={args.workers} clients={args.clients}x{args.connections} connections"
            f" batch={args.batch} consumers={args.consumers}"
        )
        for r in range(args.rounds):
            for v in variants if r % 2 == 0 else variants[::-1]:
                v.round(r, args)
        for v in variants:
            print(
                f"{v.name:>8} median: {statistics.median(v.rates):,.0f} events/s stored,"
                f" {statistics.median(v.accepted):,.0f} events/s acknowledged,"
                f" collector CPU {statistics.median(v.cpu_us):.1f} us/event ({engine})"
            )
    finally:
        for v in variants:
            v.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the temporary SQLite databases, when made


if __name__ == "__main__":
    main()
