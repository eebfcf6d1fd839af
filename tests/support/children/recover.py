"""Recovers a spool: starts a client on it and runs until the spool directory is empty.

Usage: ``recover.py [go]``. With ``go``, waits for a ``go`` line on stdin before starting the client (so that
several recoverers start together). Says ``started``, then, once no file is left in the spool (or after 20 s),
``stats {...}`` and ``done``, and exits 0 after ``shutdown()``.
"""

from __future__ import annotations

import os
import sys
import time

from _common import client, say, stats_line, wait_line

if sys.argv[1:] == ["go"]:
    say("waiting")
    wait_line("go")
storage = os.environ["CHILD_STORAGE"]
c = client()
say("started")
deadline = time.monotonic() + 20.0
while time.monotonic() < deadline:
    if not os.path.isdir(storage) or not os.listdir(storage):
        break
    time.sleep(0.02)
stats_line(c)
say("shutdown", c.shutdown())
say("done")
