"""The only home of process-lifecycle hooks: atexit, SIGTERM/SIGINT, and fork.

Clients are held weakly: a client that is garbage-collected is forgotten. The hooks call ``_on_exit(timeout)``
(deliver or spool what is buffered within ``timeout``, and stop), ``flush(timeout)`` and ``_after_fork()``.

On SIGTERM/SIGINT the handler stops the client only when the signal's previous disposition is the default
(the process ends right after). When a previous Python handler exists (a server that shuts down gracefully,
``KeyboardInterrupt``), the client goes on, so that requests still in flight are recorded, and atexit stops it;
but what is buffered is delivered, or spooled past the deadline, before the handler returns
(``_flush_or_spool``): such a server may end the process without atexit (uvicorn restores the default action
and raises the signal again once its shutdown is done).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from types import FrameType
from typing import Any, Protocol

logger = logging.getLogger("peekapi")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
Handler = Any  # what signal.getsignal returns: a callable, SIG_DFL, SIG_IGN or None


class Managed(Protocol):
    """What the lifecycle hooks need of a client."""

    def _on_exit(self, timeout: float) -> None: ...
    def _after_fork(self) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def _flush_or_spool(self, timeout: float) -> bool: ...


_clients: weakref.WeakSet[Managed] = weakref.WeakSet()
_refs: dict[int, weakref.ref[Managed]] = {}  # client id -> the weak reference its signal handlers hold
_installed_handlers: dict[int, list[tuple[int, Handler, Handler]]] = {}  # id(ref) -> (signal, ours, previous)
_installed = False
_exit_timeout = 2.0


def register(client: Managed, exit_timeout: float, signals: bool) -> None:
    """Make ``client`` flush at interpreter exit and on SIGTERM/SIGINT, and survive fork.

    Signal handlers are installed only when called from the main thread (elsewhere only atexit applies); each
    chains to the handler that was there before. Never raises.
    """
    global _installed, _exit_timeout
    _clients.add(client)
    if not _installed:
        _installed = True
        _exit_timeout = exit_timeout
        atexit.register(_at_exit, exit_timeout)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
    if signals and threading.current_thread() is threading.main_thread():
        ref = weakref.ref(client)
        _refs[id(client)] = ref
        for signum in SIGNALS:
            _chain(signum, ref, exit_timeout)


def unregister(client: Managed) -> None:
    """Forget ``client`` (after its shutdown), and uninstall its signal handlers where they are still on top.

    A handler that another one was installed over stays, and only chains onwards.
    """
    _clients.discard(client)
    ref = _refs.pop(id(client), None)
    if ref is not None and threading.current_thread() is threading.main_thread():
        _restore(id(ref))


def _at_exit(timeout: float) -> None:
    for client in list(_clients):
        try:
            client._on_exit(timeout)
        except Exception:
            logger.exception("peekapi: flushing at exit failed")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        try:
            client._after_fork()
        except Exception:
            logger.exception("peekapi: resetting the client after fork failed")
    mp_util = sys.modules.get("multiprocessing.util")
    if _clients and mp_util is not None:
        # A multiprocessing child ends with os._exit(), which skips atexit, and clears the finalizers it
        # inherited; its after-fork hooks run after that, so one of them arms our flush as a finalizer.
        mp_util.register_after_fork(_mp_anchor, _arm_multiprocessing_exit)


class _Anchor:
    """A weak-referenceable object that multiprocessing's after-fork registry can hold."""


_mp_anchor = _Anchor()


def _arm_multiprocessing_exit(_: object) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _at_exit, args=(_exit_timeout,), exitpriority=100)


def _chain(signum: int, ref: weakref.ref[Managed], timeout: float) -> None:
    try:
        previous = signal.getsignal(signum)
    except (ValueError, OSError):
        return

    def handler(received: int, frame: FrameType | None) -> None:
        client = ref()
        if client is not None and client in _clients:
            try:
                if callable(previous) or previous == signal.SIG_IGN:
                    # The process goes on (a server's graceful shutdown, KeyboardInterrupt unwinding): deliver
                    # what is buffered now (or spool it, should the process end without atexit), but keep
                    # accepting the requests still in flight; atexit, or the ASGI lifespan shutdown, ends it.
                    client._flush_or_spool(timeout)
                else:
                    client._on_exit(timeout)  # the default action ends the process right after this
            except Exception:
                logger.exception("peekapi: flushing on signal %d failed", received)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # SIG_DFL, or a handler installed from C (None): restore it and let the signal do its job
            signal.signal(received, signal.SIG_DFL)
            os.kill(os.getpid(), received)

    try:
        signal.signal(signum, handler)
    except (ValueError, OSError) as exc:
        logger.debug("peekapi: could not install a handler for signal %d: %s", signum, exc)
        return
    _installed_handlers.setdefault(id(ref), []).append((signum, handler, previous))


def _restore(ref_id: int) -> None:
    """Put back the handlers a stopped client replaced, where ours is still the one installed (main thread).

    So that an app creating many clients one after another does not grow a chain of handlers.
    """
    for signum, handler, previous in reversed(_installed_handlers.pop(ref_id, [])):
        try:
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
        except (ValueError, OSError, TypeError):
            continue  # not the main thread, or a previous handler installed from C (None)


#: Signals meant for the application, kept away from peekapi's own threads (see ``block_app_signals``).
_APP_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)


def block_app_signals() -> None:
    """Block the application's signals in the calling (background) thread. Never raises.

    The kernel hands a signal sent to the process to any thread that does not block it. Python runs handlers on
    the main thread only, at its next bytecode: were the signal handed to one of our threads while the main
    thread sleeps in a system call (``signal.pause()``, a blocking read), the handler would not run until that
    call returned, maybe never. Blocked here, such signals always reach a thread of the application.
    """
    if hasattr(signal, "pthread_sigmask"):
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_BLOCK, _APP_SIGNALS)
