"""``POST /v1/events``: authenticate, read and decompress the body, validate events, queue, answer.

Status codes (WIRE.md): 200 with ``{"accepted": N, "rejected": M}``; 400 body not a JSON array; 401 missing,
unknown or revoked key; 413 body (or its decompressed form) over the limit; 415 unknown Content-Encoding;
503 with ``Retry-After`` when the write queue is full. Every answer carries ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

import json
import time
import zlib

from starlette.requests import Request
from starlette.responses import Response

from .events import parse_batch
from .runtime import Collector
from .store import Batch

ACCEPT_ENCODING = {"accept-encoding": "gzip"}
MAX_BATCH_ID = 200
_IDENTITY = ("", "identity")
_GZIP = ("gzip", "x-gzip")


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
    """Decompresses gzip ``data``; :class:`TooLarge` past ``limit`` bytes, :class:`ValueError` when corrupt."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"invalid gzip body: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge
    if not d.eof:
        raise ValueError("invalid gzip body: truncated")
    return out


async def ingest(request: Request) -> Response:
    """The ingest endpoint; see the module docstring for its contract."""
    collector: Collector = request.app.state.collector
    config = collector.config
    headers = request.headers
    key = headers.get("x-api-key", "").strip()
    if not key:
        return _error(401, "missing x-api-key header")
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding not in _IDENTITY and encoding not in _GZIP:
        return _error(415, f"unsupported Content-Encoding {encoding!r}: send identity or gzip")
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
        return _error(413, f"body over {config.max_body_bytes} bytes")
    project_id = await collector.ingest_keys.project_for(key)
    if project_id is None:
        return _error(401, "unknown or revoked api key")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_body_bytes:
            return _error(413, f"body over {config.max_body_bytes} bytes")
    data = bytes(body)
    if encoding in _GZIP:
        try:
            data = gunzip(data, config.max_decompressed_bytes)
        except TooLarge:
            return _error(413, f"decompressed body over {config.max_decompressed_bytes} bytes")
        except ValueError as exc:
            return _error(400, str(exc))
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    now_ms = int(time.time() * 1000)
    result = parse_batch(decoded, now_ms, config.max_event_age_seconds * 1000, config.max_clock_skew_seconds * 1000)
    if result is None:
        return _error(400, "body must be a JSON array of events")
    batch_id = headers.get("x-peekapi-batch-id", "").strip()[:MAX_BATCH_ID] or None
    if result.events and not collector.queue.offer(Batch(project_id, batch_id, result.events)):
        retry = str(config.retry_after_seconds)
        return _error(503, "write queue full, retry later", {"retry-after": retry})
    return json_response(200, {"accepted": len(result.events), "rejected": result.rejected})


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 while the writer keeps up, 503 while its writes keep failing."""
    collector: Collector = request.app.state.collector
    ok = collector.writer.healthy
    return json_response(
        200 if ok else 503,
        {"status": "ok" if ok else "failing", "queued_events": collector.queue.pending_events()},
    )
