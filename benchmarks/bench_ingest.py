"""Ingest throughput of `peekapi serve`: events/s over loopback with keep-alive, batches of 100.

    python benchmarks/bench_ingest.py                       # SQLite (a temporary file)
    python benchmarks/bench_ingest.py --database postgresql://user@127.0.0.1:5432/db
    python benchmarks/bench_ingest.py --database "$PEEKAPI_TEST_POSTGRES_URL" --workers 2

Starts one collector process (`python -m peekapi.cli serve`), then client processes that POST pre-encoded
batches (each with its own x-peekapi-batch-id) on keep-alive connections for --seconds per round. A round's
figure is the events *stored* per second: from the first request until the collector's queue is drained and
the store's count matches what was acknowledged (checked every round). Reports every round and the median.
Bounded: rounds x seconds plus drain time (a round whose drain takes over 60 s fails).
"""

from __future__ import annotations

import argparse
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
import time
import uuid
from datetime import datetime, timezone

from peekapi_server.store import open_store


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


def client(port: int, key: str, batch: int, consumers: int, deadline: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    bodies = make_bodies(batch, consumers)
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
    out.put((sent, refused))


def queued(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return int(body["queued_events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per round (5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument("--batch", type=int, default=100, help="events per request (100)")
    parser.add_argument("--consumers", type=int, default=50, help="distinct consumer ids in the traffic (50)")
    parser.add_argument("--workers", type=int, default=1, help="collector worker processes (PostgreSQL only)")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="peekapi-bench-")
    url = args.database or f"sqlite:///{tmp}/bench.db"
    store = open_store(url)
    project = store.create_project(f"bench-{uuid.uuid4().hex[:8]}")
    _, key = store.create_credential(project.name, "ingest")
    port = free_port()
    cmd = [sys.executable, "-m", "peekapi.cli", "serve", "--port", str(port), "--database", url]
    cmd += ["--workers", str(args.workers), "--log-level", "warning"]
    server = subprocess.Popen(cmd, env={**os.environ})
    try:
        deadline = time.time() + 30
        while True:
            try:
                queued(port)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        engine = url.split(":", 1)[0]
        print(
            f"engine={engine} workers={args.workers} clients={args.clients} batch={args.batch}"
            f" consumers={args.consumers}"
        )
        rates: list[float] = []
        accepted: list[float] = []
        stored_before = store.count_events(project.id)
        for r in range(args.rounds):
            out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
            start = time.time()
            procs = [
                mp.Process(target=client, args=(port, key, args.batch, args.consumers, start + args.seconds, out))
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
                if args.workers == 1:
                    done = not queued(port)
                else:
                    done = store.count_events(project.id) - stored_before >= sent and not queued(port)
                if done:
                    break
                if time.time() > drain_deadline:
                    raise RuntimeError(f"round {r}: acknowledged {sent} events, not all stored after 60 s")
                time.sleep(0.005 if args.workers == 1 else 0.25)
            elapsed = time.time() - start
            stored = store.count_events(project.id) - stored_before
            stored_before += stored
            if stored != sent:
                raise RuntimeError(f"round {r}: acknowledged {sent} events but stored {stored}")
            rate = stored / elapsed
            rates.append(rate)
            accepted.append(sent / accept_s)
            print(
                f"round {r + 1}: {stored} events stored in {elapsed:.2f} s = {rate:,.0f} events/s stored"
                f" (acknowledged at {sent / accept_s:,.0f} events/s over {accept_s:.2f} s,"
                f" {refused} requests refused with 503)"
            )
        print(
            f"median: {statistics.median(rates):,.0f} events/s stored,"
            f" {statistics.median(accepted):,.0f} events/s acknowledged ({engine})"
        )
    finally:
        server.terminate()
        server.wait(30)
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the temporary SQLite database, when one was made


if __name__ == "__main__":
    main()
