"""The whole cost of an event: CPU per event above the floor, in every process, and memory per tracking process.

    python benchmarks/bench_cost.py [--rounds 7] [--events 20000] [--rate 20000] [--variants none,floor,...]
    python benchmarks/bench_cost.py --host fastapi   # memory added to a FastAPI process

Each measurement is a fresh Python process (``_run`` below) that creates one client pointed at the loopback sink
(``_sink.py``, in a process of its own, not counted), warms it up, then tracks ``--events`` copies of the
harness's event at a steady ``--rate`` per second (a batch of events every millisecond, sleeping in between),
and waits until everything was delivered. Counted over that window:

- **CPU**: user + system time of the tracking process (``getrusage``) plus that of every process the SDK started
  (a delivery process, in SDKs that have one: the run time of each of its threads,
  ``/proc/<pid>/task/*/schedstat``), in microseconds per event. The figure reported is that minus the
  floor's, from the same round.
- **Memory**, at the end of the window: RSS and PSS (``/proc/<pid>/smaps_rollup``) of the tracking process and
  of its helper processes; reported as what each adds to ``none`` (the same process tracking into nothing, with
  no SDK imported). A bare Python process by default; with ``--host fastapi`` (or ``flask``, ...) every
  measuring process imports that first, so the figure is what the SDK adds to a process of such an application,
  which has already loaded much of the standard library the SDK imports (``logging``, ``dataclasses``, ...).

The variants, interleaved in a shuffled order every round (medians over rounds):

- ``none``: the pacing loop calling a function that does nothing. The base for memory.
- ``floor``: the least any batching client does (``_floor.FloorClient``): ``deque.append`` per event; one
  thread that wakes every 10 ms, ``json.dumps`` 100 events at a time and POSTs them over one kept-alive
  ``http.client`` connection.
- ``default``: this SDK as configured by default: its one delivery mode, two threads in the tracking process
  (until commit c91e624 it also had a ``delivery`` option, whose delivery process this benchmark measured).
- ``peekapi010``: peekapi 0.1.0 (``_harness.load_peekapi010``), drained at the end with ``_harness.drain_old``.

The run fails when the sink did not count exactly the events tracked, or saw a duplicate batch id. Writes
``benchmarks/results/cost.json``. The events tracked are ``_harness.EVENT`` (no timestamp: each SDK adds its own)
through ``track()``. Not run in CI.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _floor import FloorClient  # noqa: E402
from _harness import (  # noqa: E402 - after the path is set, for the runner process
    EVENT,
    Sink,
    drain_old,
    load_average,
    load_peekapi010,
    print_table,
    run_record,
    warn_if_loaded,
    write_results,
)

ALL_VARIANTS = ("none", "floor", "default", "peekapi010")
TICK = 0.001  # the pacing loop tracks a slice of events every millisecond
WARM_UP = 2_000
GOAL_US_ABOVE_FLOOR = 3.0
GOAL_MEMORY_MB = 5.0


# -- one measurement, in its own process ------------------------------------------------------------------


def _own_children() -> list[int]:
    """Pids of this process's children (those the SDK started), from /proc."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _children_cpu(pids: list[int]) -> float:
    """Seconds of CPU the live threads of ``pids`` have run (schedstat: nanoseconds, first field)."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _memory(pid: int | str) -> tuple[int, int]:
    """RSS and PSS in kB of one process."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _make(variant: str, url: str, events: int) -> tuple[Callable[[dict[str, Any]], None], Callable[[int], None]]:
    """The variant's track function and its "deliver everything, then return" function."""
    storage = tempfile.mkdtemp(prefix=f"peekapi-cost-{variant}-")
    if variant == "none":
        return (lambda event: None), (lambda total: None)
    if variant == "floor":
        floor = FloorClient(url)
        return floor.track, floor.drain
    if variant == "peekapi010":
        old = load_peekapi010()
        client = old.PeekApiClient(
            old.Options(
                api_key="ak_bench_old",
                endpoint=url,
                max_buffer_size=2 * events,
                storage_path=storage + "/events.jsonl",
            )
        )
        return client.track, lambda total: drain_old(client)
    sys.path.insert(0, str(HERE.parent / "src"))
    import peekapi

    options: dict[str, Any] = {
        "api_key": "ak_bench_new",
        "endpoint": url,
        "storage_path": storage,
        "max_buffer_size": 2 * events,
    }
    client = peekapi.PeekApiClient(options)

    def deliver(total: int) -> None:
        if not client.flush(60.0):
            raise RuntimeError(f"flush() did not deliver everything: {client.stats()}")

    return client.track, deliver


