"""The OpenAPI 3.1 description of the collector's HTTP API, served at ``GET /openapi.json``.

It states what each operation accepts (the ingest body of WIRE.md, every read parameter and its valid values)
and every answer it may give, with the body and headers of each, so that a client generator or an API fuzzer
(``tests/server/test_fuzz.py`` runs one in CI against it) can rely on it: a response the document does not
describe is a bug in the collector or here.
"""

from __future__ import annotations

from typing import Any

from .events import MAX_CONSUMER, MAX_METHOD, MAX_PATH, MAX_ROUTE
from .readapi import MAX_EXPORT, MAX_LIMIT, MAX_TIME

JsonSchema = dict[str, Any]

_REF = "#/components/schemas/"
_NUMBER_OR_NULL: JsonSchema = {"type": ["number", "null"]}
_COUNT: JsonSchema = {"type": "integer", "minimum": 0}
#: Any text without NUL (which no stored value holds, so a filter holding one is refused).
_NUL_FREE: JsonSchema = {"type": "string", "pattern": "^[^\\u0000]*$"}

#: A time in a query: epoch seconds, an ISO-8601 date and time (offset optional: UTC), or a date (its midnight,
#: UTC), 1970..9999.
_TIME: JsonSchema = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_TIME - 1},
        {"type": "string", "format": "date-time", "pattern": "^(19[7-9][0-9]|[2-9][0-9][0-9][0-9])-"},
        {"type": "string", "format": "date", "pattern": "^(19[7-9][0-9]|[2-9][0-9][0-9][0-9])-"},
    ]
}


def _query(name: str, description: str, schema: JsonSchema) -> JsonSchema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _filters(max_limit: int, default_limit: int) -> list[JsonSchema]:
    return [
        _query("from", "Start (inclusive): epoch seconds or ISO-8601, 1970..9999, at most 400 days before `to` "
               "(which defaults to now). Default: `to` - 24 h.", _TIME),
        _query("to", "End (exclusive): epoch seconds or ISO-8601, 1970..9999. Default: now. At most 400 days "
               "after `from`.", _TIME),
        _query("endpoint", "Only this route, e.g. `/users/{id}`.", _NUL_FREE),
        _query("method", "Only this HTTP method (case-insensitive).", _NUL_FREE),
        _query("consumer", "Only this consumer id, as sent.", _NUL_FREE),
        _query("status_class", "Only this status class: `1`..`5` or `1xx`..`5xx` (case-insensitive).",
               {"type": "string", "pattern": "^[1-5]([xX][xX])?$"}),
        _query("limit", f"Most rows returned, 1..{max_limit} (default {default_limit}).",
               {"type": "integer", "minimum": 1, "maximum": max_limit}),
    ]  # fmt: skip


_INTERVAL = _query(
    "interval",
    "Series interval: `auto` (minutes up to 6 hours, hours up to 8 days, days beyond), `minute`, `hour`, `day`, "
    "or seconds (a multiple of 60, at most 400 days).",
    {
        "anyOf": [
            {"type": "string", "enum": ["auto", "minute", "hour", "day"]},
            {"type": "integer", "minimum": 60, "maximum": 400 * 86400, "multipleOf": 60},
        ]
    },
)
_FORMAT = _query("format", "`json` (a JSON array, the default) or `csv`.", {"type": "string", "enum": ["json", "csv"]})

_FIGURE_NAMES = (
    ("requests", _COUNT),
    ("errors", _COUNT),
    ("errors_4xx", _COUNT),
    ("errors_5xx", _COUNT),
    ("error_rate", {"type": "number", "minimum": 0, "maximum": 1}),
    ("latency_avg_ms", _NUMBER_OR_NULL),
    ("latency_min_ms", _NUMBER_OR_NULL),
    ("latency_max_ms", _NUMBER_OR_NULL),
    ("p50_ms", _NUMBER_OR_NULL),
    ("p95_ms", _NUMBER_OR_NULL),
    ("p99_ms", _NUMBER_OR_NULL),
    ("bytes_in", _COUNT),
    ("bytes_out", _COUNT),
)


def _figures(**label: JsonSchema) -> JsonSchema:
    """An object with the figures (requests, errors, latency, bytes), all required, plus ``label``'s fields."""
    props = {**label, **dict(_FIGURE_NAMES)}
    return {"type": "object", "required": list(props), "properties": props}


_ERROR: JsonSchema = {"$ref": _REF + "Error"}


