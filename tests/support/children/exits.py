"""Interpreter exit without ``shutdown()``: what is buffered must still be delivered (atexit).

Usage: ``exits.py MODE COUNT``.

- ``plain``: tracks COUNT events ``plain-i`` on the main thread, then the script simply ends.
- ``thread``: the client is created (and COUNT events ``thread-i`` tracked) on a worker thread, so no signal
  handler is installed (says ``handlers False``); the main thread then calls ``sys.exit(5)``.
"""

from __future__ import annotations

import signal
import sys
import threading

from _common import client, event, say

mode, count = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGTERM, signal.SIG_DFL)

if mode == "plain":
    c = client()
    for i in range(count):
        c.track(event("plain", i))
    say("tracked", count)
else:
    holder = []

    def start() -> None:
        holder.append(client())
        for i in range(count):
            holder[0].track(event("thread", i))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    say("handlers", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
    say("tracked", count)
    sys.exit(5)
