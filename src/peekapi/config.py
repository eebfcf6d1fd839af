"""Options: every default in one place, and their validation.

``Options`` is the public, user-facing dataclass. ``resolve_options`` turns an ``Options`` or a plain mapping
into a validated, immutable ``Settings`` the rest of the SDK reads. Validation raises ``ValueError`` with a
message that names the option; nothing here is done lazily at request time. A configuration that is valid but
probably not meant (an endpoint without a path) is logged at WARNING under the ``peekapi`` logger.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .endpoint import Endpoint, parse_endpoint

DEFAULT_ENDPOINT = "https://ingest.peekapi.dev/v1/events"
DEFAULT_FLUSH_INTERVAL = 10.0
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_BUFFER_SIZE = 10_000
DEFAULT_MAX_STORAGE_BYTES = 5_242_880
DEFAULT_MAX_EVENT_BYTES = 65_536
DEFAULT_MAX_BATCH_BYTES = 1_048_576
DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_RETRY_BASE_DELAY = 0.5
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_EXIT_TIMEOUT = 2.0
MIN_EVENT_BYTES = 512

ENV_API_KEY = "PEEKAPI_API_KEY"
ENV_ENDPOINT = "PEEKAPI_ENDPOINT"
#: The environment variables that options can come from (the api key, the endpoint, the spool's directory).
ENV_VARIABLES = (ENV_API_KEY, ENV_ENDPOINT, "XDG_DATA_HOME", "LOCALAPPDATA")

logger = logging.getLogger("peekapi")

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

IdentifyConsumer = Callable[[dict[str, str]], "str | None"]
OnError = Callable[[Exception], None]


@dataclass
class Options:
    """User-facing configuration of a :class:`~peekapi.PeekApiClient`.

    ``api_key`` and ``endpoint`` fall back to the ``PEEKAPI_API_KEY`` and ``PEEKAPI_ENDPOINT`` environment
    variables when left empty. Every other field has the default shown; an explicit ``0`` or ``False`` is kept
    as given (and rejected with ``ValueError`` where it makes no sense), never replaced by a default.
    """

    api_key: str = ""
    endpoint: str = ""
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    batch_size: int = DEFAULT_BATCH_SIZE
    max_buffer_size: int = DEFAULT_MAX_BUFFER_SIZE
    max_storage_bytes: int = DEFAULT_MAX_STORAGE_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    storage_path: str | None = None
    debug: bool = False
    on_error: OnError | None = None
    identify_consumer: IdentifyConsumer | None = None
    # Middleware options.
    collect_query_string: bool = False
    exclude_paths: Iterable[str] = field(default_factory=tuple)
    exclude_methods: Iterable[str] = field(default_factory=tuple)
    # Delivery tuning.
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    retry_base_delay: float = DEFAULT_RETRY_BASE_DELAY
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    # Allow an endpoint on a private network (a self-hosted collector). Off by default (SSRF protection).
    allow_private_endpoint: bool = False
    # Install SIGTERM/SIGINT handlers (main thread only) and an atexit hook that flush before exit.
    handle_signals: bool = True


OPTION_NAMES = frozenset(f.name for f in fields(Options))
#: Options of 0.2.0's development versions that are gone, and why: an unknown option, said more clearly.
REMOVED_OPTIONS = {
    "delivery": "encoding and HTTP always run on two background threads of the process",
}


@dataclass(frozen=True)
class Settings:
    """Validated, immutable configuration. Built only by :func:`resolve_options`. Its repr hides the api key."""

    api_key: str = field(repr=False)
    endpoint: Endpoint
    flush_interval: float
    batch_size: int
    max_buffer_size: int
    max_storage_bytes: int
    max_event_bytes: int
    storage_dir: Path
    debug: bool
    on_error: OnError | None
    identify_consumer: IdentifyConsumer | None
    collect_query_string: bool
    exclude_paths: frozenset[str]
    exclude_path_prefixes: tuple[str, ...]
    exclude_methods: frozenset[str]
    max_batch_bytes: int
    request_timeout: float
    retry_base_delay: float
    shutdown_timeout: float
    allow_private_endpoint: bool
    handle_signals: bool


def resolve_options(options: Options | Mapping[str, Any] | None) -> Settings:
    """Validate ``options`` and return the ``Settings`` the SDK runs on.

    Raises ``ValueError`` naming the offending option for anything invalid: unknown keys, wrong types,
    out-of-range numbers, a missing or malformed api key, an endpoint that is not allowed.
    """
    opts = _to_options(options)
    api_key = opts.api_key if opts.api_key else os.environ.get(ENV_API_KEY, "")
    endpoint_url = opts.endpoint if opts.endpoint else os.environ.get(ENV_ENDPOINT, "") or DEFAULT_ENDPOINT
    _check_api_key(api_key)
    if not isinstance(endpoint_url, str):
        raise ValueError("peekapi: option 'endpoint' must be a string URL")
    allow_private = _bool(opts, "allow_private_endpoint")
    endpoint = parse_endpoint(endpoint_url, allow_private=allow_private)
    _warn_without_path(endpoint)
    exclude_paths, prefixes = _exclude_paths(opts.exclude_paths)
    batch_size = _int(opts, "batch_size", minimum=1)
    max_buffer_size = _int(opts, "max_buffer_size", minimum=1)
    if batch_size > max_buffer_size:
        raise ValueError(
            f"peekapi: option 'batch_size' ({batch_size}) must not exceed 'max_buffer_size' ({max_buffer_size})"
        )
    return Settings(
        api_key=api_key,
        endpoint=endpoint,
        flush_interval=_positive_float(opts, "flush_interval"),
        batch_size=batch_size,
        max_buffer_size=max_buffer_size,
        max_storage_bytes=_int(opts, "max_storage_bytes", minimum=0),
        max_event_bytes=_int(opts, "max_event_bytes", minimum=MIN_EVENT_BYTES),
        storage_dir=_storage_dir(opts.storage_path, endpoint.url),
        debug=_bool(opts, "debug"),
        on_error=_callable(opts, "on_error"),
        identify_consumer=_callable(opts, "identify_consumer"),
        collect_query_string=_bool(opts, "collect_query_string"),
        exclude_paths=exclude_paths,
        exclude_path_prefixes=prefixes,
        exclude_methods=_exclude_methods(opts.exclude_methods),
        max_batch_bytes=_int(opts, "max_batch_bytes", minimum=MIN_EVENT_BYTES),
        request_timeout=_positive_float(opts, "request_timeout"),
        retry_base_delay=_non_negative_float(opts, "retry_base_delay"),
        shutdown_timeout=_non_negative_float(opts, "shutdown_timeout"),
        allow_private_endpoint=allow_private,
        handle_signals=_bool(opts, "handle_signals"),
    )


def _warn_without_path(endpoint: Endpoint) -> None:
    """A WARNING (not an error: a proxy may take batches at ``/``) when the endpoint has no path."""
    if endpoint.target.partition("?")[0] == "/":
        logger.warning(
            "peekapi: 'endpoint' %s has no path, so batches are POSTed to /; the collector and the PeekAPI cloud "
            "take them at /v1/events (%s/v1/events), and where nothing takes them (404) every batch is dropped",
            endpoint.origin,
            endpoint.origin,
        )


def _to_options(options: Options | Mapping[str, Any] | None) -> Options:
    if options is None:
        return Options()
    if isinstance(options, Options):
        return options
    if not isinstance(options, Mapping):
        raise ValueError(f"peekapi: options must be an Options or a dict, not {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in OPTION_NAMES)
    if unknown:
        removed = "".join(
            f" ({name!r} was removed: {REMOVED_OPTIONS[name]})" for name in unknown if name in REMOVED_OPTIONS
        )
        raise ValueError(
            f"peekapi: unknown option(s) {', '.join(map(repr, unknown))}{removed}; "
            f"known options are {', '.join(sorted(OPTION_NAMES))}"
        )
    return Options(**options)


def _check_api_key(api_key: object) -> None:
    if not isinstance(api_key, str):
        raise ValueError("peekapi: option 'api_key' must be a string")
    if not api_key.strip():
        raise ValueError(f"peekapi: 'api_key' is required (pass it in the options or set {ENV_API_KEY})")
    if _CONTROL_CHARS.search(api_key):
        # Never echo the key itself.
        raise ValueError("peekapi: 'api_key' contains control characters")


def _int(opts: Options, name: str, *, minimum: int) -> int:
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"peekapi: option {name!r} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"peekapi: option {name!r} must be >= {minimum}, got {value}")
    return value


def _float(opts: Options, name: str) -> float:
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"peekapi: option {name!r} must be a finite number of seconds, got {value!r}")
    return float(value)


def _positive_float(opts: Options, name: str) -> float:
    value = _float(opts, name)
    if value <= 0:
        raise ValueError(f"peekapi: option {name!r} must be > 0 seconds, got {value}")
    return value


def _non_negative_float(opts: Options, name: str) -> float:
    value = _float(opts, name)
    if value < 0:
        raise ValueError(f"peekapi: option {name!r} must be >= 0 seconds, got {value}")
    return value


def _bool(opts: Options, name: str) -> bool:
    value = getattr(opts, name)
    if not isinstance(value, bool):
        raise ValueError(f"peekapi: option {name!r} must be True or False, got {value!r}")
    return value


def _callable(opts: Options, name: str) -> Any:
    value = getattr(opts, name)
    if value is not None and not callable(value):
        raise ValueError(f"peekapi: option {name!r} must be callable or None, got {type(value).__name__}")
    return value


def _strings(value: object, name: str) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"peekapi: option {name!r} must be a list of strings, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"peekapi: option {name!r} must hold non-empty strings, got {item!r}")
    return items


def _exclude_paths(value: object) -> tuple[frozenset[str], tuple[str, ...]]:
    """Exact paths, and prefixes written with a trailing ``*`` (``/internal/*``)."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for item in _strings(value, "exclude_paths"):
        if not item.startswith("/"):
            raise ValueError(f"peekapi: option 'exclude_paths' entries must start with '/', got {item!r}")
        if item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            exact.add(item)
    return frozenset(exact), tuple(prefixes)


def _exclude_methods(value: object) -> frozenset[str]:
    return frozenset(m.upper() for m in _strings(value, "exclude_methods"))


def _storage_dir(storage_path: object, endpoint_url: str) -> Path:
    if storage_path is not None and not isinstance(storage_path, str | os.PathLike):
        raise ValueError(f"peekapi: option 'storage_path' must be a path or None, got {storage_path!r}")
    if storage_path:
        return Path(os.fspath(storage_path)).expanduser()
    digest = hashlib.sha256(endpoint_url.encode()).hexdigest()[:12]
    return default_data_home() / "peekapi" / "spool" / digest


def default_data_home() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME``, ``%LOCALAPPDATA%`` or ``~/.local/share``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg)
    local = os.environ.get("LOCALAPPDATA")
    if os.name == "nt" and local:
        return Path(local)
    return Path.home() / ".local" / "share"
