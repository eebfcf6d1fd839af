"""Instructions, not seconds: what the middleware and the encoder cost, counted by callgrind.

Timed figures on this 2-core virtual machine move by more than the changes worth making (see README.md), so
this benchmark counts the instructions a piece of work executes, with valgrind's callgrind (Debian package
``valgrind``), which no other load on the machine changes:

- ``request``: instructions per request over the bare app, for the minimal Starlette, Flask and FastAPI apps
  of ``bench_middleware`` called in-process (no sockets): ``noop`` (a pass-through middleware that counts the
  body, the floor for any middleware that records responses), ``minimal`` (``noop`` plus the status, two clock
  reads and a tuple appended to a deque: the floor for any middleware that records requests), ``complete``
  (``minimal`` plus the rest of peekapi's event, as leanly: route template, request size, consumer headers, status
  500 on an exception, no error of its own into the app; the floor for a middleware recording what peekapi
  records) and ``peekapi`` (the request path only: its events are held in memory, as ``bench_middleware``'s
  "peekapi-path" variant).
- ``encode``: instructions per compact middleware event taken from the buffer and encoded into batches (the
  background thread's main per-event work; the events come unmarshalled from frames, as a delivery process got
  them in earlier versions, the unmarshalling subtracted).

Each figure is the difference between two runs of different lengths (N and 2N requests or events) divided by
N, so start-up, imports and warm-up cancel out. The garbage collector is frozen after warm-up and turned off
(``--gc`` keeps it on), so that the counts are those of the code; ``PYTHONHASHSEED=0`` and, where ``setarch``
exists, no address randomisation keep repeated runs close. The child waits a few seconds after its warm-up, so
that the client's threads are done with their start-up work (spool recovery, first waits) before the count:
raced into the measured run, that work made identical runs differ by millions of instructions (up to ~1,500
per request at 1,000 requests). It still happens now and then, and it only ever adds: each run is the least of
``--repeats`` (2). About 14 minutes on 2 cores with ``--against``, 8 without.

``--against SRC`` also counts the ``peekapi`` package found under ``SRC`` (a ``src`` directory, say of a git
worktree of an earlier commit) and prints it next to this tree's, so that a change is measured side by side::

    git worktree add /tmp/before HEAD~1
    python benchmarks/bench_instructions.py --against /tmp/before/src

Writes ``benchmarks/results/instructions.json``. Needs the ``frameworks`` extra and valgrind; not run in CI.
"""

from __future__ import annotations

import argparse
import gc
import marshal
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
SUITES = ("starlette", "flask", "fastapi")
VARIANTS = ("bare", "noop", "minimal", "complete", "peekapi")
WARM_UP = 1500
SETTLE = 3.0  # seconds between the warm-up and the measured run


# -- what runs under callgrind ----------------------------------------------------------------------------


def _request_runner(suite: str, variant: str, n: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """(warm-up, measured run) for ``n`` requests of ``suite`` with ``variant``."""
    sys.path.insert(0, str(HERE))
    os.environ.setdefault("BENCH_SINK", "http://127.0.0.1:9/v1/events")  # held in memory: never sent
    import bench_middleware as bm

    mode = "peekapi-path" if variant == "peekapi" else variant
    if suite == "flask":
        app = bm.flask_app(mode)
        return bm.wsgi_runner(app, WARM_UP), bm.wsgi_runner(app, n)
    app = bm.starlette_app(mode) if suite == "starlette" else _fastapi_app(bm, mode)
    scope = dict(bm.SCOPE)
    if suite == "fastapi":
        scope.update(path="/v1/", raw_path=b"/v1/")
    bm.SCOPE = scope
    return bm.asgi_runner(app, WARM_UP), bm.asgi_runner(app, n)


def _fastapi_app(bm: Any, mode: str) -> Any:
    """FastAPI with one route in an included ``APIRouter`` (so its effective route context is in the scope)."""
    from fastapi import APIRouter, FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/", response_class=PlainTextResponse)
    async def hello() -> PlainTextResponse:
        return PlainTextResponse("hello, world")

    app.include_router(router)
    if mode == "peekapi-path":
        from peekapi.middleware import PeekApiASGI

        app.add_middleware(PeekApiASGI, client=bm._new_client(mode))
    elif mode == "noop":
        app.add_middleware(bm.NoopASGI)
    elif mode == "minimal":
        app.add_middleware(bm.MinimalASGI)
    elif mode == "complete":
        app.add_middleware(bm.CompleteASGI)
    return app


def _encode_runner(n: int, encode: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """(warm-up, measured run): ``n`` compact events unmarshalled from frames of 1,000, encoded or not."""
    import inspect

    from peekapi.batch import build_batches
    from peekapi.buffer import unpack

    # Until commit 3e4dc39 build_batches took (event, tracked-at) pairs, which the worker unpacked from the
    # buffer's entries: count that unpacking too, so that trees of either kind compare like for like.
    pairs = next(iter(inspect.signature(build_batches).parameters)) == "items"
    at = 1_790_000_000.0

    def frames(count: int) -> list[bytes]:
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"x-api-key", b"key-123")]
        return [
            marshal.dumps(
                [
                    ("GET", f"/users/{i % 500}", 200, 1.234 + i * 1e-6, 0, 12, headers, "/users/{uid}", at + i * 1e-5)
                    for i in range(start, start + 1000)
                ]
            )
            for start in range(0, count, 1000)
        ]

    def run(data: list[bytes]) -> None:
        for frame in data:
            entries = marshal.loads(frame)
            if encode:
                for k in range(0, len(entries), 100):
                    build_batches(
                        [unpack(entry) for entry in entries[k : k + 100]] if pairs else entries[k : k + 100],
                        max_count=100,
                        max_bytes=1 << 20,
                        max_event_bytes=65_536,
                        on_drop=lambda reason, count: None,
                    )

    warm, measured = frames(WARM_UP), frames(n)
    return (lambda: run(warm)), (lambda: run(measured))