def _error_response(description: str, headers: dict[str, JsonSchema] | None = None) -> JsonSchema:
    response: JsonSchema = {"description": description, "content": {"application/json": {"schema": _ERROR}}}
    if headers:
        response["headers"] = headers
    return response


_UNAUTHORISED = _error_response(
    "No read token, or an unknown or revoked one (ingest keys cannot read).",
    {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
)
_BAD_QUERY = _error_response(
    "A query parameter is unknown, given twice, holds NUL, or has an invalid value; `error` names it."
)


def _read(
    summary: str,
    description: str,
    ok: JsonSchema,
    parameters: list[JsonSchema],
) -> JsonSchema:
    return {
        "get": {
            "summary": summary,
            "description": description,
            "security": [{"readToken": []}],
            "parameters": parameters,
            "responses": {"200": {"description": "OK", **ok}, "400": _BAD_QUERY, "401": _UNAUTHORISED},
        }
    }


def _json(schema: JsonSchema) -> JsonSchema:
    return {"content": {"application/json": {"schema": schema}}}


def _rows(key: str, row: JsonSchema) -> JsonSchema:
    return _json({"type": "object", "required": [key], "properties": {key: {"type": "array", "items": row}}})


_TEXT: JsonSchema = {"type": "string"}
_EVENT_IN: JsonSchema = {
    "type": "object",
    "description": "One API request (WIRE.md). Unknown fields are ignored. An event that cannot be stored exactly "
    "is counted in `rejected` and the rest of the batch is still accepted.",
    "required": ["method", "path", "status_code", "response_time_ms"],
    "properties": {
        "method": {"type": "string", "minLength": 1, "maxLength": MAX_METHOD,
                   "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", "description": "An HTTP method; upper-cased."},
        "path": {"type": "string", "minLength": 1, "description": f"Request path; cut to {MAX_PATH} characters."},
        "route": {"type": ["string", "null"],
                  "description": f"Route template (cut to {MAX_ROUTE}); missing, null or empty: the path with "
                  "id-like segments replaced by `{id}`."},
        "status_code": {"type": "integer", "minimum": 100, "maximum": 999},
        "response_time_ms": {"type": "number", "minimum": 0, "maximum": 1e9},
        "request_size": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**40},
        "response_size": {"type": ["integer", "null"], "minimum": 0, "maximum": 2**40},
        "consumer_id": {"type": ["string", "null"], "description": f"Cut to {MAX_CONSUMER} characters."},
        "metadata": {"type": ["object", "null"],
                     "description": "Stored as compact JSON when at most 64 KiB (dropped beyond); nested at most 32 "
                     "deep, finite numbers, text without NUL or lone surrogates."},
        "timestamp": {"type": ["string", "null"],
                      "description": "ISO-8601, 1970..9999; missing, null or empty: now. Clamped to the last 31 "
                      "days; over 5 minutes ahead: now."},
    },
}  # fmt: skip
_EVENT_OUT: JsonSchema = {
    "type": "object",
    "required": [
        "id", "ts_ms", "method", "path", "route", "status_code", "response_time_ms", "request_size",
        "response_size", "consumer_id", "metadata",
    ],
    "properties": {
        "id": {"type": "integer"},
        "ts_ms": {"type": "integer", "minimum": 0, "maximum": MAX_TIME * 1000 - 1},
        "method": _TEXT,
        "path": _TEXT,
        "route": _TEXT,
        "status_code": {"type": "integer", "minimum": 100, "maximum": 999},
        "response_time_ms": {"type": "number", "minimum": 0},
        "request_size": _COUNT,
        "response_size": _COUNT,
        "consumer_id": {"type": ["string", "null"]},
        "metadata": {"type": ["object", "null"]},
    },
}  # fmt: skip

_ACCEPT_ENCODING = {"Accept-Encoding": {"required": True, "schema": {"type": "string", "const": "gzip"}}}


def _ingest_error(description: str) -> JsonSchema:
    return _error_response(description, _ACCEPT_ENCODING)


