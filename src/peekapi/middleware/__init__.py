"""Middleware for ASGI (FastAPI, Starlette, Litestar), WSGI (Flask, Bottle) and Django.

No framework is imported here: ``import peekapi.middleware`` works with none installed.
"""

from __future__ import annotations

from .asgi import PeekApiASGI
from .django import PeekApiMiddleware
from .wsgi import PeekApiWSGI

__all__ = ["PeekApiASGI", "PeekApiMiddleware", "PeekApiWSGI"]
