"""The in-memory buffer's bulk hand-in (a delivery process taking a frame in)."""

from __future__ import annotations

from peekapi.buffer import EventBuffer


def entries(count: int) -> list[tuple[object, ...]]:
    return [("GET", f"/b/{i}", 200, 1.0, 0, 0, None, None, 0.0) for i in range(count)]


def test_offer_all_keeps_order_and_rings_once_a_batch_is_waiting() -> None:
    buffer = EventBuffer(capacity=100, batch_size=10)
    assert not buffer.offer_all(entries(5))  # less than a batch: no wake-up
    assert buffer.offer_all(entries(5))  # a full batch now
    assert not buffer.offer_all(entries(3))  # already rung, not yet taken
    assert len(buffer) == 13
    buffer.wake_pending = False  # the worker woke
    assert [e[1] for e in buffer.take_entries(13)] == [f"/b/{i}" for i in (*range(5), *range(5), *range(3))]


def test_offer_all_counts_what_memory_has_no_room_for() -> None:
    buffer = EventBuffer(capacity=10, batch_size=100)
    buffer.held_elsewhere = 4
    buffer.offer_all(entries(9))
    assert len(buffer) == 6
    assert buffer.dropped_full.value == 3
    assert buffer.unreported_drops() == 3 and buffer.unreported_drops() == 0
    buffer.offer_all(entries(2))
    assert len(buffer) == 6 and buffer.dropped_full.value == 5
