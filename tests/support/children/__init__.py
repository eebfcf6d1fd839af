"""Child programs for the process tests, and ``Child``: a subprocess the test talks to line by line.

Every script here is a plain Python program run with ``sys.executable``. A script learns where to send from the
environment (``PEEKAPI_ENDPOINT``, ``PEEKAPI_API_KEY``, read by the SDK itself), its other options from
``CHILD_OPTIONS`` (a JSON object) and its spool from ``CHILD_STORAGE``. It reports progress as lines on stdout
(``ready``, ``tracked 500``, ``stats {...}``) and may wait for a line on stdin (``go``). Tests wait on those lines,
never on guessed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
API_KEY = "ak_test_process"


def script(name: str) -> str:
    """The path of the child program ``name`` (without ``.py``)."""
    path = HERE / f"{name}.py"
    assert path.is_file(), path
    return str(path)


class Child:
    """A running child program: its stdout read line by line in the background, its stdin writable."""

    def __init__(
        self,
        name: str,
        *args: str,
        endpoint: str,
        storage: Path,
        options: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        environment = {
            **os.environ,
            "PEEKAPI_ENDPOINT": endpoint,
            "PEEKAPI_API_KEY": API_KEY,
            "CHILD_STORAGE": str(storage),
            "CHILD_OPTIONS": json.dumps(options or {}),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        environment.pop("PYTHONWARNINGS", None)
        self.name = name
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, script(name), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def expect(self, prefix: str, timeout: float = 15.0) -> str:
        """Read lines until one starts with ``prefix``; return the rest of it. Fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"{self.name}: no {prefix!r} line within {timeout} s; got {self.lines[-5:]}\n{self.stderr}"
                ) from None
            if line is None:
                self._queue.put(None)  # keep the end marker for later readers
                raise AssertionError(
                    f"{self.name}: exited ({self.proc.poll()}) before a {prefix!r} line; "
                    f"got {self.lines[-5:]}\n{self.stderr}"
                )
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def expect_json(self, prefix: str, timeout: float = 15.0) -> Any:
        return json.loads(self.expect(prefix, timeout))

    def drain(self, timeout: float = 5.0) -> list[str]:
        """Every remaining stdout line, up to the end of the stream (the child has exited or will)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        """The exit status (negative: killed by that signal). Fails if the child is still running."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGUSR1)  # the child's threads' stacks, on its stderr
            time.sleep(1.0)
            raise AssertionError(f"{self.name}: still running after {timeout} s\n{self.stderr}") from None
        for reader in self._readers:
            reader.join(5.0)
        return code

    def kill(self) -> None:
        """Kill and reap the child if it still runs (cleanup). Never raises."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(5.0)
        for reader in self._readers:
            reader.join(5.0)
        streams = [self.proc.stdin]
        if not any(reader.is_alive() for reader in self._readers):
            streams += [self.proc.stdout, self.proc.stderr]
        for stream in streams:
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()


def spool_files(storage: Path) -> list[Path]:
    """Every file in the spool directory (ready, claimed or being written)."""
    if not storage.is_dir():
        return []
    return sorted(p for p in storage.iterdir() if p.is_file())