def _pace(track: Callable[[dict[str, Any]], None], events: int, rate: int) -> None:
    """Track ``events`` at a steady ``rate`` per second: a slice every TICK, sleeping in between."""
    per_tick = max(1, round(rate * TICK))
    event = EVENT
    start = time.monotonic()
    done = 0
    tick = 0
    while done < events:
        for _ in range(min(per_tick, events - done)):
            track(event)
        done += per_tick
        tick += 1
        delay = start + tick * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def run_one(variant: str, url: str, events: int, rate: int) -> dict[str, Any]:
    """Runs in the measuring process: warm up, pace ``events`` in, deliver, count."""
    track, deliver = _make(variant, url, events)
    _pace(track, WARM_UP, rate)
    deliver(WARM_UP)
    time.sleep(0.3)  # start-up work (spool recovery, first connection) out of the window
    children = _own_children()
    gc.collect()
    cpu0, child0, t0 = _self_cpu(), _children_cpu(children), time.monotonic()
    _pace(track, events, rate)
    deliver(WARM_UP + events)
    cpu1, child1, t1 = _self_cpu(), _children_cpu(children), time.monotonic()
    rss, pss = _memory("self")
    child_rss = child_pss = 0
    for pid in children:
        c_rss, c_pss = _memory(pid)
        child_rss += c_rss
        child_pss += c_pss
    return {
        "app_cpu_us_per_event": (cpu1 - cpu0) / events * 1e6,
        "helper_cpu_us_per_event": (child1 - child0) / events * 1e6,
        "seconds": t1 - t0,
        "helpers": len(children),
        "rss_kb": rss,
        "pss_kb": pss,
        "helper_rss_kb": child_rss,
        "helper_pss_kb": child_pss,
    }


def _child_main(argv: list[str]) -> None:
    variant, url, events, rate = argv[0], argv[1], int(argv[2]), int(argv[3])
    for module in filter(None, argv[4].split(",")):
        importlib.import_module(module)  # the application the tracking process serves, in every variant
    figures = run_one(variant, url, events, rate)
    print(json.dumps(figures), flush=True)
    os._exit(0)  # no exit-time flush in the window's figures, nor waiting for it


# -- the driver ---------------------------------------------------------------------------------------------


