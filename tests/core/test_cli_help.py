"""``peekapi --version`` and every subcommand's ``--help``: what a new user types first (the SDK alone suffices)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import peekapi
from peekapi.cli import build_parser


def _peekapi(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script when there is one beside this Python, else ``python -m peekapi.cli``."""
    script = Path(sys.executable).with_name("peekapi")
    command = [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "peekapi.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path below ``parser``: ("serve",), ("key",), ("key", "create"), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name)
                yield from _commands(child, (*path, name))


def test_version_prints_the_package_version() -> None:
    done = _peekapi("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"peekapi {peekapi.__version__}\n", "")


def test_python_dash_m_peekapi_is_the_peekapi_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "peekapi", "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"peekapi {peekapi.__version__}\n")


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_listed() -> None:
    assert set(COMMANDS) >= {
        ("serve",),
        ("project",),
        ("project", "create"),
        ("project", "list"),
        *((kind, action) for kind in ("key", "token") for action in ("create", "list", "revoke")),
        ("key",),
        ("token",),
        ("user",),
        ("user", "create"),
        ("user", "password"),
    }


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_commands_help_says_what_it_does(command: tuple[str, ...]) -> None:
    done = _peekapi(*command, "--help")
    assert done.returncode == 0 and done.stderr == "", done
    usage, _, rest = done.stdout.partition("\n\n")
    assert usage.startswith(f"usage: peekapi {' '.join(command)} ")
    description = rest.split("\n\n", 1)[0]
    # A sentence of its own between the usage and the argument lists (argparse prints none without one).
    assert description.endswith(".") and not description.startswith(("positional arguments", "options")), done.stdout
    assert len(description.split()) >= 3, description


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_argument_is_explained(command: tuple[str, ...]) -> None:
    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    unexplained = [
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert unexplained == []


def test_the_command_list_says_what_each_does() -> None:
    done = _peekapi("--help")
    assert done.returncode == 0 and "--version" in done.stdout
    for name in ("serve", "project", "key", "token", "user"):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split()) > 2, line
