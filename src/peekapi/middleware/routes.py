"""Route templates: which route of the framework matched a request, as its declared template.

Each framework leaves the matched route somewhere different; nothing here imports a framework at module level.

- Starlette and FastAPI put the matched route object in ``scope["route"]`` (FastAPI 0.16x keeps the route of an
  included router unprefixed and the effective, prefixed one under ``scope["fastapi"]``); mounts show up as a
  longer ``scope["root_path"]``, whose template is looked up once among the app's ``Mount`` routes.
- Litestar puts ``scope["path_template"]`` (parameters without their types); the declared path
  (``/orders/{oid:int}``) is looked up once among the app's routes.
- Flask (werkzeug) keeps its request in ``environ["werkzeug.request"]`` until its ``wsgi_app`` returns, when
  it clears it: the WSGI middleware takes the request when ``start_response`` is called, and reads its
  ``url_rule`` later. Bottle leaves the route in ``environ["bottle.route"]``.
- Django: ``request.resolver_match.route`` (read in ``peekapi.middleware.django``).

A lookup that finds nothing returns None: the event then has no ``route``. Lookups never raise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from .types import Scope

logger = logging.getLogger("peekapi")

__all__ = ["ASGIRoutes", "wsgi_route"]

# Caches below are bounded: they are keyed by concrete mount prefixes, which may hold ids.
_MAX_CACHED = 1024
_K = TypeVar("_K")
_V = TypeVar("_V")


class ASGIRoutes:
    """Route-template lookup for one ASGI middleware instance. Thread-safe (caches are plain dict swaps)."""

    __slots__ = ("_endpoints", "_endpoints_router", "_lock", "_mounts", "_typed")

    def __init__(self) -> None:
        self._mounts: dict[str, str] = {}
        self._typed: dict[str, str] = {}
        self._endpoints: dict[int, tuple[object, str | None]] = {}
        self._endpoints_router: object = None
        self._lock = threading.Lock()

    def template(self, scope: Scope) -> str | None:
        """The template of the route that handled ``scope`` (called once the application is done with it)."""
        try:
            route = scope.get("route")
            if route is not None and "app_root_path" not in scope:
                # Starlette or FastAPI outside any mount (a Mount that matches adds app_root_path): the route that
                # matched, whose path is the template, read as it is (a cache by route costs more than the
                # attribute). FastAPI 0.16x keeps the prefixed route of an included router apart.
                # A Host whose own routes matched nothing stays the route: it has no path, hence no template.
                fastapi = scope.get("fastapi")
                if fastapi is not None:
                    route = fastapi.get("effective_route_context") or route
                try:
                    path = route.path
                except AttributeError:
                    return None
                return path if type(path) is str else None
            litestar = scope.get("path_template")
            if litestar is not None:
                return self._litestar(scope, litestar)
            if route is not None:
                return self._starlette(scope, route)
            if "endpoint" in scope and "router" in scope:
                return self._by_endpoint(scope)
        except Exception:  # a framework changed shape: record the event without a route
            logger.debug("peekapi: route template lookup failed", exc_info=True)
        return None

    # -- Starlette / FastAPI --------------------------------------------------------------------------------

    def _starlette(self, scope: Scope, route: Any) -> str | None:
        path = None
        fastapi = scope.get("fastapi")
        if fastapi is not None:
            effective = fastapi.get("effective_route_context")
            if effective is not None:
                path = getattr(effective, "path", None)
        if path is None:
            path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        if getattr(route, "routes", None) is not None:
            # A Mount the router stopped at: nothing inside it matched (a 404), unless it mounts a plain app.
            if route.routes:
                return None
            return self._mount_prefix(scope) + "/{path:path}"
        if "app_root_path" not in scope:
            return path
        return self._mount_prefix(scope) + path

    def _mount_prefix(self, scope: Scope) -> str:
        """The template of the mounts the request went through (Starlette sets ``app_root_path`` at the first).

        Their concrete path is what the mounts added to ``root_path``; its template is found among the
        router's ``Mount`` routes, once per concrete prefix.
        """
        root_path: str = scope.get("root_path", "")
        app_root_path: str = scope.get("app_root_path", "")
        concrete = root_path[len(app_root_path) :] if root_path.startswith(app_root_path) else root_path
        if not concrete:
            return ""
        cached = self._mounts.get(concrete)
        if cached is not None:
            return cached
        router = scope.get("router")
        found = _find_mount(getattr(router, "routes", ()), concrete) if router is not None else None
        template = concrete if found is None else found
        with self._lock:
            self._mounts = _remember(self._mounts, concrete, template)
        return template

    def _by_endpoint(self, scope: Scope) -> str | None:
        """Starlette versions that do not set ``scope["route"]``: find the route by its endpoint."""
        router = scope["router"]
        endpoint = scope["endpoint"]
        if self._endpoints_router is not router:
            with self._lock:
                self._endpoints = {}
                self._endpoints_router = router
        entry = self._endpoints.get(id(endpoint))
        if entry is None or entry[0] is not endpoint:
            # A route added since the table was built, or an endpoint that is no route's (remembered as such).
            with self._lock:
                table = _endpoint_paths(getattr(router, "routes", ()))
                entry = table.get(id(endpoint))
                if entry is None or entry[0] is not endpoint:
                    entry = (endpoint, None)
                table.update(self._endpoints)
                table[id(endpoint)] = entry
                self._endpoints = table
        path = entry[1]
        if path is None or "app_root_path" not in scope:
            return path
        return self._mount_prefix(scope) + path

    # -- Litestar -------------------------------------------------------------------------------------------

    def _litestar(self, scope: Scope, path_template: object) -> str | None:
        if not isinstance(path_template, str) or not path_template:
            return None
        typed = self._typed.get(path_template)
        if typed is not None:
            return typed
        app = scope.get("litestar_app") or scope.get("app")
        table = {}
        for route in getattr(app, "routes", ()):
            path_format = getattr(route, "path_format", None)
            path = getattr(route, "path", None)
            if isinstance(path_format, str) and isinstance(path, str):
                table[path_format] = path
        typed = table.get(path_template, path_template)
        with self._lock:
            self._typed = _remember(self._typed, path_template, typed)
        return typed


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> dict[_K, _V]:
    """``cache`` with ``key`` set (a fresh one once it holds _MAX_CACHED entries). The caller holds the lock."""
    if len(cache) >= _MAX_CACHED:
        cache = {}
    cache[key] = value
    return cache


def _is_mount(route: object) -> bool:
    from starlette.routing import Mount

    return isinstance(route, Mount)


def _find_mount(routes: Iterable[Any], concrete: str) -> str | None:
    """The template of the chain of ``Mount`` routes that matched the concrete prefix ``concrete``."""
    for route in routes:
        if _is_mount(route):
            match = route.path_regex.match(concrete + "/")
            if match is None:
                continue
            rest = match.groupdict().get("path", "")
            if not rest:
                return str(route.path)
            inner = _find_mount(route.routes, "/" + rest.rstrip("/"))
            if inner is not None:
                return str(route.path) + inner
        elif type(route).__name__ == "Host":
            found = _find_mount(getattr(route, "routes", ()), concrete)
            if found is not None:
                return found
    return None


def _endpoint_paths(routes: Iterable[Any]) -> dict[int, tuple[object, str | None]]:
    """Every route's endpoint (by id, kept alive in the value) to its path below its mounts.

    A mounted plain app (no routes of its own) maps to ``/{path:path}``: its mount is part of the root path.
    """
    out: dict[int, tuple[object, str | None]] = {}
    stack = [iter(routes)]
    while stack:
        for route in stack[-1]:
            inner = getattr(route, "routes", None)
            if inner:
                stack.append(iter(inner))
                break
            if inner is not None and _is_mount(route):
                out.setdefault(id(route.app), (route.app, "/{path:path}"))
                continue
            endpoint = getattr(route, "endpoint", None)
            path = getattr(route, "path", None)
            if endpoint is not None and isinstance(path, str):
                out.setdefault(id(endpoint), (endpoint, path))
        else:
            stack.pop()
    return out


def wsgi_route(environ: Mapping[str, Any], werkzeug_request: object) -> str | None:
    """The route template Bottle or Flask matched, else None. Never raises.

    ``werkzeug_request`` is what ``environ["werkzeug.request"]`` held when the app called ``start_response``.
    """
    try:
        # Plain attribute reads (a missing one raises and is logged below): cheaper than getattr() with a default.
        if werkzeug_request is not None:
            try:
                rule = werkzeug_request.url_rule  # type: ignore[attr-defined] # Flask's matched Rule, or None
            except AttributeError:  # a plain werkzeug request (no Flask): no routing of its own
                return None
            if rule is None:
                return None
            template = rule.rule
        else:
            bottle_route = environ.get("bottle.route")
            if bottle_route is None:
                return None
            template = bottle_route.rule
        return template if type(template) is str else None
    except Exception:
        logger.debug("peekapi: route template lookup failed", exc_info=True)
    return None