def measure(variant: str, sink: Sink, events: int, rate: int, host: str = "") -> dict[str, Any]:
    sink.reset()
    done = subprocess.run(
        [sys.executable, __file__, "_run", variant, sink.url, str(events), str(rate), host],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    received = sink.stats()
    expected = 0 if variant == "none" else events + WARM_UP
    problems = []
    if received["events"] != expected:
        problems.append(f"sink counted {received['events']} events, expected {expected}")
    if received["duplicate_batch_ids"] or received["bad"]:
        problems.append(f"sink saw duplicates or bad bodies: {received}")
    figures["cpu_us_per_event"] = figures["app_cpu_us_per_event"] + figures["helper_cpu_us_per_event"]
    figures["problems"] = problems
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=20_000, help="events per second (default 20000)")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS))
    parser.add_argument("--name", default="cost", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument(
        "--host",
        default="",
        help="modules every measuring process imports first (comma-separated, e.g. fastapi or flask): memory is"
        " then what the SDK adds to a process of that application, which has loaded much of what it imports",
    )
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(ALL_VARIANTS):
        parser.error(f"unknown variants: {', '.join(sorted(set(variants) - set(ALL_VARIANTS)))}")
    if "floor" not in variants or "none" not in variants:
        parser.error("the variants must include floor and none (the bases of the figures)")
    load_peekapi010()
    warn_if_loaded()
    started = time.time()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    loads: list[float] = []
    failures: list[str] = []
    with Sink() as sink:
        for round_index in range(args.rounds):
            order = list(variants)
            random.shuffle(order)
            loads.append(load_average()[0])
            line = []
            for variant in order:
                figures = measure(variant, sink, args.events, args.rate, args.host)
                runs[variant].append(figures)
                failures += [f"{variant}: {p}" for p in figures["problems"]]
                line.append(f"{variant} {figures['cpu_us_per_event']:.1f}")
            print(f"round {round_index + 1}/{args.rounds} (us/event): " + ", ".join(line), flush=True)

    summary = _summarise(runs, variants, args.rounds)
    _print(summary, variants, args)
    results = {
        **run_record(
            "whole cost of an event: CPU per event above the floor in every process, memory per process",
            "python benchmarks/bench_cost.py " + " ".join(sys.argv[1:]),
            started,
            loads,
            {v: v for v in variants},
        ),
        "events": args.events,
        "rate_per_second": args.rate,
        "summary": summary,
        "runs": runs,
        "failures": failures,
    }
    path = write_results(args.name, results)
    print(f"\nwritten: {path}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def _summarise(runs: dict[str, list[dict[str, Any]]], variants: list[str], rounds: int) -> dict[str, Any]:
    """Per variant: medians of the per-round differences to the floor (CPU) and to ``none`` (memory)."""
    summary: dict[str, Any] = {}
    for variant in variants:
        above = [runs[variant][i]["cpu_us_per_event"] - runs["floor"][i]["cpu_us_per_event"] for i in range(rounds)]
        rss = [
            (runs[variant][i]["rss_kb"] + runs[variant][i]["helper_rss_kb"] - runs["none"][i]["rss_kb"]) / 1024
            for i in range(rounds)
        ]
        pss = [
            (runs[variant][i]["pss_kb"] + runs[variant][i]["helper_pss_kb"] - runs["none"][i]["pss_kb"]) / 1024
            for i in range(rounds)
        ]
        summary[variant] = {
            "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in runs[variant]),
            "helper_cpu_us_per_event": statistics.median(r["helper_cpu_us_per_event"] for r in runs[variant]),
            "above_floor_us": statistics.median(above),
            "above_floor_quartiles": _quartiles(above),
            "rss_added_mb": statistics.median(rss),
            "pss_added_mb": statistics.median(pss),
            "helpers": max(r["helpers"] for r in runs[variant]),
        }
    return summary


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]]
    q = statistics.quantiles(values, n=4)
    return [round(q[0], 2), round(q[2], 2)]


def _print(summary: dict[str, Any], variants: list[str], args: argparse.Namespace) -> None:
    old = summary.get("peekapi010", {}).get("above_floor_us")
    rows = []
    for variant in variants:
        s = summary[variant]
        ratio = f"{s['above_floor_us'] / old:.3f}x" if old and variant not in ("none", "floor") else ""
        rows.append(
            [
                variant,
                f"{s['cpu_us_per_event']:.2f}",
                f"{s['helper_cpu_us_per_event']:.2f}",
                f"{s['above_floor_us']:+.2f}",
                f"[{s['above_floor_quartiles'][0]:+.2f}, {s['above_floor_quartiles'][1]:+.2f}]",
                ratio,
                f"{s['rss_added_mb']:.1f}",
                f"{s['pss_added_mb']:.1f}",
                str(s["helpers"]),
            ]
        )
    print_table(
        f"{args.events:,} events at {args.rate:,}/s, {args.rounds} rounds, medians "
        f"(goal: <= {GOAL_US_ABOVE_FLOOR} us above the floor, <= {GOAL_MEMORY_MB} MB added)",
        [
            "variant",
            "us/event",
            "in helpers",
            "above floor",
            "quartiles",
            "of 0.1.0's",
            "RSS+ MB",
            "PSS+ MB",
            "helpers",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
