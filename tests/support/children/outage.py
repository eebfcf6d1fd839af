"""Tracks events while the collector is down, so that they end up in the shared spool.

Usage: ``outage.py TAG COUNT CHUNK THEN``. Tracks COUNT events ``TAG-i`` in chunks of CHUNK, calling ``flush()``
after each chunk: with the collector failing, each chunk becomes its own spool file (many files, so that
processes recovering them later really compete for claims). Then says ``stats {...}`` and, by THEN:

- ``shutdown``: calls ``shutdown()``, says ``shutdown True|False`` and ``stats {...}`` again, and exits 0;
- ``wait``: blocks until the test kills it.
"""

from __future__ import annotations

import sys

from _common import client, event, say, stats_line, wait_line

tag, count, chunk, then = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = client()
for start in range(0, count, chunk):
    for i in range(start, min(start + chunk, count)):
        c.track(event(tag, i))
    c.flush(10)
stats_line(c)
if then == "shutdown":
    say("shutdown", c.shutdown())
    stats_line(c)
else:
    wait_line("never", timeout=120)
