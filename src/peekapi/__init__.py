"""peekapi: drop-in API analytics for Python.

The public API: ``PeekApiClient`` (``track``, ``flush``, ``shutdown``, ``stats``), ``RequestEvent``, ``Options``,
``hash_consumer_id`` and ``default_identify_consumer``. The middleware lives in ``peekapi.middleware``
(``PeekApiASGI``, ``PeekApiWSGI``) and ``peekapi.middleware.django`` (``PeekApiMiddleware``); for compatibility
with peekapi 0.1 those names can also be imported from here.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .client import PeekApiClient
from .config import Options
from .consumer import default_identify_consumer, hash_consumer_id
from .event import RequestEvent

__all__ = [
    "Options",
    "PeekApiClient",
    "RequestEvent",
    "__version__",
    "default_identify_consumer",
    "hash_consumer_id",
]

_MIDDLEWARE = {
    "PeekApiASGI": "peekapi.middleware",
    "PeekApiWSGI": "peekapi.middleware",
    "PeekApiMiddleware": "peekapi.middleware.django",
}


def __getattr__(name: str) -> Any:
    """Import the middleware classes on first use, so ``import peekapi`` stays light."""
    module = _MIDDLEWARE.get(name)
    if module is None:
        raise AttributeError(f"module 'peekapi' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
