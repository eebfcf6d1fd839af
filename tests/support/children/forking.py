"""A client created before ``fork()``, like an app loaded by ``gunicorn --preload``.

Usage: ``forking.py MODE PRE CHILD POST``. The parent creates the client and tracks PRE events ``pre-i``, then:

- ``os-exit``: ``os.fork()``; the child tracks CHILD events ``child-i``, calls ``shutdown()`` and ``os._exit(0)``;
- ``sys-exit``: the same, but the child ends with ``sys.exit(0)`` (atexit must flush it);
- ``os-term``: the same, but the child says ``forked PID`` and waits to be ended by SIGTERM (the handlers it
  inherited must flush the child's client, and the signal must still kill it);
- ``mp``: a ``multiprocessing`` process started with the 'fork' method tracks CHILD events ``child-i`` and
  returns after ``flush()``;
- ``mp-noflush``: the same, but the target just returns (multiprocessing ends the child with ``os._exit``).

The parent waits for the child, says ``child-exit STATUS``, waits for ``go`` on stdin, tracks POST events
``post-i`` and ends without calling ``shutdown()``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import warnings

from _common import client, event, say, wait_line

# Python 3.12 warns that forking a multi-threaded process may deadlock; that is the very case tested here.
warnings.simplefilter("ignore", DeprecationWarning)

mode, pre, in_child, post = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
signal.signal(signal.SIGTERM, signal.SIG_DFL)
c = client()
for i in range(pre):
    c.track(event("pre", i))
say("pre", pre)


def work() -> None:
    for i in range(in_child):
        c.track(event("child", i))
    if mode == "mp":
        c.flush(10)


if mode in ("os-exit", "sys-exit", "os-term"):
    pid = os.fork()
    if pid == 0:
        try:
            work()
            if mode == "os-exit":
                ok = c.shutdown(10)
                os._exit(0 if ok else 1)
            if mode == "os-term":
                say("forked", os.getpid())
                while True:
                    signal.pause()
        except BaseException:
            os._exit(2)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    say("child-exit", os.waitstatus_to_exitcode(status))
else:
    process = multiprocessing.get_context("fork").Process(target=work)
    process.start()
    process.join(30)
    say("child-exit", process.exitcode)

wait_line("go")
for i in range(post):
    c.track(event("post", i))
say("post", post)
