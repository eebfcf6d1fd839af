"""peekapi_server: the self-hosted PeekAPI collector (``peekapi serve``).

An optional extra (``pip install "peekapi[server]"``); the SDK never imports it. The public surface is
:func:`create_app` (an ASGI application) and :class:`ServerConfig`.
"""

from __future__ import annotations

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
