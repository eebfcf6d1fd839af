"""The figures behind RELIABILITY.md: what each fault or attack scenario's test counted in its last run.

Two parts, both inert unless ``PEEKAPI_RELIABILITY_REPORT`` names a file:

* ``report(scenario, **counts)``: called by a test where it already has its counts (events tracked, received at
  the ingest, lost, doubled, spooled...); appends one JSON line
  ``{"kind": "counts", "scenario", "nodeid", "counts", "time"}`` to that file. It never raises into the test and
  changes nothing the test asserts: a test reports before it asserts, so a failing run still shows its counts.
* a pytest plugin (``-p tests.support.reliability``, as ``scripts/reliability`` loads it): appends one line
  ``{"kind": "outcome", "nodeid", "outcome", "duration", "properties", "time"}`` per test, with the outcome of
  its call phase (or of its setup when that failed or skipped) and the integer ``record_property`` values the
  test recorded (so tests that cannot import this module still show their figures).

``scripts/reliability.py`` renders the table from these lines.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

ENV = "PEEKAPI_RELIABILITY_REPORT"


def current_nodeid() -> str:
    """The node id of the test running now, from ``PYTEST_CURRENT_TEST`` ("" outside a test)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    for phase in (" (setup)", " (call)", " (teardown)"):
        if current.endswith(phase):
            return current[: -len(phase)]
    return current


def _append(line: dict[str, Any]) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    data = (json.dumps(line) + "\n").encode()  # counts keep the order the test gave them
    # One write of one line to a file opened for appending: lines from several processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def report(scenario: str, **counts: int) -> None:
    """Record what the running test counted for ``scenario`` (one JSON line), when the variable names a file.

    ``counts`` are integers (``tracked=300, received=300, lost=0, doubled=0``). Does nothing when
    ``PEEKAPI_RELIABILITY_REPORT`` is unset or empty. A count that is not an ``int`` (``bool`` included) is a
    ``TypeError``: the table holds numbers only.
    """
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"report({scenario!r}): count {name}={value!r} is not an int")
    if not os.environ.get(ENV):
        return
    _append(
        {
            "kind": "counts",
            "scenario": scenario,
            "nodeid": current_nodeid(),
            "counts": counts,
            "time": time.time(),
        }
    )


# -- the pytest plugin -------------------------------------------------------------------------------------------


def pytest_runtest_logreport(report: Any) -> None:
    """Append the test's outcome once: from its call, or from a setup that failed or skipped it."""
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        properties = {
            str(name): value
            for name, value in getattr(report, "user_properties", ())
            if isinstance(value, int) and not isinstance(value, bool)
        }
        _append(
            {
                "kind": "outcome",
                "nodeid": report.nodeid,
                "outcome": report.outcome,
                "duration": round(float(report.duration), 3),
                "properties": properties,
                "time": time.time(),
            }
        )
    elif report.when == "teardown" and report.outcome == "failed":
        _append(
            {
                "kind": "outcome",
                "nodeid": report.nodeid,
                "outcome": "error",
                "duration": round(float(report.duration), 3),
                "properties": {},
                "time": time.time(),
            }
        )
