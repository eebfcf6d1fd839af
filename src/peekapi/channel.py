"""The channel between an application process and its delivery process: typed frames over a Unix socket.

A frame is a 4-byte big-endian length, a 1-byte kind and a ``marshal`` payload (the configuration frame alone is
a pickle: it carries the settings object). ``marshal`` is C-fast for the tuples and dicts of plain values that
tracked events are, and both ends run the same interpreter, so its format always matches.
"""

from __future__ import annotations

import contextlib
import marshal
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct("!IB")
MAX_FRAME = 256 * 1024 * 1024

# Application -> delivery process.
CONFIG = 1  # pickle: (settings, log level, tunables); the first frame
EVENTS = 2  # a list of buffer entries
FLUSH = 3  # (token, seconds): deliver everything received so far, then answer FLUSHED
STATS = 4  # token: answer with STATS_REPLY
STOP = 5  # seconds: deliver or spool everything by then, answer STOPPED, and exit
# Delivery process -> application.
READY = 10  # None
FLUSHED = 11  # (token, done, stats)
STATS_REPLY = 12  # (token, stats)
LOG = 13  # (level, message)
ERROR = 14  # (message, status, events): a DeliveryError for the on_error callback
STOPPED = 15  # (done, stats)


class ChannelClosed(Exception):
    """The other end is gone (or sent something that is not a frame)."""


class Channel:
    """One end of the socket. ``send`` is thread-safe; ``receive`` is for one reading thread only."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._pending = bytearray()
        self._broken = False

    def send(
        self,
        kind: int,
        payload: object = None,
        *,
        raw: bytes | None = None,
        timeout: float = 30.0,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        """Send one frame (``raw`` bytes as the payload, else ``marshal`` of ``payload``).

        Blocks while the socket is full, up to ``timeout`` seconds in all, calling ``on_stall`` (if given) each
        time it waited a socket timeout without progress: the reading side may need to take answers in for the
        other end to go on, and ``on_stall`` may raise (``ChannelClosed``, say) to give up. Raises
        ``ChannelClosed`` when the other end is gone or does not read for ``timeout`` (after a partial frame the
        channel is unusable from then on, whatever ended the send), ``ValueError`` when ``payload`` cannot be
        marshalled. Thread-safe.
        """
        body = marshal.dumps(payload) if raw is None else raw  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        # The timeout bounds the wait for the lock too: another sender stuck on a full socket must not hold this
        # one for longer than it asked to wait.
        if not self._send_lock.acquire(timeout=max(timeout, 0.0)):
            raise ChannelClosed("the channel stayed busy")
        try:
            if self._broken:
                raise ChannelClosed("an earlier frame was cut short")
            view = memoryview(HEADER.pack(len(body), kind) + body if len(body) < 65536 else b"")
            if view:
                self._send_all(view, deadline, on_stall, whole=True)
            else:  # a large body: no copy of it just to put five bytes in front
                self._send_all(memoryview(HEADER.pack(len(body), kind)), deadline, on_stall, whole=True)
                self._send_all(memoryview(body), deadline, on_stall, whole=False)
        finally:
            self._send_lock.release()

    def _send_all(self, view: memoryview, deadline: float, on_stall: Callable[[], None] | None, *, whole: bool) -> None:
        # sock.send() waits up to the socket's timeout for room; a partial send resumes where it stopped.
        started = not whole
        while view:
            try:
                sent = self.sock.send(view)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    if started:
                        self._broken = True
                    raise ChannelClosed("the other end did not read in time") from None
                if on_stall is not None:
                    try:
                        on_stall()
                    except BaseException:
                        self._broken = self._broken or started
                        raise
                continue
            except OSError as exc:
                self._broken = True
                raise ChannelClosed(str(exc) or type(exc).__name__) from exc
            started = True
            view = view[sent:]

    def receive(self) -> tuple[int, bytes]:
        """The next frame's kind and raw payload. Blocks up to the socket's timeout (``TimeoutError``).

        Raises ``ChannelClosed`` at the end of the stream.
        """
        header = self._read(HEADER.size)
        length, kind = HEADER.unpack(header)
        if length > MAX_FRAME:
            raise ChannelClosed(f"frame of {length} bytes")
        return kind, self._read(length)

    def poll(self) -> list[tuple[int, bytes]]:
        """The frames that have arrived, without waiting. Raises ``ChannelClosed`` at the end of the stream."""
        pending = self._pending
        eof = False
        try:
            # One read of what is there (a socket with a timeout would wait in recv() even with MSG_DONTWAIT).
            if select.select([self.sock], [], [], 0)[0]:
                chunk = self.sock.recv(1 << 20)
                eof = not chunk
                pending += chunk
        except (OSError, ValueError) as exc:
            raise ChannelClosed(str(exc)) from exc
        frames: list[tuple[int, bytes]] = []
        while len(pending) >= HEADER.size:
            length, kind = HEADER.unpack_from(pending)
            if len(pending) < HEADER.size + length:
                break
            frames.append((kind, bytes(pending[HEADER.size : HEADER.size + length])))
            del pending[: HEADER.size + length]
        if eof and not frames:
            raise ChannelClosed("end of stream")
        return frames

    def _read(self, count: int) -> bytes:
        pending = self._pending
        while len(pending) < count:
            try:
                chunk = self.sock.recv(max(65536, count - len(pending)))
            except TimeoutError:
                raise
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            if not chunk:
                raise ChannelClosed("end of stream")
            pending += chunk
        data = bytes(pending[:count])
        del pending[:count]
        return data

    def close(self) -> None:
        """Close the socket. Never raises."""
        with contextlib.suppress(OSError):
            self.sock.close()


def load(payload: bytes) -> Any:
    """A frame's payload as an object (``marshal``)."""
    return marshal.loads(payload)
