"""Shared by the child programs: options from the environment, numbered events, reporting on stdout."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from typing import Any

from peekapi import PeekApiClient

# A child that hangs shows where: the test sends SIGUSR1 before it gives up (see Child.wait).
faulthandler.register(signal.SIGUSR1, all_threads=True)


def options(**overrides: Any) -> dict[str, Any]:
    """Client options: the spool from CHILD_STORAGE, the rest from CHILD_OPTIONS, then ``overrides``.

    ``api_key`` and ``endpoint`` are left out on purpose: the SDK reads PEEKAPI_API_KEY and PEEKAPI_ENDPOINT.
    """
    opts: dict[str, Any] = {"storage_path": os.environ["CHILD_STORAGE"]}
    opts.update(json.loads(os.environ.get("CHILD_OPTIONS") or "{}"))
    opts.update(overrides)
    return opts


def client(**overrides: Any) -> PeekApiClient:
    interval = os.environ.get("CHILD_RECOVERY_INTERVAL")
    if interval:
        # Only to make "periodically" (every 30 s) testable in seconds; what happens is observed at the wire.
        import peekapi.sender

        peekapi.sender.RECOVERY_INTERVAL = float(interval)
    return PeekApiClient(options(**overrides))


def event(tag: str, i: int) -> dict[str, Any]:
    """Event number ``i`` of series ``tag``: its id is in the path and in the metadata."""
    ident = f"{tag}-{i}"
    return {
        "method": "get",
        "path": f"/e/{ident}",
        "status_code": 200,
        "response_time_ms": 1.0,
        "metadata": {"id": ident, "pid": os.getpid()},
    }


def say(*parts: object) -> None:
    """One line on stdout, flushed at once (the test waits on it)."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def stats_line(c: PeekApiClient) -> None:
    say("stats", json.dumps(c.stats()))


def wait_line(expected: str = "go", timeout: float = 60.0) -> None:
    """Block until the test writes ``expected`` on stdin (or stdin closes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = sys.stdin.readline()
        if not line or line.strip() == expected:
            return
