"""Delivery in a process of its own (``delivery="process"``, the default): the application's side.

The request path still only appends to the in-memory buffer. One relay thread hands what it holds, a few times a
second, to a delivery process (``peekapi.deliverer``) as ``marshal``-ed frames (about 0.1 us per event, in C),
and takes its answers on the same thread. The JSON encoding, the HTTP, the retries and the spool run there, on
another interpreter: they no longer compete with the application's threads for its GIL, which under a real
server cost the serving thread several times their own CPU time.

The delivery process starts with the client (in the background), and again in each forked child. It outlives a
killed application long enough to deliver or spool what it was handed. When it cannot be started (no Python
executable, not POSIX) or keeps dying, the client falls back to delivering from threads in this process, and logs
why.

This module is the only home of the subprocess.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import marshal
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import channel, worker
from .buffer import Doorbell, Entry, EventBuffer, Latch, unpack
from .channel import Channel, ChannelClosed
from .config import Settings
from .event import DroppedEvent, encode_event
from .lifecycle import block_app_signals
from .spool import Spool
from .stats import COUNTERS, DROP_REASONS, Stats
from .worker import DeliveryError, Worker, report_error, spool_buffer

logger = logging.getLogger("peekapi")

GATHER_DELAY = 0.05  # after the first event of a quiet spell, wait this long for more before handing over
IDLE_WAIT = 1.0
MAX_FRAME_EVENTS = 5000
START_TIMEOUT = 10.0
STATS_TIMEOUT = 1.0
STOP_GRACE = 2.0
MAX_RESTARTS = 3
SOCKET_BUFFER = 1 << 20
TUNABLES = ("RECOVERY_INTERVAL", "POLL_INTERVAL", "BUSY_WINDOW")

_BOOTSTRAP = "import sys; sys.path.insert(0, sys.argv[1]); from peekapi.deliverer import main; main(sys.argv[2:])"


class _ForkGuard:
    """Keeps ``os.fork()`` out while a delivery process is being started.

    ``subprocess`` learns that the new process has started through a pipe whose far end closes at ``exec``.
    A fork by another thread in between (a pre-fork server starting its workers) would hand that end to a
    child that never execs, and the start would wait for as long as that child lives.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(before=self._before, after_in_parent=self._after, after_in_child=self._reset)

    def _before(self) -> None:
        self.lock.acquire()

    def _after(self) -> None:
        self.lock.release()

    def _reset(self) -> None:
        self.lock = threading.Lock()


_fork_guard = _ForkGuard()


def can_spawn() -> str | None:
    """Why this interpreter cannot start a delivery process, or None when it can."""
    if os.name != "posix":
        return "delivery processes need a POSIX system"
    name = os.path.basename(sys.executable or "").lower()
    if not name.startswith(("python", "pypy")):
        return f"sys.executable ({sys.executable or 'empty'}) is not a Python interpreter (embedded Python?)"
    return None


class _Child:
    """One running delivery process and what is known of it."""

    def __init__(self, process: subprocess.Popen[bytes], out: Channel) -> None:
        self.process = process
        self.out = out
        self.forwarded = 0  # events handed to it
        self.snapshot: dict[str, Any] | None = None  # its latest stats
        self.stopped = threading.Event()  # STOPPED received, or it is gone
        self.gone = False
        self.done = False  # its answer to STOP
        self.ready = False  # it reported ready (its imports and configuration went well)
        self.overdue = False  # shutting down, it did not read by the deadline
        self.started = time.monotonic()
        self.unconfirmed: list[Entry] = []  # what it was handed before it reported ready


class _Overdue(ChannelClosed):
    """Shutting down, the deadline passed while the delivery process was not reading: stop sending to it."""


