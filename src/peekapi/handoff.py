"""The hand-off between the worker's two threads: the one state the batcher, the sender and the control share.

The batcher puts encoded batches, and the flush markers that follow them, in ``outbox``; the sender takes them
from the other end. No lock anywhere: every counter has one writer (named on each field), ``deque`` appends and
pops are atomic, and a flag one thread sets is seen by the other at its next look, which a ring of its
``Doorbell`` makes prompt. The control (``Worker``, from any thread, a signal handler included) only appends flush
requests, sets flags and rings; ``Worker._rescue``, its last resort past the stop deadline, is the one exception.
Nothing here blocks or raises.
"""

from __future__ import annotations

import collections
import time

from .batch import Batch
from .buffer import Doorbell, Latch
from .config import Settings
from .spool import Spool
from .stats import Stats


class Handoff:
    """What the batcher and the sender share; see the module docstring for who writes what."""

    def __init__(self, settings: Settings) -> None:
        #: Batches waiting for the sender, and flush markers (set once everything before them is settled).
        self.outbox: collections.deque[Batch | Latch] = collections.deque()
        #: The most events the outbox holds: what bounds the batcher's lead over the sender.
        self.outbox_cap = max(settings.batch_size, settings.max_buffer_size // 2)
        self.put_events = 0  # events put in the outbox; written by the batcher only
        self.got_events = 0  # events taken from it; written by the sender (and Worker._rescue)
        self.current: Batch | None = None  # the batch being delivered; written by the sender (and _rescue)
        #: Set by the batcher while events it took from the buffer are in neither the outbox nor the spool yet.
        self.encoding = False
        #: Set by the batcher when the outbox had no room; the sender clears it and rings once it takes a batch.
        self.blocked = False
        self.batcher_bell = Doorbell()
        self.sender_bell = Doorbell()
        #: ``flush()`` markers not yet seen by the batcher: the control appends, the batcher pops.
        self.flush_requests: collections.deque[Latch] = collections.deque()
        #: Set by ``flush()`` and ``stop()``: cut retry waits short. The sender clears it after the last marker.
        self.hurry = False
        self.closing = False  # set by ``stop()``: drain everything, then end
        self.deadline = float("inf")  # ``time.monotonic()`` after which what is left is spooled; set by ``stop()``
        self.batcher_done = False  # set by the batcher as it ends: the sender ends once the outbox is empty
        #: When the sender next re-sends a spooled file; it writes it, and the batcher sets 0 after a spill.
        self.next_recovery = 0.0

    @property
    def outbox_events(self) -> int:
        """Events in batches waiting for the sender (what bounds the batcher's lead)."""
        return max(self.put_events - self.got_events, 0)

    @property
    def in_flight(self) -> int:
        """Events batched but not yet delivered, spooled or dropped: in the outbox, or the batch being sent."""
        current = self.current
        return self.outbox_events + (current.count if current is not None else 0)

    def past_deadline(self) -> bool:
        """Whether ``stop()``'s deadline has passed (what is left goes to the spool)."""
        return time.monotonic() >= self.deadline

    def take_outbox(self) -> tuple[list[Batch], list[Latch]]:
        """Empty the outbox: the batches it held, and the flush markers among them (to set once those batches are
        on disk). For the sender, and for ``Worker._rescue``; pops one item at a time, so an item appended
        meanwhile is either taken or left whole."""
        batches: list[Batch] = []
        markers: list[Latch] = []
        while True:
            try:
                item = self.outbox.popleft()
            except IndexError:
                return batches, markers
            if isinstance(item, Latch):
                markers.append(item)
            else:
                batches.append(item)

    def ring(self) -> None:
        """Wake both threads. Lock-free: safe from a signal handler."""
        self.batcher_bell.ring()
        self.sender_bell.ring()

    def close(self) -> None:
        """Release both doorbells, once both threads have ended (or, after fork, do not exist)."""
        self.batcher_bell.close()
        self.sender_bell.close()


def spool_batches(spool: Spool, stats: Stats, batches: list[Batch]) -> None:
    """Write ``batches`` to the spool, counting what was written (``spooled``) or lost (by reason). Never raises.

    How batches leave memory without being sent, from either thread or the control.
    """
    written, lost, reason = spool.append(batches)
    if written:
        stats.add("spooled", written)
    if lost and reason:
        stats.drop(reason, lost)
