"""Batches: tracked events encoded into wire bodies, capped in count and in bytes, each with its own id."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .buffer import Entry, unpack
from .event import COMPACT_LENGTH, DroppedEvent, encode_compact, encode_event


@dataclass
class Batch:
    """One POST body: a JSON array of ``count`` events, and the idempotency key it carries on every attempt."""

    batch_id: str
    body: bytes
    count: int
    attempts: int = 0
    #: Spooled by ``Worker._rescue`` while the sender held it: the sender's outcome for it is not counted again.
    rescued: bool = False

    @classmethod
    def of(cls, encoded: list[bytes], batch_id: str | None = None) -> Batch:
        """Assemble a batch from encoded events (a fresh id unless one is given)."""
        return cls(batch_id or new_batch_id(), b"[" + b",".join(encoded) + b"]", len(encoded))


class _Ids:
    """Batch ids: 80 random bits per process (drawn again after fork) and a 48-bit counter, 32 hex digits.

    As unique as a UUID4 per batch, without a system call (``os.urandom`` releases the GIL) per batch.
    """

    def __init__(self) -> None:
        self.reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(10).hex()
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


_ids = _Ids()


def new_batch_id() -> str:
    """A fresh batch id (thread-safe: ``next()`` on the counter is atomic)."""
    return _ids.next()


def build_batches(
    entries: Iterable[Entry],
    *,
    max_count: int,
    max_bytes: int,
    max_event_bytes: int,
    on_drop: Callable[[str, int, str], None],
) -> list[Batch]:
    """Encode buffer ``entries`` into batches of at most ``max_count`` events and ``max_bytes``.

    An event that cannot be encoded is dropped alone: ``on_drop(reason, 1, why)`` is called and the others go on.
    Never raises for bad events.
    """
    batches: list[Batch] = []
    current: list[bytes] = []
    size = 2
    for entry in entries:
        try:
            # A middleware's compact event, as a rule: encoded directly, without unpacking the entry.
            if type(entry) is tuple and len(entry) == COMPACT_LENGTH:
                encoded = encode_compact(entry, max_event_bytes)
            else:
                raw, tracked_at = unpack(entry)
                encoded = encode_event(raw, tracked_at, max_event_bytes)
        except DroppedEvent as exc:
            on_drop(exc.reason, 1, str(exc))
            continue
        except Exception as exc:  # a user object whose __str__ raises, say: drop that event only
            on_drop("invalid", 1, f"{type(exc).__name__}: {exc}")
            continue
        if current and (len(current) >= max_count or size + 1 + len(encoded) > max_bytes):
            batches.append(Batch.of(current))
            current, size = [], 2
        current.append(encoded)
        size += len(encoded) + 1
    if current:
        batches.append(Batch.of(current))
    return batches
