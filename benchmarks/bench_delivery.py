"""Delivery throughput in events per second to a loopback sink: this SDK side by side with peekapi 0.1.0.

    python benchmarks/bench_delivery.py [--rounds 7] [--events 100000] [--batch-sizes 100,1000]

One measurement: a fresh client pointed at the sink (another process, on 127.0.0.1), ``--events`` calls of
``track(EVENT)`` from one thread as fast as it can go, then "deliver everything"; the clock runs from the first
``track()`` until the sink has acknowledged the last event. events/s = events / that time.

- this SDK: ``client.flush()`` (which returns once every batch is acknowledged);
- peekapi 0.1.0: its own worker sends one batch each time it is woken, and its ``flush()`` sends at most one
  batch (none while its worker has one in flight), so ``flush()`` is called in a loop until its buffer is empty
  and nothing is in flight (see ``_harness.drain_old``).

Neither may drop or spool an event for want of room: 0.1.0 gets ``max_buffer_size`` = ``--events`` (it drops
silently past that), this SDK twice that (its worker spills to the disk spool when the events it holds, buffered
and batched, come near ``max_buffer_size``; a burst of ``--events`` must not take that path).
Everything else is left at the defaults. Each configuration (implementation x batch size) runs once per
round, interleaved; the median over rounds is reported, with min and max.

The run fails unless the sink counted exactly ``--events`` events (it parses every body as a JSON array and
adds up the lengths), with no duplicate batch id, and this SDK's ``stats()`` shows everything sent, nothing
spooled or dropped. The sink never offers gzip, so bodies are plain JSON for both.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import peekapi
from _harness import (
    EVENT,
    OLD_VERSION,
    Sink,
    drain_old,
    load_average,
    load_peekapi010,
    machine,
    print_table,
    run_record,
    summarise,
    temp_storage,
    thread_cpu_seconds,
    warn_if_loaded,
    write_results,
)

GOAL_EVENTS_PER_SECOND = 100_000


def run_new(sink: Sink, events: int, batch_size: int) -> dict[str, Any]:
    """One measurement of this SDK; returns its figures and the checks."""
    client = peekapi.PeekApiClient(
        {
            "api_key": "ak_bench_new",
            "endpoint": sink.url,
            "storage_path": temp_storage("new"),
            "batch_size": batch_size,
            # Twice the events: the worker spills to the disk spool when what it holds nears max_buffer_size;
            # with this, a healthy run never touches the disk (checked below).
            "max_buffer_size": 2 * events,
        }
    )
    try:
        sink.reset()
        track = client.track
        event = EVENT
        gc.collect()
        cpu0 = thread_cpu_seconds()
        p0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(events):
            track(event)
        t1 = time.perf_counter()
        flushed = client.flush(120.0)
        t2 = time.perf_counter()
        p1 = time.process_time()
        cpu1 = thread_cpu_seconds()
        stats = client.stats()
    finally:
        client.shutdown(10.0)
    received = sink.stats()
    problems = []
    if not flushed:
        problems.append("flush() timed out")
    if stats["sent"] != events or stats["dropped_total"] or stats["spooled"]:
        problems.append(f"stats: sent {stats['sent']}, spooled {stats['spooled']}, dropped {stats['dropped']}")
    figures = _figures(events, t0, t1, t2, received, problems, dict(stats), p1 - p0)
    # Where the CPU went, per thread (tracking thread, batcher, sender), in microseconds per event.
    figures["cpu_us_per_event_by_thread"] = {
        name: round((cpu1[name] - cpu0[name]) / events * 1e6, 2)
        for name in ("MainThread", "peekapi-batcher", "peekapi-sender")
        if name in cpu0 and name in cpu1
    }
    return figures


def run_old(sink: Sink, events: int, batch_size: int) -> dict[str, Any]:
    """One measurement of peekapi 0.1.0; returns its figures and the checks."""
    old = load_peekapi010()
    client = old.PeekApiClient(
        old.Options(
            api_key="ak_bench_old",
            endpoint=sink.url,
            batch_size=batch_size,
            max_buffer_size=events,
            storage_path=temp_storage("old") + "/events.jsonl",
        )
    )
    try:
        sink.reset()
        track = client.track
        event = EVENT
        gc.collect()
        p0 = time.process_time()
        t0 = time.perf_counter()
        for _ in range(events):
            track(event)
        t1 = time.perf_counter()
        drain_old(client)
        t2 = time.perf_counter()
        p1 = time.process_time()
    finally:
        client.shutdown()
    received = sink.stats()
    return _figures(events, t0, t1, t2, received, [], None, p1 - p0)


def _figures(
    events: int,
    t0: float,
    t1: float,
    t2: float,
    received: dict[str, int],
    problems: list[str],
    stats: dict[str, Any] | None,
    cpu_seconds: float,
) -> dict[str, Any]:
    if received["events"] != events:
        problems.append(f"sink received {received['events']} events, expected {events}")
    if received["duplicate_batch_ids"] or received["bad"]:
        problems.append(f"sink saw duplicates or bad bodies: {received}")
    return {
        "events_per_second": events / (t2 - t0),
        # Events per CPU-second of the client process (all its threads): what it would reach with a core to
        # itself if its threads never waited on the sink. Less sensitive to other load; not the goal figure.
        "events_per_cpu_second": events / cpu_seconds if cpu_seconds > 0 else 0.0,
        "track_phase_seconds": t1 - t0,
        "total_seconds": t2 - t0,
        "batches": received["batches"],
        "connections": received["connections"] - 1,  # less the one that asked for these counters
        "problems": problems,
        "client_stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement (default 100000)")
    parser.add_argument("--batch-sizes", default="100,1000", help="comma-separated batch sizes (default 100,1000)")
    parser.add_argument("--name", default="delivery", help="results file name (benchmarks/results/<name>.json)")
    args = parser.parse_args()
    batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]

    load_peekapi010()
    warn_if_loaded()
    info = machine()
    started = time.time()
    runners = {"new": run_new, "old": run_old}
    names = {"new": f"peekapi {peekapi.__version__} (new)", "old": f"peekapi {OLD_VERSION}"}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(size): {impl: [] for impl in runners} for size in batch_sizes
    }
    loads: list[float] = []
    failures: list[str] = []
    with Sink() as sink:
        # Warm up both, untimed (imports, first connections).
        for runner in runners.values():
            runner(sink, 2_000, 100)
        for round_index in range(args.rounds):
            order = ["new", "old"] if round_index % 2 == 0 else ["old", "new"]
            loads.append(load_average()[0])
            line = []
            for size in batch_sizes:
                for impl in order:
                    figures = runners[impl](sink, args.events, size)
                    runs[str(size)][impl].append(figures)
                    failures += [f"{names[impl]} batch {size}: {p}" for p in figures["problems"]]
                    line.append(f"{impl}@{size} {figures['events_per_second']:,.0f}/s")
            print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(line), flush=True)

    results: dict[str, Any] = {
        **run_record(
            "delivery throughput to a loopback sink, events per second",
            "python benchmarks/bench_delivery.py",
            started,
            loads,
            names,
        ),
        "config": {
            "rounds": args.rounds,
            "events": args.events,
            "batch_sizes": batch_sizes,
            "options": "max_buffer_size: events (0.1.0), 2 x events (new); everything else default",
            "old_drive": "its worker plus flush() called in a loop until its buffer is empty",
        },
        "results": {},
        "failures": failures,
    }
    rows: list[list[str]] = []
    for size in batch_sizes:
        entry: dict[str, Any] = {}
        for impl in ("new", "old"):
            figures = runs[str(size)][impl]
            rate = summarise([f["events_per_second"] for f in figures])
            entry[impl] = {
                "events_per_second": rate,
                "events_per_cpu_second": summarise([f["events_per_cpu_second"] for f in figures]),
                "track_phase_seconds": summarise([f["track_phase_seconds"] for f in figures]),
                "total_seconds": summarise([f["total_seconds"] for f in figures]),
                "batches_per_run": figures[-1]["batches"],
                "connections_per_run": figures[-1]["connections"],
                "last_client_stats": figures[-1]["client_stats"],
            }
            if impl == "new":
                by_thread: dict[str, list[float]] = {}
                for f in figures:
                    for name, value in f.get("cpu_us_per_event_by_thread", {}).items():
                        by_thread.setdefault(name, []).append(value)
                entry[impl]["cpu_us_per_event_by_thread"] = {name: summarise(v) for name, v in by_thread.items()}
        ratio = entry["new"]["events_per_second"]["median"] / entry["old"]["events_per_second"]["median"]
        entry["ratio_new_over_old"] = round(ratio, 2)
        results["results"][str(size)] = entry
        new, old = entry["new"], entry["old"]
        rows.append(
            [
                str(size),
                _rate(new["events_per_second"]),
                f"{new['connections_per_run']}",
                _rate(old["events_per_second"]),
                f"{old['connections_per_run']}",
                f"{ratio:.1f}x",
            ]
        )
    goal_size = "100" if "100" in results["results"] else str(batch_sizes[0])
    best_new = results["results"][goal_size]["new"]["events_per_second"]["median"]
    results["goal"] = {
        "delivery_at_least_100k_events_per_second": best_new >= GOAL_EVENTS_PER_SECOND,
        "batch_size": int(goal_size),
        "new_median_events_per_second": round(best_new),
    }

    print_table(
        f"delivery, events/s, median (min-max) of {args.rounds} rounds x {args.events:,} events",
        ["batch", names["new"], "conns", names["old"], "conns", "new / 0.1.0"],
        rows,
    )
    for size in batch_sizes:
        entry = results["results"][str(size)]
        print(
            f"batch {size}: events per CPU-second of the client process (median): "
            f"new {entry['new']['events_per_cpu_second']['median']:,.0f}, "
            f"0.1.0 {entry['old']['events_per_cpu_second']['median']:,.0f}"
        )
        threads = results["results"][str(size)]["new"].get("cpu_us_per_event_by_thread", {})
        if threads:
            parts = ", ".join(f"{name} {value['median']:.1f}" for name, value in threads.items())
            print(f"new SDK, batch {size}: CPU us per event by thread (median): {parts}")
    print(f"load average 1 min per round: {results['load_average_1min_per_round']}; cores: {info['cores']}")
    verdict = "met" if best_new >= GOAL_EVENTS_PER_SECOND else "NOT met"
    print(f"goal (>= {GOAL_EVENTS_PER_SECOND:,} events/s, batch {goal_size}): {verdict} ({best_new:,.0f}/s)")
    print(f"written to {write_results(args.name, results)}")
    if failures:
        print("FAILED CHECKS:\n  " + "\n  ".join(failures))
        raise SystemExit(1)


def _rate(summary: dict[str, Any]) -> str:
    return f"{summary['median']:,.0f} ({summary['min']:,.0f}-{summary['max']:,.0f})"


if __name__ == "__main__":
    main()
