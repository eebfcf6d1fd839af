"""The network: one kept-alive HTTP connection, ``send(batch) -> SendResult``, and the retry policy.

``HttpTransport`` is used by one thread at a time (the sender). ``abort()`` may be called from any thread to cut
a request short past a deadline (shutdown, ``flush_or_spool``). Nothing here raises into the caller: every
failure is a ``SendResult``.
"""

from __future__ import annotations

import contextlib
import email.utils

# Imported now, on the thread that builds the client, not lazily by the sender's first getaddrinfo(): were a
# process forked (gunicorn --preload) while the sender thread held that import's lock, the child's sender would
# wait for the lock forever (the thread holding it does not exist in the child).
import encodings.idna  # noqa: F401
import http.client
import json
import random
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Literal

from ._version import __version__
from .endpoint import Endpoint, check_address

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 300.0
GZIP_MIN_BYTES = 1024
MAX_RESPONSE_BYTES = 65_536
MAX_REASON_CHARS = 200  # of a server's error answer, in log lines
USER_AGENT = f"peekapi-python/{__version__}"

Outcome = Literal["delivered", "retry", "rejected"]


@dataclass(frozen=True)
class SendResult:
    """What became of one attempt: ``delivered`` (2xx), ``retry`` (may succeed later) or ``rejected`` (final)."""

    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def backoff_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential with jitter, or the server's Retry-After.

    ``attempt`` counts failed attempts so far (1 after the first). Retry-After wins when given (capped at
    five minutes); otherwise ``base * 2**(attempt-1)`` capped at 30 s, scaled by a random factor in [0.5, 1].
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
    delay: float = min(base * (2.0 ** (attempt - 1)), MAX_BACKOFF)
    return delay * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(moment.timestamp() - (time.time() if now is None else now), 0.0)


class HttpTransport:
    """POSTs batches to one endpoint over one reused connection (HTTP/1.1 keep-alive).

    Compresses with gzip only after the server said it accepts it (``Accept-Encoding: gzip`` in a response).
    Host names are resolved at connect time and every address is checked (see ``endpoint.check_address``).
    """

    def __init__(self, endpoint: Endpoint, api_key: str, timeout: float) -> None:
        self._endpoint = endpoint
        self._api_key = api_key
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._gzip = False
        self._context: ssl.SSLContext | None = None
        self._aborted = False
        self._connecting: socket.socket | None = None  # the socket in connect(), for abort() to cut short

    def send(self, batch_id: str, body: bytes) -> SendResult:
        """POST one batch body with its id. Blocks up to about twice the timeout. Never raises."""
        headers = {
            "Content-Type": "application/json",
            "x-api-key": self._api_key,
            "x-peekapi-sdk": f"python/{__version__}",
            "x-peekapi-batch-id": batch_id,
            "User-Agent": USER_AGENT,
        }
        if self._gzip and len(body) >= GZIP_MIN_BYTES:
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            body = compressor.compress(body) + compressor.flush()
            headers["Content-Encoding"] = "gzip"
        if self._aborted:
            return SendResult("retry", detail="aborted past a deadline")
        reused = self._conn is not None
        try:
            return self._exchange(body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            if not reused or self._aborted:
                return SendResult("retry", detail=_describe(exc))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            return SendResult("retry", detail=_describe(exc))
        # A kept-alive connection the server had already closed: one immediate try on a fresh one.
        try:
            return self._exchange(body, headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.close()
            return SendResult("retry", detail=_describe(exc))

    def _exchange(self, body: bytes, headers: dict[str, str]) -> SendResult:
        conn = self._conn or self._connect()
        conn.request("POST", self._endpoint.target, body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read(MAX_RESPONSE_BYTES)
        if response.will_close or not response.isclosed():
            self.close()
        accept = response.getheader("Accept-Encoding") or ""
        if "gzip" in accept.lower():
            self._gzip = True
        status = response.status
        if 200 <= status < 300:
            return SendResult("delivered", status)
        detail = f"HTTP {status} {response.reason}".strip()
        reason = server_reason(answer)
        if reason:
            detail = f"{detail}: {reason}"
        if status in (404, 405):
            # Nothing takes batches there (the collector's dashboard answers a POST to / with 405): a
            # configuration error, most often an endpoint without its path.
            path = self._endpoint.target.partition("?")[0]
            detail = (
                f"{detail}; nothing takes batches at the path {path!r}: check the 'endpoint' option "
                "(the collector and the PeekAPI cloud take them at /v1/events)"
            )
        if status in RETRYABLE_STATUSES:
            return SendResult("retry", status, parse_retry_after(response.getheader("Retry-After")), detail)
        return SendResult("rejected", status, None, detail)

    def _connect(self) -> http.client.HTTPConnection:
        endpoint = self._endpoint
        conn: http.client.HTTPConnection
        if endpoint.scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                endpoint.host, endpoint.port, timeout=self._timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self._timeout)
        # http.client calls this hook to open the socket; ours checks every resolved address first.
        conn._create_connection = self._open_socket  # type: ignore[attr-defined]
        self._conn = conn
        return conn

    def _open_socket(
        self, address: tuple[str, int], timeout: float | None = None, source: object = None
    ) -> socket.socket:
        host, port = address
        last: OSError | None = None
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            check_address(self._endpoint, str(sockaddr[0]))
            sock = socket.socket(family, kind, proto)
            self._connecting = sock
            try:
                if self._aborted:
                    raise OSError("aborted past a deadline")
                sock.settimeout(timeout if timeout is not None else self._timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
                if self._aborted:  # abort() came during connect(): its shutdown may have missed it
                    raise OSError("aborted past a deadline")
            except OSError as exc:
                sock.close()
                last = exc
                continue
            finally:
                self._connecting = None
            return sock
        raise last or OSError(f"could not resolve {host}")

    def abort(self) -> None:
        """Cut the current request short (from another thread, past a deadline); no request is made after it,
        until :meth:`resume`.

        Never raises.
        """
        self._aborted = True
        conn = self._conn
        for sock in (conn.sock if conn is not None else None, self._connecting):
            if sock is not None:  # a connect() in progress (a blackholed collector) returns at once too
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        """Allow requests again after :meth:`abort` (the client goes on after a ``flush_or_spool``). Never raises."""
        self._aborted = False

    def close(self) -> None:
        """Close the connection; the next send opens a new one. Never raises."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


def server_reason(answer: bytes, limit: int = MAX_REASON_CHARS) -> str:
    """The reason a server gave in the body of an error answer, quoted for a log line; "" for an empty body.

    From a JSON object, its ``error`` (the collector's ``{"error": "unknown or revoked api key"}``), ``message``
    or ``detail`` string; from any other body, its start as text. At most ``limit`` characters (then ``...``),
    in double quotes, with quotes, backslashes and every unprintable character escaped (``\\n``, ``\\x1b``), so
    that a hostile server cannot forge log lines or terminal escapes. Never raises.
    """
    text = answer.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            parsed = None
        if isinstance(parsed, dict):
            for key in ("error", "message", "detail"):
                value = parsed.get(key)
                if isinstance(value, str) and value.strip():
                    text = value.strip()
                    break
    if not text:
        return ""
    shown = "".join(_escape(c) for c in text[:limit])
    return f'"{shown}"' + ("..." if len(text) > limit else "")


def _escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    return char.encode("unicode_escape").decode("ascii")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
