"""The sender: delivers the batcher's batches through a transport, retries, spools, and re-sends the spool.

One daemon thread runs :meth:`Sender.run`. It takes batches from the hand-off's outbox and sends each through a
transport (anything with ``send(batch_id, body) -> SendResult``), retrying with backoff and ``Retry-After``; a
batch that failed ``MAX_ATTEMPTS`` times is spooled, and while the endpoint is down so is what waits in the
outbox. Between batches it re-sends spooled files, one at a time (claimed atomically, so no other process sends
them too), every ``RECOVERY_INTERVAL`` or at once after a spill or once the endpoint answers again. It sets each
flush marker once everything before it is settled. Waits are cut short by ``flush()`` and ``stop()`` (through
the ``Handoff``); past ``stop()``'s deadline what it holds goes to the spool. Knows nothing of HTTP.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from .batch import Batch
from .buffer import EventBuffer, Latch
from .config import Settings
from .handoff import Handoff, spool_batches
from .spool import Claim, Spool
from .stats import Stats
from .transport import MAX_ATTEMPTS, SendResult, backoff_delay

logger = logging.getLogger("peekapi")

RECOVERY_INTERVAL = 30.0


class Transport(Protocol):
    """What the worker needs of the network."""

    def send(self, batch_id: str, body: bytes) -> SendResult: ...
    def abort(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


class DeliveryError(Exception):
    """Passed to ``on_error`` when a batch is rejected (final) or could not be delivered and was spooled."""

    def __init__(self, message: str, status: int | None, events: int) -> None:
        super().__init__(message)
        self.status = status
        self.events = events


class Sender:
    """The sender thread's loop and its own state. Only :meth:`run` is called, on that thread."""

    def __init__(
        self,
        settings: Settings,
        buffer: EventBuffer,
        transport: Transport,
        *,
        spool: Spool,
        stats: Stats,
        handoff: Handoff,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._transport = transport
        self._spool = spool
        self._stats = stats
        self._handoff = handoff
        self._down = False  # the endpoint failed a batch MAX_ATTEMPTS times and has not answered since
        self._failures = 0  # failed attempts in a row

    def run(self) -> None:
        """Send until ``stop()``: returns once the batcher is done and the outbox empty.

        An unexpected exception escapes (``Worker`` logs it and runs the loop again).
        """
        handoff = self._handoff
        outbox = handoff.outbox
        while True:
            item = outbox.popleft() if outbox else None
            if isinstance(item, Latch):
                # list() first: the batcher appends meanwhile (iterating the deque itself could raise).
                if not handoff.closing and not any(isinstance(i, Latch) for i in list(outbox)):
                    handoff.hurry = False
                item.set()
                continue
            if item is not None:
                self._send_live(item)
                continue
            if handoff.closing:
                if handoff.batcher_done:
                    return
                handoff.sender_bell.wait(0.05)
                continue
            now = time.monotonic()
            if now >= handoff.next_recovery:
                self._recover()
                continue
            handoff.sender_bell.wait(handoff.next_recovery - now)

    def _send_live(self, batch: Batch) -> None:
        handoff = self._handoff
        handoff.current = batch  # first: in flight (see in_flight) until settled, never in neither count
        handoff.got_events += batch.count
        if handoff.blocked:  # the outbox has room again
            handoff.blocked = False
            handoff.batcher_bell.ring()
        try:
            self._deliver(batch)
        finally:
            handoff.current = None
            self._buffer.held_elsewhere = handoff.in_flight  # settled: its room is the buffer's again

    def _deliver(self, batch: Batch) -> None:
        if self._handoff.past_deadline():
            self._to_spool([batch])
            return
        if self._down and not self._pause(backoff_delay(min(self._failures, 8), self._base_delay())):
            self._to_spool([batch])
            return
        while True:
            result = self._attempt(batch, recovered=False)
            if result is None:
                return
            if batch.attempts >= MAX_ATTEMPTS or self._down:
                self._give_up(batch, result)
                return
            if not self._pause(backoff_delay(batch.attempts, self._base_delay(), result.retry_after)):
                self._to_spool([batch])
                return

    def _attempt(self, batch: Batch, recovered: bool) -> SendResult | None:
        """One try. None when the batch is settled (delivered or finally rejected), else the failed result."""
        result = self._transport.send(batch.batch_id, batch.body)
        if batch.rescued:  # spooled meanwhile from another thread (Worker._rescue): settled, counted there
            return None
        if result.outcome == "delivered":
            self._stats.delivered(batch.count, recovered)
            if self._down:
                logger.info("peekapi: endpoint %s reachable again", self._settings.endpoint.origin)
                self._handoff.next_recovery = 0.0
            self._down = False
            self._failures = 0
            return None
        if result.outcome == "rejected":
            message = f"batch of {batch.count} events rejected by {self._settings.endpoint.origin}: {result.detail}"
            logger.error("peekapi: %s; not retried", message)
            self._stats.reject(batch.count, result.detail or f"HTTP {result.status}")
            report_error(self._settings, DeliveryError(message, result.status, batch.count))
            return None
        batch.attempts += 1
        self._failures += 1
        self._stats.add("retried")
        logger.info("peekapi: attempt %d to send batch %s failed: %s", batch.attempts, batch.batch_id, result.detail)
        return result

    def _give_up(self, batch: Batch, result: SendResult) -> None:
        first = not self._down
        self._down = True
        message = (
            f"could not deliver {batch.count} events to {self._settings.endpoint.origin} after "
            f"{batch.attempts} attempts ({result.detail}); spooled to disk"
        )
        if first:
            logger.warning("peekapi: %s", message)
        self._to_spool([batch])
        report_error(self._settings, DeliveryError(message, result.status, batch.count))
        # The endpoint is down: move what waits in memory to disk too, so a crash cannot lose it.
        handoff = self._handoff
        waiting, markers = handoff.take_outbox()
        handoff.got_events += sum(b.count for b in waiting)
        self._buffer.held_elsewhere = handoff.in_flight
        self._to_spool(waiting)
        for marker in markers:
            marker.set()  # everything queued before it is on disk now

    def _recover(self) -> None:
        """Re-send one spooled file (claimed atomically, so no other process sends it too)."""
        handoff = self._handoff
        handoff.next_recovery = time.monotonic() + RECOVERY_INTERVAL
        if not self._spool.enabled:
            return  # while the endpoint is down this is also the probe that finds it back, every interval
        claim = self._spool.claim()
        if claim is None:
            return
        self._stats.drop("spool_corrupt", claim.corrupt)
        try:
            self._resend(claim)
        finally:
            self._spool.finish(claim)
        if self._down:  # the next probe: backing off like retries do, at most RECOVERY_INTERVAL away
            probe = min(backoff_delay(min(self._failures, 8), self._base_delay()), RECOVERY_INTERVAL)
            handoff.next_recovery = time.monotonic() + probe
        else:
            handoff.next_recovery = 0.0

    def _resend(self, claim: Claim) -> None:
        handoff = self._handoff
        for batch in claim.batches:
            if handoff.closing or handoff.past_deadline() or handoff.outbox_events > handoff.outbox_cap // 2:
                return  # shutdown, a deadline and a backlog of live traffic come first; the rest is released for later
            result = self._attempt(batch, recovered=True)
            if result is not None:
                self._down = True
                return
            self._spool.acknowledge(claim, batch.batch_id)

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless hurried by flush/stop; False if the shutdown deadline has passed."""
        handoff = self._handoff
        end = time.monotonic() + seconds
        while not handoff.hurry:
            remaining = min(end, handoff.deadline) - time.monotonic()
            if remaining <= 0:
                break
            handoff.sender_bell.wait(remaining)
        return not handoff.past_deadline()

    def _base_delay(self) -> float:
        return self._settings.retry_base_delay

    def _to_spool(self, batches: list[Batch]) -> None:
        spool_batches(self._spool, self._stats, batches)


def report_error(settings: Settings, error: DeliveryError) -> None:
    """Pass ``error`` to the user's ``on_error`` callback, if any; what it raises is logged. Never raises."""
    callback = settings.on_error
    if callback is None:
        return
    try:
        callback(error)
    except Exception:
        logger.exception("peekapi: the on_error callback raised")
