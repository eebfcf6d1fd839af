"""The delivery process: the program a client in ``delivery="process"`` mode starts to encode and send its events.

It runs the very same buffer, worker, transport and spool as the threaded mode, on its own interpreter, so the
JSON encoding and HTTP cost the application's GIL nothing. It reads frames (see ``peekapi.channel``) from the
socket it was given, and answers flushes, stats requests and the stop; its log records and ``on_error`` reports
travel back to the application, which logs them under its own ``peekapi`` logger.

It runs at a background priority (nice 10, SCHED_BATCH on Linux), so that on a busy machine the application's
own threads come first. It runs in a session of its own and ignores SIGINT and SIGTERM besides (a service manager
may signal every process of the service; the application decides when delivery ends). It ends when told to stop,
or when the application is gone (end of stream, or a new parent), after delivering or spooling what it holds
within ``shutdown_timeout``.

Started by ``peekapi.relay`` as ``python -c <bootstrap> <fd>``; not meant to be run by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace
from typing import Any

from . import channel, worker
from .buffer import EventBuffer
from .channel import Channel, ChannelClosed
from .config import Settings
from .lifecycle import unblock_all_signals
from .spool import Spool
from .stats import Stats
from .transport import HttpTransport
from .worker import DeliveryError, Worker

logger = logging.getLogger("peekapi")

PARENT_CHECK = 1.0  # seconds between checks that the application is still there


class _Shipper(logging.Handler):
    """Sends this process's ``peekapi`` log records to the application as LOG frames."""

    def __init__(self, out: Channel) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._out.send(channel.LOG, (record.levelno, message))
        except Exception:  # the application is gone: nobody to tell
            pass


class Deliverer:
    """One delivery process's state: the worker and the channel to the application."""

    def __init__(self, out: Channel, settings: Settings) -> None:
        self.out = out
        self.settings = replace(settings, on_error=self._ship_error, handle_signals=False)
        self.stats = Stats()
        self.buffer = EventBuffer(settings.max_buffer_size, settings.batch_size)
        transport = HttpTransport(settings.endpoint, settings.api_key, settings.request_timeout)
        spool = Spool(settings.storage_dir, settings.max_storage_bytes)
        self.worker = Worker(self.settings, self.buffer, transport, spool, self.stats)
        self.spill_mark = max(settings.max_buffer_size * 3 // 4, settings.batch_size)
        self.received = 0  # events handed over by the application (in memory, spooled or dropped since)

    def _ship_error(self, error: Exception) -> None:
        if isinstance(error, DeliveryError):
            self._answer(channel.ERROR, (str(error), error.status, error.events))

    def snapshot(self) -> dict[str, Any]:
        buffer = self.buffer
        queued = len(buffer)
        return dict(
            self.stats.snapshot(
                tracked=self.received,
                queue_depth=queued,
                in_flight=self.worker.in_flight,
            )
        )

    def receive(self, entries: list[Any]) -> None:
        """Queue what the application handed over; what memory cannot take goes to the spool at once."""
        buffer = self.buffer
        self.received += len(entries)
        room = self.spill_mark - len(buffer) - buffer.held_elsewhere
        if len(entries) > room:
            self.worker.spill_entries(entries[max(room, 0) :])
            entries = entries[: max(room, 0)]
        if buffer.offer_all(entries):
            self.worker.wake()

    def flush(self, token: int, seconds: float) -> None:
        done = self.worker.flush(seconds)
        self._answer(channel.FLUSHED, (token, done, self.snapshot()))

    def stop(self, seconds: float) -> None:
        done = self.worker.stop(time.monotonic() + seconds)
        self._answer(channel.STOPPED, (done, self.snapshot()))

    def _answer(self, kind: int, payload: object) -> None:
        """Answer the application; a gone application needs no answer (what is left to read is still read)."""
        with contextlib.suppress(ChannelClosed):
            self.out.send(kind, payload)

    def serve(self) -> None:
        """Read frames until told to stop or the application is gone."""
        parent = os.getppid()
        self.out.sock.settimeout(PARENT_CHECK)
        while True:
            try:
                kind, payload = self.out.receive()
            except TimeoutError:
                if os.getppid() != parent:
                    break
                continue
            except ChannelClosed:
                break
            if kind == channel.EVENTS:
                self.receive(channel.load(payload))
            elif kind == channel.FLUSH:
                token, seconds = channel.load(payload)
                threading.Thread(target=self.flush, args=(token, seconds), daemon=True).start()
            elif kind == channel.STATS:
                self._answer(channel.STATS_REPLY, (channel.load(payload), self.snapshot()))
            elif kind == channel.STOP:
                self.stop(channel.load(payload))
                return
        # The application is gone without a word (killed, or exited past its own deadline): keep what it handed.
        logger.debug("peekapi: the application is gone; delivering what it handed over")
        self.worker.stop(time.monotonic() + self.settings.shutdown_timeout)


def _background_priority() -> None:
    """Yield the CPU to the application: nice 10 and, on Linux, the SCHED_BATCH policy (no wake-up preemption).

    Set before any thread starts, so that every thread of this process inherits it. Never raises.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``argv[0]`` is the file descriptor of the socket to the application."""
    args = sys.argv[1:] if argv is None else argv
    unblock_all_signals()  # the mask of the relay thread that started this process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _background_priority()
    out = Channel(__import__("socket").socket(fileno=int(args[0])))
    try:
        kind, payload = out.receive()
    except (ChannelClosed, TimeoutError):
        return
    if kind != channel.CONFIG:
        return
    settings, level, tunables = pickle.loads(payload)
    for name, value in tunables.items():
        setattr(worker, name, value)
    logger.setLevel(level)
    logger.propagate = False
    logger.addHandler(_Shipper(out))
    deliverer = Deliverer(out, settings)
    deliverer.worker.start()
    out.send(channel.READY)
    try:
        deliverer.serve()
    finally:
        out.close()


if __name__ == "__main__":
    main()