def child(what: str, variant: str, n: int, keep_gc: bool) -> None:
    """Warm up, then run the measured work: what callgrind counts, minus the same for another ``n``."""
    if what == "encode":
        warm, run = _encode_runner(n, encode=variant == "encode")
    else:
        warm, run = _request_runner(what, variant, n)
    warm()
    # Let the client's threads finish their start-up work (spool recovery, first waits) before the count:
    # raced into the measured run, it made identical runs differ by millions of instructions.
    time.sleep(SETTLE)
    gc.collect()
    gc.freeze()
    if not keep_gc:
        gc.disable()
    run()
    os._exit(0)  # no interpreter shutdown in the count (nor the clients' final flush)


# -- the driver ---------------------------------------------------------------------------------------------


def _collected(src: Path, what: str, variant: str, n: int, keep_gc: bool) -> int:
    """Instructions callgrind counts for one child run."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        what,
        variant,
        str(n),
    ]
    if keep_gc:
        command.append("--gc")
    if shutil.which("setarch"):
        command = ["setarch", "-R", *command]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(src))
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({what} {variant} {n}): {done.stderr[-2000:]}")
    return int(found.group(1))


def per_unit(src: Path, what: str, variant: str, n: int, keep_gc: bool, repeats: int) -> int:
    """Instructions per request (or event) of ``variant``: the difference of a 2n and an n run, over n.

    Each run is the least of ``repeats``: what else runs in the process (the client's threads) only adds.
    """
    runs = {size: min(_collected(src, what, variant, size, keep_gc) for _ in range(repeats)) for size in (n, 2 * n)}
    return (runs[2 * n] - runs[n]) // n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="N requests (the runs are N and 2N)")
    parser.add_argument("--events", type=int, default=5000, help="N events for the encoder")
    parser.add_argument("--suites", default=",".join(SUITES), help="comma-separated: " + ", ".join(SUITES))
    parser.add_argument("--against", type=Path, help="a src directory with another peekapi, counted side by side")
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector on")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each size, the least counted")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="callgrind runs at once")
    parser.add_argument("--child", nargs=3, metavar=("WHAT", "VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, variant, n = args.child
        child(what, variant, int(n), args.gc)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    trees = {"this tree": SRC}
    if args.against is not None:
        trees[f"against {args.against}"] = args.against.resolve()
    suites = [name.strip() for name in args.suites.split(",") if name.strip()]
    jobs: dict[tuple[str, str, str], Any] = {}
    with ThreadPoolExecutor(max(args.jobs, 1)) as pool:
        for suite in suites:
            for variant in VARIANTS:
                for label, src in trees.items():
                    if variant != "peekapi" and label != "this tree":
                        continue  # the other variants do not run peekapi
                    jobs[(suite, variant, label)] = pool.submit(
                        per_unit, src, suite, variant, args.requests, args.gc, args.repeats
                    )
        for label, src in trees.items():
            for variant in ("none", "encode"):
                jobs[("encode", variant, label)] = pool.submit(
                    per_unit, src, "encode", variant, args.events, args.gc, args.repeats
                )
        counts = {key: future.result() for key, future in jobs.items()}

    results: dict[str, Any] = {
        "gc": args.gc,
        "requests": args.requests,
        "events": args.events,
        "repeats": args.repeats,
        "trees": {},
    }
    print(f"instructions per request over the bare app (callgrind; gc {'on' if args.gc else 'off'})")
    for suite in suites:
        bare = counts[(suite, "bare", "this tree")]
        row = {
            "bare": bare,
            "noop": counts[(suite, "noop", "this tree")] - bare,
            "minimal": counts[(suite, "minimal", "this tree")] - bare,
            "complete": counts[(suite, "complete", "this tree")] - bare,
        }
        print(
            f"  {suite:<10} bare {bare:>9,}   noop {row['noop']:>+8,}   minimal {row['minimal']:>+8,}"
            f"   complete {row['complete']:>+8,}",
            end="",
        )
        for label in trees:
            added = row[f"peekapi ({label})"] = counts[(suite, "peekapi", label)] - bare
            print(
                f"   peekapi ({label}) {added:>+8,} ({added / row['minimal']:.2f}x minimal,"
                f" {added / row['complete']:.2f}x complete)",
                end="",
            )
        print()
        results["trees"][suite] = row
    print("instructions per compact event taken from the buffer and encoded (unmarshalling subtracted)")
    for label in trees:
        per_event = counts[("encode", "encode", label)] - counts[("encode", "none", label)]
        results["trees"][f"encode ({label})"] = per_event
        print(f"  {label}: {per_event:,}")
    sys.path.insert(0, str(HERE))
    from _harness import machine, write_results

    results["machine"] = machine()
    print(f"written: {write_results('instructions', results)}")


if __name__ == "__main__":
    main()
