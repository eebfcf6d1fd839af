"""SIGTERM / SIGINT: a plain program whose client (created on the main thread) installs signal handlers.

Usage: ``signals.py MODE COUNT [warm]``. Tracks COUNT events, says ``tracked COUNT`` and waits for a signal.
With ``warm``, one event (``warm-0``) is delivered first, so the connection is open and kept alive.

- ``term``: nothing else installed; SIGTERM must flush and then still kill the process (status -15).
- ``chain``: the app installed its own SIGTERM handler before the client; it says ``app-handler`` and exits 3.
- ``int``: SIGINT must flush and then raise KeyboardInterrupt in the main thread as usual.
- ``busy``: the main thread keeps tracking (COUNT is ignored) when SIGTERM lands, maybe inside ``track()``;
  the app's handler (installed before the client) says ``app-handler N`` (events tracked so far) and exits 3.
- ``graceful``: like a server with its own graceful shutdown: the app's SIGTERM handler (installed before the
  client) only says ``app-handler`` and sets a flag; the main loop then tracks COUNT more events
  ``graceful-after-i`` (requests still in flight), says ``finished`` and returns normally.
- ``in-lock``: after tracking, the main thread keeps calling ``stats()``; a profile hook sends SIGTERM to the
  process from inside peekapi code on the main thread, so the handler runs right there: at the first moment
  that code holds a lock, else at its 2000th call into C (says ``signal-inside Class.method why``). Should
  neither come within 2 s, it sends SIGTERM from outside (says ``signal-outside``). Nothing else installed:
  the signal must still kill the process.
- ``nested``: after tracking, a thread starts ``shutdown(2)`` (the test makes the collector hang, so it takes its
  whole deadline); the main thread calls ``shutdown(2)`` too, which waits for the first, and a profile hook sends
  SIGTERM from inside that wait (says ``signal-inside-wait``): the handler's own ``shutdown()`` waits there again,
  nested. The signal must still kill the process once the first shutdown is done.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from _common import client, event, say

mode, count = sys.argv[1], int(sys.argv[2])
tracked = 0

# What a normal interpreter starts with, whatever the test runner's own disposition was.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)

stopping = False
if mode in ("chain", "busy"):

    def app_handler(signum: int, frame: object) -> None:
        say("app-handler", tracked, signum)
        sys.exit(3)

    signal.signal(signal.SIGTERM, app_handler)
elif mode == "graceful":

    def graceful_handler(signum: int, frame: object) -> None:
        global stopping
        stopping = True
        say("app-handler", tracked, signum)

    signal.signal(signal.SIGTERM, graceful_handler)

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

if mode == "in-lock":
    lock_type = type(threading.Lock())
    fired = False
    calls = 0

    def hook(frame: FrameType, what: str, arg: Any) -> None:
        global fired, calls
        if fired or what != "c_call" or "peekapi" not in frame.f_code.co_filename:
            return
        calls += 1
        owner = frame.f_locals.get("self")
        # A lock held, and not by the very call that is acquiring it: this thread is inside the locked region.
        values = [*getattr(owner, "__dict__", {}).values()]
        values += [getattr(owner, name, None) for name in getattr(type(owner), "__slots__", ())]
        held = any(
            isinstance(value, lock_type) and value.locked() and getattr(arg, "__self__", None) is not value
            for value in values
        )
        if held or calls >= 2000:
            fired = True
            sys.setprofile(None)
            where = f"{type(owner).__name__}.{frame.f_code.co_name}"
            say("signal-inside", where, "holding-a-lock" if held else f"at-call-{calls}")
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs on this thread, inside that call
            return

    time.sleep(0.5)  # the client's threads are past their start-up work (spool recovery, first waits)
    say("tracked", count)
    sys.setprofile(hook)
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        c.stats()
    sys.setprofile(None)
    say("signal-outside")
    os.kill(os.getpid(), signal.SIGTERM)
    while True:
        signal.pause()

if mode == "nested":
    first = threading.Thread(target=c.shutdown, args=(2,), name="first-shutdown")
    first.start()
    time.sleep(0.2)
    sent = False

    def in_wait(frame: FrameType, what: str, arg: Any) -> None:
        global sent
        if not sent and what == "c_call" and frame.f_code.co_name == "wait":
            sent = True
            sys.setprofile(None)
            say("signal-inside-wait", frame.f_code.co_filename.rsplit("/", 1)[-1])
            os.kill(os.getpid(), signal.SIGTERM)

    say("tracked", count)
    sys.setprofile(in_wait)
    c.shutdown(2)
    sys.setprofile(None)
    say("returned", sent)
    while True:
        signal.pause()

if mode == "graceful":
    say("tracked", count)
    while not stopping:
        time.sleep(0.01)
    for i in range(count):
        c.track(event("graceful-after", i))
    say("finished")
    sys.exit(0)

try:
    say("tracked", count)
    while True:
        signal.pause()
except KeyboardInterrupt:
    say("keyboardinterrupt")
    raise
