"""``POST /v1/events``: authenticate, read and decompress the body, validate events, queue, answer.

Status codes (WIRE.md): 200 with ``{"accepted": N, "rejected": M}`` once the accepted events are committed to the
database (never before: a 2xx means durable); 400 body not a JSON array (or not JSON, corrupt gzip, or a batch
the store refused); 401 missing, unknown or revoked key; 413 body (or its decompressed form) over the limit; 415
unknown Content-Encoding; 503 with ``Retry-After`` when the write queue is full or the database cannot take the
batch now. Every answer carries ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib

from starlette.requests import Request
from starlette.responses import Response

from .events import decode_body, parse_batch
from .queue.buffer import Outcome, Ticket
from .runtime import Collector
from .store import Batch

ACCEPT_ENCODING = {"accept-encoding": "gzip"}
MAX_BATCH_ID = 200
_IDENTITY = ("", "identity")
_GZIP = ("gzip", "x-gzip")
_GZIP_MAGIC = b"\x1f\x8b"
_UNAVAILABLE = {
    Outcome.QUEUE_FULL: "write queue full, retry later",
    Outcome.NOT_TAKEN: "the writer is behind, retry later",
    Outcome.RETRY: "the database cannot store the batch now, retry later",
}


def json_response(status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response that announces gzip support."""
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers={**ACCEPT_ENCODING, **(headers or {})},
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


class TooLarge(Exception):
    """The body exceeds a size limit."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompresses a gzip body of one or more members (RFC 1952: what ``cat a.gz b.gz`` makes).

    Raises :class:`TooLarge` once the output of all members passes ``limit`` bytes (decompression stops there:
    the gzip-bomb guard), and :class:`ValueError` when a member is corrupt or truncated, or bytes follow the
    last member that do not start another one.
    """
    out = bytearray()
    rest = data
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"invalid gzip body: {exc}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge
        if not d.eof:
            raise ValueError("invalid gzip body: truncated")
        rest = d.unused_data
        if not rest:
            return bytes(out)
        if not rest.startswith(_GZIP_MAGIC):
            raise ValueError(f"invalid gzip body: {len(rest)} bytes after the end of the gzip stream")


async def ingest(request: Request) -> Response:
    """The ingest endpoint; see the module docstring for its contract."""
    collector: Collector = request.app.state.collector
    config = collector.config
    headers = request.headers
    client = request.client.host if request.client else None
    key = headers.get("x-api-key", "").strip()
    if not key:
        return _refuse(collector, client, 401, "missing x-api-key header")
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY and encoding not in _GZIP:
        return _refuse(collector, client, 415, "unsupported Content-Encoding: send identity or gzip")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
        return _refuse(collector, client, 413, f"body over {config.max_body_bytes} bytes")
    project_id = await collector.ingest_keys.project_for(key)
    if project_id is None:
        return _refuse(collector, client, 401, "unknown or revoked api key", key=key)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_body_bytes:
            return _refuse(collector, client, 413, f"body over {config.max_body_bytes} bytes")
    data = bytes(body)
    if encoding in _GZIP:
        try:
            data = gunzip(data, config.max_decompressed_bytes)
        except TooLarge:
            return _refuse(collector, client, 413, f"decompressed body over {config.max_decompressed_bytes} bytes")
        except ValueError as exc:
            return _refuse(collector, client, 400, str(exc))
    try:
        decoded, check_text = decode_body(data)
    except ValueError as exc:
        return _refuse(collector, client, 400, str(exc))
    now_ms = int(time.time() * 1000)
    max_age_ms = config.max_event_age_seconds * 1000
    result = parse_batch(decoded, now_ms, max_age_ms, config.max_clock_skew_seconds * 1000, check_text)
    if result is None:
        return _refuse(collector, client, 400, "body must be a JSON array of events")
    collector.activity.batch_received(project_id, len(result.events), result.rejected, result.first_rejection)
    if result.events:
        batch_id = headers.get("x-peekapi-batch-id", "").strip()[:MAX_BATCH_ID] or None
        outcome = await _store(collector, Batch(project_id, batch_id, result.events))
        if outcome is Outcome.REFUSED:
            return _refuse(collector, client, 400, "the batch could not be stored (see the collector's log)")
        if outcome is not Outcome.STORED:
            retry = {"retry-after": str(config.retry_after_seconds)}
            return _refuse(collector, client, 503, _UNAVAILABLE[outcome], headers=retry)
    return json_response(200, {"accepted": len(result.events), "rejected": result.rejected})


async def _store(collector: Collector, batch: Batch) -> Outcome:
    """Hands ``batch`` to the writer and waits until it is committed (group commit).

    Returns :attr:`Outcome.STORED` once the batch is durable; ``QUEUE_FULL`` when the queue refuses it,
    ``NOT_TAKEN`` when the writer did not take it within ``ack_timeout_seconds`` (then it is withdrawn and never
    written), or the writer's outcome. Once the writer has taken a batch, the request waits for its transaction
    to end, whatever it takes: answering before would let a client without a batch id send it twice.
    """
    ticket = Ticket(batch, asyncio.get_running_loop())
    if not collector.queue.offer(ticket):
        return Outcome.QUEUE_FULL
    try:
        return await asyncio.wait_for(asyncio.shield(ticket.future), collector.config.ack_timeout_seconds)
    except asyncio.TimeoutError:
        if collector.queue.withdraw(ticket):
            return Outcome.NOT_TAKEN
    return await ticket.future


def _refuse(
    collector: Collector,
    client: str | None,
    status: int,
    message: str,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An error answer, counted and logged (rate-limited; a key only as a fingerprint)."""
    collector.activity.request_refused(status, message, client, key)
    return _error(status, message, headers)


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the writer keeps up, 503 while its writes keep failing."""
    collector: Collector = request.app.state.collector
    ok = collector.writer.healthy
    return json_response(
        200 if ok else 503,
        {"status": "ok" if ok else "failing", "queued_events": collector.queue.pending_events()},
    )