_INGEST: JsonSchema = {
    "post": {
        "summary": "Ingest a batch of events (WIRE.md)",
        "description": "A bare JSON array of events (docs/wire.md), optionally gzip-compressed. Every answer says "
        "`Accept-Encoding: gzip`. A 200 means the accepted events are committed to the database; a batch id already "
        "stored for the project is acknowledged again and not stored twice.",
        "security": [{"ingestKey": []}],
        "parameters": [
            {
                "name": "x-peekapi-batch-id",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Idempotency key: its first 200 characters, spaces around it removed, are stored for "
                "14 days; a batch whose id is already stored is acknowledged and not stored again.",
            },
            {
                "name": "Content-Encoding",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "enum": ["identity", "gzip", "x-gzip"]},
                "description": "`gzip` when the body is gzip-compressed, one member or several (the responses say "
                "Accept-Encoding: gzip).",
            },
        ],
        "requestBody": {
            "required": True,
            "description": "At most 5 MiB as sent and 20 MiB decompressed.",
            "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": _REF + "Event"}}}},
        },
        "responses": {
            "200": {
                "description": "Stored: `accepted` events are committed, `rejected` ones could not be stored exactly.",
                "headers": _ACCEPT_ENCODING,
                **_json({"$ref": _REF + "Accepted"}),
            },
            "400": _ingest_error(
                "The body is not JSON, not an array, nested too deeply to parse, corrupt or truncated gzip, has bytes "
                "after the gzip stream, or is a batch the store refused."
            ),
            "401": _ingest_error("Missing, unknown or revoked x-api-key (read tokens cannot ingest)."),
            "413": _ingest_error("Body over 5 MiB, or over 20 MiB once decompressed."),
            "415": _ingest_error("A Content-Encoding other than gzip, x-gzip or identity."),
            "503": {
                "description": "Nothing stored: the write queue is full, the writer did not take the batch in time, "
                "or the database cannot take it now. Retry after `Retry-After` seconds (the SDKs do).",
                "headers": {
                    **_ACCEPT_ENCODING,
                    "Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                },
                **_json(_ERROR),
            },
        },
    }
}

_OVERVIEW = _json(
    {
        "type": "object",
        "required": ["start", "end", "interval", "totals", "series"],
        "properties": {
            "start": {"type": "integer"},
            "end": {"type": "integer"},
            "interval": {"type": "integer", "minimum": 60},
            "totals": _figures(),
            "series": {"type": "array", "items": _figures(t={"type": "integer"})},
        },
    }
)
_EXPORT = {
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"$ref": _REF + "StoredEvent"}}},
        "text/csv": {"schema": {"type": "string"}},
    },
    "headers": {"Content-Disposition": {"required": True, "schema": {"type": "string"}}},
}
_FILTERS = _filters(MAX_LIMIT, 100)

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "PeekAPI collector", "version": "1"},
    "components": {
        "securitySchemes": {
            "readToken": {"type": "http", "scheme": "bearer", "description": "A read token: peekapi token create"},
            "ingestKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "An ingest key: peekapi key create",
            },
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Accepted": {
                "type": "object",
                "required": ["accepted", "rejected"],
                "properties": {"accepted": _COUNT, "rejected": _COUNT},
            },
            "Event": _EVENT_IN,
            "StoredEvent": _EVENT_OUT,
        },
    },
    "paths": {
        "/v1/events": _INGEST,
        "/healthz": {
            "get": {
                "summary": "Liveness for load balancers",
                "security": [],
                "responses": {
                    "200": {"description": "OK: the writer keeps up."},
                    "503": {"description": "Database writes keep failing."},
                },
            }
        },
        "/v1/overview": _read(
            "Overview time series",
            "Per-interval requests, errors, error rate, p50/p95/p99 and bytes, plus totals.",
            _OVERVIEW,
            [*_FILTERS, _INTERVAL],
        ),
        "/v1/endpoints": _read(
            "Endpoints table",
            "One row per method + route, busiest first.",
            _rows("endpoints", _figures(method=_TEXT, route=_TEXT)),
            _FILTERS,
        ),
        "/v1/consumers": _read(
            "Consumers table",
            "One row per consumer (null: requests without one), busiest first.",
            _rows("consumers", _figures(consumer={"type": ["string", "null"]})),
            _FILTERS,
        ),
        "/v1/status-codes": _read(
            "Status codes",
            "Requests per status code.",
            _rows(
                "status_codes",
                {
                    "type": "object",
                    "required": ["status_code", "requests"],
                    "properties": {"status_code": {"type": "integer"}, "requests": _COUNT},
                },
            ),
            _FILTERS,
        ),
        "/v1/events/recent": _read(
            "Recent raw events",
            "Raw events, newest first.",
            _rows("events", {"$ref": _REF + "StoredEvent"}),
            _filters(MAX_LIMIT, 50),
        ),
        "/v1/export": _read(
            "Export raw events",
            "Raw events as a JSON array or CSV, streamed, newest first.",
            _EXPORT,
            [*_filters(MAX_EXPORT, MAX_EXPORT), _FORMAT],
        ),
    },
}
