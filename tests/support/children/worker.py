"""A long-running app process (a gunicorn worker, say) driven line by line from stdin.

Commands, each answered on stdout:

- ``track TAG START COUNT CHUNK``: tracks events ``TAG-START .. TAG-(START+COUNT-1)`` in chunks of CHUNK, with a
  ``flush()`` after each chunk; answers ``stats {...}``;
- ``stats``: answers ``stats {...}``;
- ``shutdown``: answers ``shutdown True|False`` and ``stats {...}``, then exits 0.
"""

from __future__ import annotations

import sys

from _common import client, event, say, stats_line

c = client()
say("ready")
for line in sys.stdin:
    command, *args = line.split()
    if command == "track":
        tag, start, count, chunk = args[0], int(args[1]), int(args[2]), int(args[3])
        for first in range(start, start + count, chunk):
            for i in range(first, min(first + chunk, start + count)):
                c.track(event(tag, i))
            c.flush(10)
        stats_line(c)
    elif command == "stats":
        stats_line(c)
    elif command == "shutdown":
        say("shutdown", c.shutdown())
        stats_line(c)
        break