class RelayWorker:
    """Same contract as ``Worker`` (start, wake, flush, stop, in_flight, discard_after_fork), delivering through a
    delivery process. ``start``/``flush``/``stop``/``counters`` may be called from any thread; ``wake`` is lock-free.

    Only the relay thread writes to the channel: the other threads queue what they want sent (a flush, a stats
    request) and ring. So no application thread ever holds the channel, and a signal handler's ``shutdown()``
    on a thread it interrupted never waits for that thread.
    """

    def __init__(
        self,
        settings: Settings,
        buffer: EventBuffer,
        stats: Stats,
        spool: Spool,
        make_worker: Callable[[], Worker],
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._stats = stats
        self._spool = spool
        self._make_worker = make_worker
        self._bell = Doorbell()
        self._flushes: collections.deque[tuple[Latch, float]] = collections.deque()
        self._awaiting: dict[int, tuple[Latch, float]] = {}  # forwarded flushes by token
        self._asks: collections.deque[int] = collections.deque()  # stats requests to send, by token
        self._stats_replies: dict[int, Latch] = {}
        self._tokens = itertools.count(1)
        self._closing = False
        self._deadline = float("inf")
        self._child: _Child | None = None
        self._retired = dict.fromkeys(COUNTERS + DROP_REASONS, 0)  # counters of delivery processes that ended
        self._detached = 0  # events handed to delivery processes left to finish alone, unsettled when last heard of
        self._restarts = 0
        self._thread: threading.Thread | None = None
        self._threaded: Worker | None = None  # the fallback, once there is one
        self._finished = threading.Event()
        self._result = False

    # -- the Worker contract -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the relay thread (idempotent). The delivery process starts when first needed. Never raises."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._guarded, name="peekapi-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell the relay (or, once fallen back, the threads) that events wait. Lock-free; request-path safe."""
        threaded = self._threaded
        if threaded is not None:
            threaded.wake()
        else:
            self._bell.ring()

    def flush(self, timeout: float) -> bool:
        """Hand everything buffered to the delivery process and wait until it is delivered (or spooled)."""
        threaded = self._threaded
        if threaded is not None:
            return threaded.flush(timeout)
        marker = Latch()
        self._flushes.append((marker, time.monotonic() + timeout))
        self._bell.ring()
        threaded = self._threaded
        if threaded is not None:  # fell back meanwhile, maybe after taking the queued flushes over
            return threaded.flush(timeout)
        return marker.wait(timeout)

    def stop(self, deadline: float) -> bool:
        """Hand everything over and stop the delivery process by ``deadline`` (what is left there is spooled)."""
        self._deadline = deadline
        self._closing = True
        self._bell.ring()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.0) + STOP_GRACE + 1.0)
        if self._thread is None or not self._thread.is_alive():
            self._bell.close()
        elif self._threaded is None:
            # Stuck in something slow (an on_error callback, say). Only the relay takes from the buffer: what it
            # holds stays there, counted in queue_depth.
            logger.warning(
                "peekapi: the relay did not finish by the deadline; %d event(s) left in memory", len(self._buffer)
            )
        threaded = self._threaded
        if threaded is not None:
            return threaded.stop(deadline)
        return self._finished.is_set() and self._result

    def sweep(self) -> int:
        """After :meth:`stop`, once the relay thread has ended: spool what the buffer still holds, from this thread.

        As ``Worker.sweep`` (the threads' own when delivery fell back to them): events appended in the instant
        the buffer closed, after the relay's last hand-over. Returns how many were spooled. Never raises.
        """
        threaded = self._threaded
        if threaded is not None:
            return threaded.sweep()
        if self._thread is None or self._thread.is_alive():
            return 0
        return self._spool_buffer()

    def discard_after_fork(self) -> None:
        """In a forked child: drop the parent's channel (the parent's delivery process is not ours)."""
        child, self._child = self._child, None
        if child is not None:
            child.out.close()
        self._thread = None
        self._bell.close()
        if self._threaded is not None:
            self._threaded.discard_after_fork()

    @property
    def in_flight(self) -> int:
        """Events taken from the buffer and not yet delivered, spooled or dropped (here or over there)."""
        threaded = self._threaded
        if threaded is not None:
            return threaded.in_flight
        child = self._child
        if child is None or child.snapshot is None:
            return 0
        in_flight: int = child.snapshot["in_flight"]
        return in_flight

    def counters(self) -> dict[str, int]:
        """The delivery processes' counters (sent, retried, ..., dropped reasons), asked afresh of the live one."""
        totals = dict(self._retired)
        child = self._child
        if child is not None and not child.gone:
            # Not from the relay thread (it takes the answer in), nor once stopping (STOPPED brings the last).
            relay = self._thread
            if not self._closing and relay is not None and relay.is_alive() and threading.current_thread() is not relay:
                self._refresh(relay)
            if child.snapshot is not None:
                _add_counters(totals, child.snapshot)
        return totals

    # -- the relay thread ----------------------------------------------------------------------------------

    def _guarded(self) -> None:
        block_app_signals()
        try:
            self._run()
        except Exception:  # pragma: no cover - defensive: fall back rather than stop delivering
            logger.exception("peekapi: internal error in the relay; delivering from this process instead")
            self._fall_back()
        finally:
            # Nobody is left to ask the delivery process: its waiters keep the last snapshot, at once.
            self._asks.clear()
            for waiter in list(self._stats_replies.values()):
                waiter.set()

    def _run(self) -> None:
        buffer = self._buffer
        # Started at once rather than at the first event: a burst must not wait in memory for it to start.
        if self._ensure_child() is None:
            self._fall_back()
            return
        while True:
            if not (self._closing or self._flushes or self._asks):
                buffer.wake_pending = False  # the next offer() rings
                if not len(buffer):
                    self._wait(IDLE_WAIT)
                buffer.wake_pending = True
                if len(buffer) and not (self._closing or self._flushes or self._asks):
                    self._wait(GATHER_DELAY)
            if self._threaded is not None:
                return
            self._report_full()
            flushes = [self._flushes.popleft() for _ in range(len(self._flushes))]
            if flushes and not len(buffer) and self._child is None and not self._awaiting:
                for marker, _ in flushes:  # nothing was ever handed over: nothing to wait for
                    marker.set()
                flushes = []
            if (len(buffer) or flushes) and not self._hand_over(flushes):
                return  # fell back to threads, which took over the buffer and the flushes
            self._send_asks()
            if self._closing:
                self._stop_child()
                self._report_full()  # drops since this round's report, when track() raced with stop()
                return
            self._check_child()

    def _hand_over(self, flushes: list[tuple[Latch, float]]) -> bool:
        """Forward the buffer's events, then the flush requests. False when it fell back to threads."""
        flushes = list(flushes)  # those not sent yet
        while True:
            child = self._ensure_child()
            if child is None:
                self._fall_back(flushes)
                return False
            try:
                self._forward_buffer(child)
                while flushes:
                    token = next(self._tokens)
                    self._send_flush(child, token, flushes[0][1])
                    # Awaited once sent in full: a replacement is sent those again (see _ensure_child), and
                    # only those, while the rest are sent from here.
                    self._awaiting[token] = flushes.pop(0)
                return True
            except _Overdue:  # it may yet resume: it goes on alone with what it has, see _stop_child
                self._flushes.extendleft(reversed(flushes))
                return True
            except ChannelClosed as exc:
                self._lost(child, f"the delivery process stopped answering ({exc})")

    def _forward_buffer(self, child: _Child) -> None:
        """Forward everything the buffer holds, in frames of at most MAX_FRAME_EVENTS."""
        buffer = self._buffer
        while len(buffer):
            self._forward(child, buffer.take_entries(MAX_FRAME_EVENTS))

    def _forward(self, child: _Child, entries: list[Entry]) -> None:
        try:
            body = marshal.dumps(entries)
        except ValueError:  # something marshal cannot carry (metadata objects, say): encode those here
            entries = self._portable(entries)
            body = marshal.dumps(entries)
        try:
            child.out.send(channel.EVENTS, raw=body, on_stall=lambda: self._stalled(child))
        except ChannelClosed:
            # Nothing or part of the frame went out, and a delivery process acts on whole frames only: these
            # events are still ours, for its successor (or the threads).
            self._buffer.put_back(entries)
            raise
        child.forwarded += len(entries)
        if not child.ready:
            child.unconfirmed += entries

    def _portable(self, entries: list[Entry]) -> list[Entry]:
        """``entries`` with each one marshal cannot carry encoded here (or dropped, counted, when it is invalid)."""
        out: list[Entry] = []
        settings = self._settings
        for original in entries:
            entry = original
            try:
                marshal.dumps(entry)  # type: ignore[arg-type]
            except ValueError:
                raw, tracked_at = unpack(entry)
                try:
                    entry = (encode_event(raw, tracked_at, settings.max_event_bytes), tracked_at)
                except DroppedEvent as exc:
                    logger.warning("peekapi: event dropped (%s): %s", exc.reason, exc)
                    self._stats.drop(exc.reason, 1)
                    continue
                except Exception as exc:  # a user object whose __str__ raises, say
                    logger.warning("peekapi: event dropped (invalid): %s: %s", type(exc).__name__, exc)
                    self._stats.drop("invalid", 1)
                    continue
            out.append(entry)
        return out

    def _report_full(self) -> None:
        self._stats.drop("buffer_full", self._buffer.unreported_drops())

    @property
    def waiting(self) -> int:
        """Events on their way to the delivery process, or queued there (per its last report)."""
        child = self._child
        if self._threaded is not None or child is None:
            return self._detached
        snap = child.snapshot or {}
        received: int = snap.get("tracked", 0)
        queued: int = snap.get("queue_depth", 0)
        return self._detached + max(child.forwarded - received, 0) + queued

    # -- the delivery process --------------------------------------------------------------------------------

    def _ensure_child(self) -> _Child | None:
        child = self._child
        if child is not None and not child.gone:
            if child.ready or time.monotonic() - child.started < START_TIMEOUT:
                return child
            self._lost(child, "the delivery process did not report ready in time")
        elif child is not None:
            self._lost(child, "the delivery process ended unexpectedly")
        if self._restarts > MAX_RESTARTS:
            return None
        try:
            child = self._spawn()
        except Exception as exc:
            logger.warning("peekapi: could not start the delivery process (%s); delivering from this process", exc)
            return None
        self._child = child
        try:
            if self._awaiting:  # flushes the last one never answered: after what it left in the buffer
                self._forward_buffer(child)
                for token, (_marker, deadline) in self._awaiting.items():
                    self._send_flush(child, token, deadline)
        except ChannelClosed:
            pass  # gone already: found out and replaced (or fallen back from) like any other
        return child

    def _send_flush(self, child: _Child, token: int, deadline: float) -> None:
        seconds = max(deadline - time.monotonic(), 0.0)
        child.out.send(channel.FLUSH, (token, seconds), on_stall=lambda: self._stalled(child))

    def _spawn(self) -> _Child:
        reason = can_spawn()
        if reason:
            raise RuntimeError(reason)
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        package_root = str(Path(__file__).resolve().parent.parent)
        try:
            with _fork_guard.lock:
                process = subprocess.Popen(
                    [sys.executable, "-I", "-c", _BOOTSTRAP, package_root, str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    # Out of the application's process group: a Ctrl-C or a kill of the group is for the
                    # application, which then tells its delivery process to finish (or leaves it to notice).
                    start_new_session=True,
                )
        finally:
            theirs.close()
        ours.settimeout(IDLE_WAIT)
        out = Channel(ours)
        settings = replace(self._settings, on_error=None, identify_consumer=None)
        tunables = {name: getattr(worker, name) for name in TUNABLES}
        level = logger.getEffectiveLevel()
        try:
            # No wait for it to start: events may follow at once (the socket holds them meanwhile); until it
            # reports ready, the relay keeps a copy of them in case it never does.
            out.send(channel.CONFIG, raw=pickle.dumps((settings, level, tunables)), timeout=START_TIMEOUT)
        except ChannelClosed as exc:
            process.kill()
            process.wait()
            out.close()
            raise RuntimeError(f"it ended while starting: {exc}") from exc
        return _Child(process, out)

    def _wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a ring or an answer from the delivery process; take the answers in."""
        child = self._child
        waiting_on: list[Any] = [self._bell.fileno()]
        if child is not None and not child.gone:
            waiting_on.append(child.out.sock)
        try:
            ready, _, _ = select.select(waiting_on, [], [], max(timeout, 0.0))
        except (OSError, ValueError):
            time.sleep(min(max(timeout, 0.0), 0.05))
            return
        if self._bell.fileno() in ready:
            self._bell.clear()
        if child is not None and len(ready) > (self._bell.fileno() in ready):
            self._take_answers(child)

    def _take_answers(self, child: _Child) -> None:
        try:
            frames = child.out.poll()
        except ChannelClosed:
            child.gone = True
            child.stopped.set()
            return
        for kind, payload in frames:
            try:
                self._on_frame(child, kind, channel.load(payload))
            except Exception:  # pragma: no cover - defensive
                logger.exception("peekapi: could not read an answer from the delivery process")

    def _stalled(self, child: _Child) -> None:
        """While a send waits for room: take the answers in (it may be waiting to send one); past the shutdown
        deadline, give up (``_Overdue``), so that what was not handed over can be spooled from here in time."""
        self._take_answers(child)
        if self._closing and time.monotonic() >= self._deadline:
            child.overdue = True
            raise _Overdue("the delivery process did not read by the deadline")

    def _on_frame(self, child: _Child, kind: int, value: Any) -> None:
        if kind == channel.READY:
            child.ready = True
            child.unconfirmed = []
            logger.debug("peekapi: delivery process %d started", child.process.pid)
        elif kind == channel.LOG:
            level, message = value
            logger.log(level, "%s", message)
        elif kind == channel.FLUSHED:
            token, done, child.snapshot = value
            marker, _ = self._awaiting.pop(token, (None, 0.0))
            if marker is not None and done:
                marker.set()
        elif kind == channel.STATS_REPLY:
            token, child.snapshot = value
            waiter = self._stats_replies.pop(token, None)
            if waiter is not None:
                waiter.set()
        elif kind == channel.ERROR:
            report_error(self._settings, DeliveryError(*value))
        elif kind == channel.STOPPED:
            child.done, child.snapshot = value
            child.stopped.set()

    def _refresh(self, relay: threading.Thread) -> None:
        """Ask the delivery process for its stats through the relay thread; wait up to STATS_TIMEOUT for them."""
        token = next(self._tokens)
        answered = self._stats_replies[token] = Latch()
        self._asks.append(token)
        self._bell.ring()
        try:
            if relay.is_alive():  # else it is gone, or answered every waiter as it left (see _guarded)
                answered.wait(STATS_TIMEOUT)  # the relay thread sends the request and takes the answer in
        finally:
            self._stats_replies.pop(token, None)

    def _send_asks(self) -> None:
        """Send the queued stats requests (relay thread). Never raises; a failed channel is found out later."""
        asks = self._asks
        child = self._child
        live = child is not None and not child.gone and not child.overdue
        while asks:
            token = asks.popleft()
            if live and child is not None:
                try:
                    child.out.send(channel.STATS, token, on_stall=lambda: self._stalled(child))
                    continue
                except ChannelClosed:  # the next hand-over replaces it; the callers keep the last snapshot
                    live = False
            waiter = self._stats_replies.get(token)
            if waiter is not None:
                waiter.set()

    def _check_child(self) -> None:
        child = self._child
        if child is not None and child.gone:
            self._lost(child, "the delivery process ended unexpectedly")
            if self._awaiting and self._ensure_child() is None:
                self._fall_back()  # the flushes it never answered are the threads' now

    def _lost(self, child: _Child, why: str) -> None:
        """Account for a delivery process that is gone: what it was handed and had not settled is lost."""
        if self._child is child:
            self._child = None
            self._restarts += 1
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait()
        child.out.close()
        if not child.ready:  # it never started: what it was handed goes back to the buffer
            logger.warning("peekapi: %s while starting (exit status %s)", why, child.process.returncode)
            self._buffer.put_back(child.unconfirmed)
            child.unconfirmed = []
            child.forwarded = 0
            return
        snap = child.snapshot
        settled = 0
        if snap is not None:
            settled = _settled(snap)
            self._retire(snap)
            child.snapshot = None
        lost = child.forwarded - settled
        logger.warning("peekapi: %s (exit status %s)", why, child.process.returncode)
        if lost > 0:
            self._stats.drop("process_lost", lost)
        child.forwarded = 0

    def _retire(self, snap: dict[str, Any]) -> None:
        _add_counters(self._retired, snap)

    def _stop_child(self) -> None:
        """Stop the delivery process by the deadline; what it could not take is spooled from here."""
        child = self._child
        done = True
        if child is not None and child.gone:
            self._lost(child, "the delivery process ended unexpectedly")
        elif child is not None:
            seconds = max(self._deadline - time.monotonic(), 0.0)
            end = time.monotonic() + seconds + STOP_GRACE  # for the send and the answer together
            try:
                if not child.overdue:  # else its channel is full: it will find the end of the stream instead
                    child.out.send(
                        channel.STOP, seconds, timeout=seconds + STOP_GRACE, on_stall=lambda: self._take_answers(child)
                    )
                while not child.overdue and not child.stopped.is_set() and time.monotonic() < end:
                    self._wait(min(end - time.monotonic(), IDLE_WAIT))
            except ChannelClosed:
                pass
            if child.done:  # it answered: everything it held is delivered or spooled
                self._retire(child.snapshot or {})
                child.snapshot = None
                self._child = None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(STOP_GRACE)
                child.out.close()
            elif child.gone:
                self._lost(child, "the delivery process ended during shutdown")
                done = False
            else:  # no answer in time: it goes on alone (it delivers or spools by its own deadline, then exits)
                self._child = None
                child.out.close()
                _reap_later(child.process)
                # What it had settled when last heard of is counted; the rest stays queued there, as far as this
                # process can know (it delivers or spools it, unless it never resumes).
                snap = child.snapshot or {}
                self._retire(snap)
                unsettled = child.forwarded - _settled(snap)
                self._detached += unsettled
                logger.warning(
                    "peekapi: the delivery process did not finish by the deadline; it goes on alone with %d event(s)",
                    unsettled,
                )
                done = False
        if len(self._buffer):  # taken back from a delivery process that never started, or from a frame cut short
            self._spool_buffer()
        self._result = done
        self._finished.set()

    def _fall_back(self, flushes: list[tuple[Latch, float]] | None = None) -> None:
        """Deliver from threads in this process from now on (same buffer, same spool)."""
        if self._threaded is not None:
            return
        threaded = self._make_worker()
        self._buffer.batch_size = self._settings.batch_size
        try:
            threaded.start()
        except RuntimeError:  # at interpreter shutdown no thread can start: spool what is buffered, from here
            self._spool_buffer()
            for marker, _ in self._pending_flushes(flushes):
                marker.set()
            self._finished.set()
            self._result = not len(self._buffer)
            return
        self._threaded = threaded  # first: a flush() from now on goes to the threads itself (see flush())
        for marker, deadline in self._pending_flushes(flushes):
            if threaded.flush(max(deadline - time.monotonic(), 0.0)):
                marker.set()

    def _pending_flushes(self, flushes: list[tuple[Latch, float]] | None) -> list[tuple[Latch, float]]:
        """Every flush not answered yet: those taken in this round, those queued, and those a child never answered."""
        pending = list(flushes or ()) + list(self._awaiting.values())
        pending += [self._flushes.popleft() for _ in range(len(self._flushes))]
        self._awaiting.clear()
        return pending

    def _spool_buffer(self) -> int:
        return spool_buffer(self._settings, self._spool, self._stats, self._buffer)


def _settled(snap: dict[str, Any]) -> int:
    """How many of the events a delivery process received it had delivered, spooled or dropped, per ``snap``."""
    settled: int = snap.get("tracked", 0) - snap.get("queue_depth", 0) - snap.get("in_flight", 0)
    return settled


def _reap_later(process: subprocess.Popen[bytes]) -> None:
    """Collect the exit status of a delivery process left to finish alone, once it ends. Never raises."""
    with contextlib.suppress(RuntimeError):  # no new thread at interpreter shutdown: the exit reaps it
        threading.Thread(target=process.wait, name="peekapi-reaper", daemon=True).start()


def _add_counters(totals: dict[str, int], snap: dict[str, Any]) -> None:
    """Add a delivery process's stats snapshot (its counters and drops by reason) into ``totals``."""
    for name in COUNTERS:
        totals[name] += snap.get(name, 0)
    for reason, count in snap.get("dropped", {}).items():
        totals[reason] = totals.get(reason, 0) + count
