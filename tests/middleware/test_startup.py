"""Bad configuration under real servers: the server stops at start-up with the reason, never a 500 of ours.

Each app runs as a user runs it (``uvicorn app:app``, ``gunicorn -w 2 app:app``) in a subprocess, with the
api key missing or an option misspelled. Either the server fails to start and its output carries the
``ValueError`` (or Django's ``ImproperlyConfigured``) message, or, where nothing can stop it (uvicorn with the
lifespan protocol off), every request reaches the app (200) and the reason is logged exactly once.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MISSING_KEY = "'api_key' is required"
MISSPELLED = "unknown option(s) 'flush_intervall'"

# A Starlette or FastAPI app configured through add_middleware, which builds the middleware on the server's
# first call (the lifespan startup, or the first request): the case that served 500s.
STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from peekapi.middleware import PeekApiASGI

async def home(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/", home)])
app.add_middleware(PeekApiASGI, OPTIONS)
"""
FASTAPI_APP = """
from fastapi import FastAPI
from peekapi.middleware import PeekApiASGI

app = FastAPI()

@app.get("/")
def home() -> str:
    return "hello"

app.add_middleware(PeekApiASGI, OPTIONS)
"""
LITESTAR_APP = """
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware
from peekapi.middleware import PeekApiASGI

@get("/")
async def home() -> str:
    return "hello"

app = Litestar(route_handlers=[home], middleware=[DefineMiddleware(PeekApiASGI, OPTIONS)])
"""
FLASK_APP = """
from flask import Flask
from peekapi.middleware import PeekApiWSGI

app = Flask(__name__)

@app.get("/")
def home():
    return "hello"

app.wsgi_app = PeekApiWSGI(app.wsgi_app, OPTIONS)
"""
BOTTLE_APP = """
import bottle
from peekapi.middleware import PeekApiWSGI

root = bottle.Bottle()

@root.get("/")
def home():
    return "hello"

app = PeekApiWSGI(root, OPTIONS)
"""
# framework: (the server that runs it, the app's source)
APPS = {
    "starlette": ("uvicorn", STARLETTE_APP),
    "fastapi": ("uvicorn", FASTAPI_APP),
    "litestar": ("uvicorn", LITESTAR_APP),
    "flask": ("gunicorn", FLASK_APP),
    "bottle": ("gunicorn", BOTTLE_APP),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEEKAPI_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path),  # a spool, should anything get that far, isolated
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(EXAMPLES), str(tmp_path)]),
        PEEKAPI_ENDPOINT="http://127.0.0.1:9/v1/events",  # nothing listens: nothing may be sent anyway
        **extra,
    )
    return env


def _write_app(tmp_path: Path, framework: str, options: str) -> str:
    source = textwrap.dedent(APPS[framework][1]).replace("OPTIONS", options)
    (tmp_path / f"bad_{framework}.py").write_text(source)
    return f"bad_{framework}:app"


def _server(kind: str, target: str, port: int, *extra: str) -> list[str]:
    if kind == "uvicorn":
        return [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), *extra]
    return [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", *extra, target]


def _fails_to_start(command: list[str], env: dict[str, str], tmp_path: Path, port: int) -> str:
    """Runs ``command`` and returns its output once it exited non-zero; fails if it served anything."""
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        served: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while server.poll() is None and not served and time.monotonic() < deadline:
                status = _get(port)
                if status is not None:
                    served.append(status)
                time.sleep(0.2)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    output = log_path.read_text()
    assert server.returncode not in (0, None, -signal.SIGKILL), f"the server did not stop by itself:\n{output}"
    assert served == [], f"the server answered {served} before it stopped:\n{output}"
    return output


def _get(port: int) -> int | None:
    """The status of ``GET /``, or None when nothing listens (yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):  # refused, or reset by a server stopping (or a timeout)
        return None
    finally:
        conn.close()


@pytest.mark.parametrize("framework", list(APPS))
@pytest.mark.parametrize(
    ("options", "expected"),
    [('endpoint="http://127.0.0.1:9/v1/events"', MISSING_KEY), ('api_key="ak_x", flush_intervall=1', MISSPELLED)],
    ids=["missing-key", "misspelled-option"],
)
def test_bad_options_stop_the_server_at_start_up(framework: str, options: str, expected: str, tmp_path: Path) -> None:
    pytest.importorskip(framework)
    server = APPS[framework][0]
    pytest.importorskip(server)
    port = _free_port()
    command = _server(server, _write_app(tmp_path, framework, options), port)
    output = _fails_to_start(command, _env(tmp_path), tmp_path, port)
    assert expected in output, output


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_bad_options_stop_gunicorn_with_preload_and_uvicorn_with_lifespan_on(server: str, tmp_path: Path) -> None:
    """The stricter modes: gunicorn imports the app in its master (``--preload``), uvicorn ``--lifespan on``."""
    framework = "flask" if server == "gunicorn" else "starlette"
    pytest.importorskip(framework)
    pytest.importorskip(server)
    port = _free_port()
    extra = "--preload" if server == "gunicorn" else "--lifespan=on"
    command = _server(server, _write_app(tmp_path, framework, 'api_key="ak_x", flush_intervall=1'), port, extra)
    assert MISSPELLED in _fails_to_start(command, _env(tmp_path), tmp_path, port)


EXAMPLE_APPS = [
    ("fastapi", "uvicorn", "fastapi_app:app"),
    ("starlette", "uvicorn", "starlette_app:app"),
    ("litestar", "uvicorn", "litestar_app:app"),
    ("flask", "gunicorn", "flask_app:app"),
    ("bottle", "gunicorn", "bottle_app:app"),
    ("django", "gunicorn", "django_project.wsgi:application"),
    ("django", "uvicorn", "django_project.asgi:application"),
]


@pytest.mark.parametrize(("needs", "server", "target"), EXAMPLE_APPS, ids=[t for _, _, t in EXAMPLE_APPS])
def test_the_examples_without_an_api_key_stop_at_start_up(needs: str, server: str, target: str, tmp_path: Path) -> None:
    """The runnable examples, their api key left out of the environment as a new user might."""
    pytest.importorskip(needs)
    pytest.importorskip(server)
    port = _free_port()
    output = _fails_to_start(_server(server, target, port), _env(tmp_path), tmp_path, port)
    assert MISSING_KEY in output, output
    if needs == "django":
        assert "settings.PEEKAPI" in output, output  # Django's ImproperlyConfigured names the setting


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_without_lifespan_requests_pass_through_and_the_reason_is_logged_once(framework: str, tmp_path: Path) -> None:
    """Nothing tells uvicorn ``--lifespan off`` to stop: the app answers as if peekapi were not there."""
    pytest.importorskip(framework)
    pytest.importorskip("uvicorn")
    port = _free_port()
    command = _server("uvicorn", _write_app(tmp_path, framework, 'api_key="ak_x", flush_intervall=1'), port)
    command += ["--lifespan", "off", "--no-access-log"]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            command, env=_env(tmp_path), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 30
            while (status := _get(port)) is None:
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            statuses = [status] + [_get(port) for _ in range(4)]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    output = log_path.read_text()
    assert statuses == [200] * 5, output
    assert output.count(MISSPELLED) == 1, output
    assert "pass through untracked" in output and "Traceback" not in output, output
