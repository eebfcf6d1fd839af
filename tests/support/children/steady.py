"""Steady traffic until killed: tracks RATE events per second and says ``tracked N`` about every 10 ms.

Usage: ``steady.py TAG RATE``. Never stops by itself: the test ends it with SIGKILL. Event ids are ``TAG-i``;
a ``tracked N`` line means events ``0 .. N-1`` were tracked before it was written.
"""

from __future__ import annotations

import sys
import time

from _common import client, event, say

tag, rate = sys.argv[1], float(sys.argv[2])
c = client()
say("ready")
started = time.monotonic()
tracked = 0
while True:
    due = int((time.monotonic() - started) * rate)
    while tracked < due:
        c.track(event(tag, tracked))
        tracked += 1
    say("tracked", tracked, f"{time.monotonic():.3f}")
    time.sleep(0.01)
