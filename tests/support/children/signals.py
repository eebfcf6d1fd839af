"""SIGTERM / SIGINT: a plain program whose client (created on the main thread) installs signal handlers.

Usage: ``signals.py MODE COUNT [warm]``. Tracks COUNT events, says ``tracked COUNT`` and waits for a signal.
With ``warm``, one event (``warm-0``) is delivered first, so the connection is open and kept alive.

- ``term``: nothing else installed; SIGTERM must flush and then still kill the process (status -15).
- ``chain``: the app installed its own SIGTERM handler before the client; it says ``app-handler`` and exits 3.
- ``int``: SIGINT must flush and then raise KeyboardInterrupt in the main thread as usual.
- ``busy``: the main thread keeps tracking (COUNT is ignored) when SIGTERM lands, maybe inside ``track()``;
  the app's handler (installed before the client) says ``app-handler N`` (events tracked so far) and exits 3.
"""

from __future__ import annotations

import signal
import sys
import time

from _common import client, event, say

mode, count = sys.argv[1], int(sys.argv[2])
tracked = 0

# What a normal interpreter starts with, whatever the test runner's own disposition was.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)

if mode in ("chain", "busy"):

    def app_handler(signum: int, frame: object) -> None:
        say("app-handler", tracked, signum)
        sys.exit(3)

    signal.signal(signal.SIGTERM, app_handler)

c = client()
if sys.argv[3:] == ["warm"]:
    c.track(event("warm", 0))
    say("warm", c.flush(5))
say("handlers", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)

if mode == "busy":
    say("ready")
    while True:
        for _ in range(50):
            c.track(event("busy", tracked))
            tracked += 1
        time.sleep(0.002)

for i in range(count):
    c.track(event(mode, i))
tracked = count
try:
    say("tracked", count)
    while True:
        signal.pause()
except KeyboardInterrupt:
    say("keyboardinterrupt")
    raise
