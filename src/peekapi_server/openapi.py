"""The OpenAPI 3.1 description of the collector's HTTP API, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

_FILTERS: list[dict[str, Any]] = [
    {"name": "from", "in": "query", "description": "Start (inclusive): epoch seconds or ISO-8601. Default: to - 24h.",
     "schema": {"type": "string"}},
    {"name": "to", "in": "query", "description": "End (exclusive): epoch seconds or ISO-8601. Default: now.",
     "schema": {"type": "string"}},
    {"name": "endpoint", "in": "query", "description": "Only this route, e.g. /users/{id}.",
     "schema": {"type": "string"}},
    {"name": "method", "in": "query", "description": "Only this HTTP method.", "schema": {"type": "string"}},
    {"name": "consumer", "in": "query", "description": "Only this consumer id.", "schema": {"type": "string"}},
    {"name": "status_class", "in": "query", "description": "Only this status class: 1..5 or 1xx..5xx.",
     "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "description": "Most rows returned (1..1000; export up to 1,000,000).",
     "schema": {"type": "integer"}},
]  # fmt: skip

_FIGURES: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": ["number", "null"]}
        for name in (
            "requests",
            "errors",
            "errors_4xx",
            "errors_5xx",
            "error_rate",
            "latency_avg_ms",
            "latency_min_ms",
            "latency_max_ms",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "bytes_in",
            "bytes_out",
        )
    },
}


def _read(
    summary: str, description: str, schema: dict[str, Any], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "description": description,
            "security": [{"readToken": []}],
            "parameters": _FILTERS + (extra or []),
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
                "400": {"description": "A query parameter is invalid; `error` says which."},
                "401": {"description": "No read token, or an unknown/revoked one (ingest keys cannot read)."},
            },
        }
    }


def _table(key: str, label: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = _FIGURES["properties"]
    row = {"type": "object", "properties": {**label, **props}}
    return {"type": "object", "properties": {key: {"type": "array", "items": row}}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PeekAPI collector", "version": "1"},
    "components": {
        "securitySchemes": {
            "readToken": {"type": "http", "scheme": "bearer", "description": "A read token: peekapi token create"},
            "ingestKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
        }
    },
    "paths": {
        "/v1/events": {
            "post": {
                "summary": "Ingest a batch of events (WIRE.md)",
                "security": [{"ingestKey": []}],
                "parameters": [
                    {
                        "name": "x-peekapi-batch-id",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "Idempotency key: a batch id already stored is acknowledged, not stored again.",
                    },
                    {"name": "Content-Encoding", "in": "header", "schema": {"enum": ["identity", "gzip"]}},
                ],
                "requestBody": {"content": {"application/json": {"schema": {"type": "array"}}}},
                "responses": {
                    "200": {"description": 'Accepted: `{"accepted": N, "rejected": M}`'},
                    "400": {"description": "Not a JSON array, or corrupt gzip"},
                    "401": {"description": "Missing, unknown or revoked key"},
                    "413": {"description": "Body (or decompressed body) over the limit"},
                    "415": {"description": "Unknown Content-Encoding"},
                    "503": {"description": "Write queue full: retry after `Retry-After` seconds"},
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness for load balancers", "responses": {"200": {"description": "OK"}}}},
        "/v1/overview": _read(
            "Overview time series",
            "Per-interval requests, errors, error rate, p50/p95/p99 and bytes, plus totals. `interval` is auto, "
            "minute, hour, day or seconds (a multiple of 60).",
            {"type": "object", "properties": {"totals": _FIGURES, "series": {"type": "array", "items": _FIGURES}}},
            [{"name": "interval", "in": "query", "schema": {"type": "string"}}],
        ),
        "/v1/endpoints": _read(
            "Endpoints table",
            "One row per method + route, busiest first.",
            _table("endpoints", {"method": {"type": "string"}, "route": {"type": "string"}}),
        ),
        "/v1/consumers": _read(
            "Consumers table",
            "One row per consumer (null: requests without one), busiest first.",
            _table("consumers", {"consumer": {"type": ["string", "null"]}}),
        ),
        "/v1/status-codes": _read(
            "Status codes",
            "Requests per status code.",
            {"type": "object", "properties": {"status_codes": {"type": "array"}}},
        ),
        "/v1/events/recent": _read(
            "Recent raw events",
            "Raw events, newest first (default limit 50).",
            {"type": "object", "properties": {"events": {"type": "array"}}},
        ),
        "/v1/export": _read(
            "Export raw events",
            "Raw events as CSV or a JSON array, streamed, newest first.",
            {"type": "array"},
            [{"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}}],
        ),
    },
}
