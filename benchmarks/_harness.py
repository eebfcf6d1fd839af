"""Shared benchmark plumbing: peekapi 0.1.0 side by side with this SDK, the loopback sink, and reporting.

- :func:`load_peekapi010` installs ``peekapi==0.1.0`` from PyPI into ``benchmarks/.cache/peekapi010`` (once,
  with ``pip install --target``) and imports it as the module ``peekapi010``, so both versions run in one
  process. 0.1.0 uses only relative imports inside its package, so loading it under another name is safe.
- :class:`Sink` starts ``_sink.py`` in a separate process (so it does not share the GIL with the client under
  test) and reads its counters over HTTP.
- :func:`summarise`, :func:`machine` and :func:`write_results` produce the table and the JSON evidence.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE / ".cache" / "peekapi010"
RESULTS_DIR = HERE / "results"
OLD_VERSION = "0.1.0"
OLD_MODULE = "peekapi010"

# A typical event as a middleware reports it.
EVENT: dict[str, Any] = {
    "method": "GET",
    "path": "/api/v1/users/12345/orders",
    "status_code": 200,
    "response_time_ms": 12.345,
    "request_size": 0,
    "response_size": 1532,
    "consumer_id": "hash_3f79bb7b435b",
}


def load_peekapi010() -> ModuleType:
    """Return peekapi 0.1.0 imported as ``peekapi010``, installing it into the cache directory when missing."""
    if OLD_MODULE in sys.modules:
        return sys.modules[OLD_MODULE]
    package_dir = CACHE_DIR / "peekapi"
    if not (package_dir / "__init__.py").exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing peekapi=={OLD_VERSION} into {CACHE_DIR} ...", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--target",
                str(CACHE_DIR),
                f"peekapi=={OLD_VERSION}",
            ],
            check=True,
        )
    # Keep the third-party copy out of git and out of ruff (which honours .gitignore files).
    ignore = CACHE_DIR.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    spec = importlib.util.spec_from_file_location(
        OLD_MODULE, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load peekapi {OLD_VERSION} from {package_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[OLD_MODULE] = module
    spec.loader.exec_module(module)
    version = sys.modules[f"{OLD_MODULE}._version"].__version__
    if version != OLD_VERSION:
        raise RuntimeError(f"expected peekapi {OLD_VERSION} in {package_dir}, found {version}")
    return module


class Sink:
    """The loopback sink (``_sink.py``) in its own process; use as a context manager."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Sink:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "_sink.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the sink stops when its stdin closes
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def url(self) -> str:
        """The ingest URL to point a client at."""
        return f"http://127.0.0.1:{self.port}/v1/events"

    def _call(self, method: str, path: str) -> dict[str, int]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            data = conn.getresponse().read()
        finally:
            conn.close()
        return json.loads(data) if data.strip() not in (b"", b"{}") else {}

    def stats(self) -> dict[str, int]:
        """The sink's counters: events, batches, bad, connections, duplicate_batch_ids."""
        return self._call("GET", "/_stats")

    def reset(self) -> None:
        """Zero the sink's counters."""
        self._call("POST", "/_reset")

    def wait_for(self, events: int, timeout: float) -> dict[str, int]:
        """Poll until the sink has counted at least ``events`` events (or ``timeout``); return its counters."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["events"] >= events or time.monotonic() >= deadline:
                return stats
            time.sleep(0.002)


def drain_old(client: Any, timeout: float = 120.0) -> None:
    """Deliver everything a peekapi 0.1.0 client holds.

    0.1.0's ``flush()`` sends at most one batch, and nothing while its own worker thread has a batch in flight,
    so call it until its buffer is empty and nothing is in flight, yielding briefly when it could not send.
    Reads 0.1.0's private ``_buffer`` and ``_in_flight``: it has no public way to ask.
    """
    deadline = time.monotonic() + timeout
    while client._buffer or client._in_flight:
        before = len(client._buffer)
        client.flush()
        if len(client._buffer) == before:
            time.sleep(0.0002)  # its worker holds a batch in flight: let it finish
        if time.monotonic() > deadline:
            raise RuntimeError(f"peekapi {OLD_VERSION} did not drain within {timeout} s")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each live thread of this process, by thread name (POSIX; else empty)."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            found[thread.name] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (AttributeError, OSError):
            continue
    return found


def temp_storage(prefix: str) -> str:
    """A fresh, empty directory for a client's disk spool (so no earlier run's leftovers are recovered)."""
    return tempfile.mkdtemp(prefix=f"peekapi-bench-{prefix}-")


def summarise(samples: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the raw samples of one measurement."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": [round(s, 3) for s in samples],
    }


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load_average()],
        "sdk_source": source(),
    }


def source() -> dict[str, Any]:
    """The commit of the SDK under test, and whether its source had uncommitted changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"), "src_modified": bool(git("status", "--porcelain", "src/peekapi"))}


def warn_if_loaded() -> None:
    """Say so when the machine is busy with other work: the figures will be slower and noisier."""
    load = load_average()[0]
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"note: 1-minute load average is {load:.2f} on {cores} cores; figures will be noisy", flush=True)


def run_record(
    benchmark: str, command: str, started: float, loads: Sequence[float], names: dict[str, str]
) -> dict[str, Any]:
    """The head every results file starts with: what ran, when, for how long, on what, under which load."""
    return {
        "benchmark": benchmark,
        "command": command,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "load_average_1min_per_round": [round(x, 2) for x in loads],
        "load_average_at_end": [round(x, 2) for x in load_average()],
        "implementations": names,
        "event": EVENT,
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``results`` as ``benchmarks/results/<name>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print an aligned plain-text table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(str(cell).rjust(width) for cell, width in zip(header, widths, strict=True)))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
