"""The in-memory buffer: the request path's append, its wake-ups and drops, and the bulk hand-in of a frame."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import pytest

from peekapi.buffer import EventBuffer, Latch


def entries(count: int) -> list[tuple[object, ...]]:
    return [("GET", f"/b/{i}", 200, 1.0, 0, 0, None, None, 0.0) for i in range(count)]


def test_record_appends_the_compact_event_and_wakes_once_per_full_batch() -> None:
    buffer = EventBuffer(capacity=100, batch_size=3)
    wakes: list[int] = []
    buffer.wake = lambda: wakes.append(len(buffer))
    for i in range(5):
        buffer.record("GET", f"/r/{i}", "/r/{i}", 200, 1.5, 10, 20, None)
    assert wakes == [3]  # the third event completed a batch; the worker has not woken since
    first = buffer.take_entries(1)[0]
    assert first[:8] == ("GET", "/r/0", 200, 1.5, 10, 20, None, "/r/{i}")  # peekapi.event.COMPACT_FIELDS order
    assert isinstance(first[8], float)  # the tracking time


def test_a_full_memory_counts_drops_and_wakes_the_worker_to_spill() -> None:
    buffer = EventBuffer(capacity=2, batch_size=10)
    wakes: list[int] = []
    buffer.wake = lambda: wakes.append(1)
    for i in range(4):
        buffer.offer(("GET", f"/f/{i}", 200, 1.0, 0, 0, None, None, 0.0))
    assert (len(buffer), buffer.dropped_full.value, len(wakes)) == (2, 2, 1)


def test_a_closed_buffer_keeps_what_it_holds_and_counts_the_rest_without_waking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = EventBuffer(capacity=100, batch_size=1)
    wakes: list[int] = []
    buffer.wake = lambda: wakes.append(1)
    buffer.record("GET", "/kept", None, 200, 1.0, 0, 0, None)
    buffer.wake_pending = False  # the worker woke
    buffer.close()
    with caplog.at_level(logging.WARNING, logger="peekapi"):
        buffer.record("GET", "/late", None, 200, 1.0, 0, 0, None)
        buffer.offer(("GET", "/late", 200, 1.0, 0, 0, None, None, 0.0))
    assert (len(buffer), buffer.dropped_closed.value, buffer.dropped_full.value, len(wakes)) == (1, 2, 0, 1)
    assert [r.getMessage() for r in caplog.records].count(
        "peekapi: events tracked once shutdown() began are dropped (counted as 'closed')"
    ) == 1


def test_a_latch_answers_its_waiters_once_set_and_only_then() -> None:
    latch = Latch()
    assert latch.wait(0.05) is False
    setter = threading.Timer(0.05, latch.set)
    setter.start()
    assert latch.wait(5) is True
    latch.set()  # idempotent
    assert latch.wait(0) is True and latch.wait(0) is True
    setter.join()


def test_a_latch_answers_every_waiter() -> None:
    latch = Latch()
    answers: list[bool] = []
    waiters = [threading.Thread(target=lambda: answers.append(latch.wait(5))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    assert not latch.is_set()
    latch.set()
    for waiter in waiters:
        waiter.join()
    assert answers == [True] * 4 and latch.is_set()


def test_a_latch_is_set_while_a_signal_handler_has_interrupted_its_waiter() -> None:
    # The handler (shutdown(), in real life) waits for the thread that answers. threading.Event fails this:
    # interrupted inside wait() while it holds its condition's lock, the answering thread's set() waits for
    # that lock, and the handler for the answering thread.
    latch = Latch()
    answered = threading.Event()
    fired: list[str] = []

    def answer() -> None:
        latch.set()
        answered.set()

    def handler(signum: int, frame: object) -> None:
        threading.Thread(target=answer, daemon=True).start()
        fired.append("handled" if answered.wait(2) else "set() blocked")

    def hook(frame: FrameType, what: str, arg: Any) -> None:
        # At the first call into C inside the wait: the signal's handler runs right after that call.
        if what == "c_call" and frame.f_code.co_name == "wait" and not fired:
            fired.append("sent")
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        sys.setprofile(hook)
        assert latch.wait(5) is True
    finally:
        sys.setprofile(None)
        signal.signal(signal.SIGUSR1, previous)
    assert fired == ["sent", "handled"]
