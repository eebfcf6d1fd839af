"""The ``peekapi`` command: run the self-hosted collector and manage its projects, ingest keys and read tokens.

Standard library only at import time: the collector (``peekapi_server``, the ``server`` extra) is imported inside
the command handlers, and when it is missing the command says which install command brings it and exits 2.

    peekapi --version
    peekapi serve [--host 127.0.0.1] [--port 8787] [--database URL] [--workers N]
    peekapi project create NAME [--raw-retention-days N] [--rollup-retention-days N] [--endpoint-cap N]
    peekapi project list
    peekapi key create PROJECT | key list [--project P] | key revoke ID_OR_PREFIX
    peekapi token create PROJECT | token list [--project P] | token revoke ID_OR_PREFIX
    peekapi user create NAME [--password-stdin] | user password NAME [--password-stdin] | user list | user delete NAME
    peekapi alert create PROJECT NAME --metric M (--above|--below|--increase|--decrease) X [options]
    peekapi alert list [--project P] | alert delete PROJECT NAME
    peekapi alert silence PROJECT NAME (--for 2h | --until ISO | --off)
    peekapi alert channel create PROJECT NAME (--webhook URL | --slack URL | --discord URL | --email ADDRS)
    peekapi alert channel list PROJECT | alert channel delete PROJECT NAME

``--database`` defaults to ``$PEEKAPI_DATABASE_URL``, else a SQLite file in the per-user data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from ._version import __version__

if TYPE_CHECKING:
    from peekapi_server.store import Store

INSTALL_HINT = 'the collector is an optional extra: install it with  pip install "peekapi[server]"'
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report on stderr (without a traceback) before exiting non-zero."""


def _import_server(module: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise CliError(f"{INSTALL_HINT} ({exc})") from None


def _open_store(database: str | None) -> Store:
    config = _import_server("peekapi_server.config")
    store_mod = _import_server("peekapi_server.store")
    url = database or config.default_database_url()
    try:
        store: Store = store_mod.open_store(url)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except Exception as exc:  # unreachable server, bad credentials, unwritable file, newer schema, ...
        raise CliError(f"cannot open the database {_redact(url)}: {exc}") from None
    return store


def _redact(url: str) -> str:
    """The URL without its credentials (``user:password@``), for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.split('@', 1)[1]}" if sep and "@" in rest else url


def _serve(args: argparse.Namespace) -> int:
    config_mod = _import_server("peekapi_server.config")
    uvicorn = _import_server("uvicorn")
    url: str = args.database or config_mod.default_database_url()
    is_sqlite = not url.startswith(("postgresql://", "postgres://"))
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.workers > 1 and is_sqlite:
        raise CliError("SQLite has one writer: use --workers 1, or --database postgresql://... to scale out")
    _raise_open_file_limit()
    public_url = args.public_url or os.environ.get(config_mod.ENV_PUBLIC_URL) or f"http://{args.host}:{args.port}"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", public_url):  # it goes into every notification's link
        raise CliError(f"--public-url must be the dashboard's address, http(s)://host[:port][/path]: {public_url!r}")
    # Opening the store here creates or migrates the schema once, before any worker starts.
    store = _open_store(url)
    smtp_url = args.smtp_url or os.environ.get(config_mod.ENV_SMTP_URL, "")
    try:
        if smtp_url:
            try:
                _import_server("peekapi_server.alerts.channels").smtp_settings(smtp_url)
            except ValueError as exc:
                raise CliError(f"--smtp-url: {exc}") from None
        else:
            _warn_unsendable_email(store)
    finally:
        store.close()
    _check_port_free(args.host, args.port)
    shown = url.rsplit("@", maxsplit=1)[-1] if "@" in url else url
    print(f"peekapi collector on http://{args.host}:{args.port} (database {shown})", file=sys.stderr)
    common = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": False,
        "log_config": _log_config(uvicorn, args.log_level),
    }
    if args.workers == 1:
        app_mod = _import_server("peekapi_server.app")
        config = config_mod.ServerConfig(
            database_url=url, summary_interval_seconds=args.summary_seconds, public_url=public_url, smtp_url=smtp_url
        )
        uvicorn.run(app_mod.create_app(config), **common)
    else:
        os.environ[config_mod.ENV_DATABASE_URL] = url
        os.environ[config_mod.ENV_SUMMARY_SECONDS] = str(args.summary_seconds)
        os.environ[config_mod.ENV_PUBLIC_URL] = public_url
        os.environ[config_mod.ENV_SMTP_URL] = smtp_url
        uvicorn.run("peekapi_server.app:app_from_env", factory=True, workers=args.workers, **common)
    return 0


def _warn_unsendable_email(store: Store) -> None:
    """Say on stderr which email channels cannot send, the collector having no SMTP server (``--smtp-url``)."""
    projects = store.list_projects()
    with store.alerts(False) as alerts:
        names = [
            f"{project.name}/{channel.name}"
            for project in projects
            for channel in alerts.channels(project.id)
            if channel.kind == "email"
        ]
    if names:
        print(
            f"warning: no --smtp-url (or $PEEKAPI_SMTP_URL): the email channel(s) {', '.join(names)} cannot send; "
            "their notifications fail (each rule's page says so)",
            file=sys.stderr,
        )


def _check_port_free(host: str, port: int) -> None:
    """Raise ``CliError`` when ``host:port`` cannot be listened on (in use, or not an address of this machine).

    uvicorn binds only after the application's start-up, which creates the dashboard's first user and prints its
    one-time password: a start that then fails to bind would have shown a password for a collector that never ran.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _raise_open_file_limit() -> None:
    """Raises this process's soft limit on open files to its hard limit (workers inherit it).

    uvicorn never times out a connection whose request is incomplete: each slow or idle client holds a file
    descriptor, and at a soft limit of 1,024 a few hundred of them would shut every other client out.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard)
            )


def _log_config(uvicorn: ModuleType, level: str) -> dict[str, object]:
    """uvicorn's logging configuration with the collector's own loggers (``peekapi_server.*``) added at ``level``.

    Handed to uvicorn, which applies it in every worker process: the collector's summaries and warnings about
    refused requests go to stderr beside uvicorn's own lines.
    """
    import copy

    config: dict[str, object] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    formatters = config["formatters"]
    loggers = config["loggers"]
    assert isinstance(formatters, dict) and isinstance(loggers, dict)
    formatters["peekapi"] = {
        "()": "uvicorn.logging.DefaultFormatter",
        "fmt": "%(asctime)s %(levelprefix)s %(name)s: %(message)s",
        "use_colors": None,
    }
    handlers = config["handlers"]
    assert isinstance(handlers, dict)
    handlers["peekapi"] = {"formatter": "peekapi", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    loggers["peekapi_server"] = {"handlers": ["peekapi"], "level": level.upper(), "propagate": False}
    return config


def _project(args: argparse.Namespace) -> int:
    store = _open_store(args.database)
    try:
        if args.action == "create":
            p = store.create_project(
                args.name,
                raw_retention_days=args.raw_retention_days,
                rollup_retention_days=args.rollup_retention_days,
                endpoint_cap=args.endpoint_cap,
            )
            hint = f"peekapi key create {shlex.quote(p.name)}"
            print(f"created project {p.name!r} (id {p.id}); create an ingest key with: {hint}")
        else:
            for p in store.list_projects():
                print(
                    f"{p.id}\t{p.name}\traw {p.raw_retention_days}d\trollups {p.rollup_retention_days}d"
                    f"\tendpoint cap {p.endpoint_cap}"
                )
    finally:
        store.close()
    return 0


def _credentials(args: argparse.Namespace) -> int:
    kind: Literal["ingest", "read"] = "ingest" if args.command == "key" else "read"
    label = "ingest key" if kind == "ingest" else "read token"
    store = _open_store(args.database)
    try:
        if args.action == "create":
            cred, secret = store.create_credential(args.project, kind)
            print(secret)
            print(f"{label} {cred.id} for project {cred.project!r}: shown once, stored only as a hash", file=sys.stderr)
        elif args.action == "list":
            for c in store.list_credentials(args.project, kind):
                state = "revoked" if c.revoked_at is not None else "active"
                print(f"{c.id}\t{c.project}\t{c.prefix}...\t{state}")
        else:
            c = store.revoke_credential(args.ident, kind)
            print(f"revoked {label} {c.id} ({c.prefix}...) of project {c.project!r}")
    finally:
        store.close()
    return 0


def _port(text: str) -> int:
    """An argparse ``type``: a TCP port to listen on, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {port}")
    return port


def _seconds(text: str) -> float:
    """An argparse ``type``: a duration in seconds, 0 or more."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return seconds


def _read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a prompt (not echoed)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to type the password at: pipe it in with --password-stdin")
    import getpass

    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CliError("the two passwords differ")
    return first


def _user(args: argparse.Namespace) -> int:
    """``user create NAME``, ``user password NAME``, ``user list``, ``user delete NAME``: dashboard accounts,
    passwords hashed with scrypt."""
    if args.action in ("list", "delete"):
        store = _open_store(args.database)
        try:
            if args.action == "list":
                for name, created in store.list_users():
                    print(f"{name}\tcreated {time.strftime('%Y-%m-%d %H:%M', time.gmtime(created))} UTC")
            else:
                store.delete_user(args.name)
                print(f"deleted dashboard user {args.name!r} (their sessions were ended)", file=sys.stderr)
        finally:
            store.close()
        return 0
    passwords = _import_server("peekapi_server.dashboard.passwords")
    password = _read_password(args.password_stdin)
    try:
        hashed: str = passwords.hash_password(password)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    store = _open_store(args.database)
    try:
        if args.action == "create":
            store.create_user(args.name, hashed)
            print(f"created dashboard user {args.name!r}", file=sys.stderr)
        else:
            store.set_user_password(args.name, hashed)
            print(f"changed the password of {args.name!r} (their sessions were ended)", file=sys.stderr)
    finally:
        store.close()
    return 0


_COMPARISONS = ("above", "below", "increase", "decrease")
_CHANNEL_KINDS = ("webhook", "slack", "discord", "email")
#: ``alert create`` options and the rule's text fields they fill (peekapi_server.alerts.text).
_RULE_OPTIONS = {
    "metric": "metric",
    "window": "window",
    "for_": "for",
    "min_requests": "min_requests",
    "recovery": "recovery",
    "no_data": "no_data",
    "endpoint": "endpoint",
    "method": "method",
    "status_class": "status_class",
    "consumer": "consumer",
    "group_by": "group_by",
    "baseline": "baseline",
    "repeat": "repeat",
}


def _alert(args: argparse.Namespace) -> int:
    """``alert create|list|delete|silence`` and ``alert channel create|list|delete``; a bad value exits 2 with
    the reason, an unknown or taken name exits 1."""
    admin = _import_server("peekapi_server.alerts.admin")
    text = _import_server("peekapi_server.alerts.text")
    store = _open_store(args.database)
    try:
        if args.action == "channel":
            return _alert_channel(args, store, admin)
        if args.action == "list":
            _alert_list(store, admin, args.project)
            return 0
        project = store.get_project(args.project)
        now = int(time.time())
        if args.action == "create":
            fields = {field: getattr(args, option) for option, field in _RULE_OPTIONS.items()}
            comparison = next(c for c in _COMPARISONS if getattr(args, c) is not None)
            fields.update(name=args.name, comparison=comparison, threshold=getattr(args, comparison))
            rule = text.rule_from_fields({k: v for k, v in fields.items() if v is not None}, args.channel or [])
            stored = admin.create_rule(store, project.id, rule, now)
            print(f"created rule {stored.name!r} (id {stored.id}) of project {project.name!r}: {rule.describe()}")
            return 0
        with store.alerts(True) as a:
            stored = a.rule_named(project.id, args.name)
            if stored is None:
                raise _import_server("peekapi_server.store").StoreError(
                    f"project {project.name!r} has no rule named {args.name!r}"
                )
            if args.action == "delete":
                a.delete_rule(stored.id)
                print(f"deleted rule {stored.name!r} of project {project.name!r}")
                return 0
            if args.off:
                until = 0
            elif args.for_:
                seconds = text.parse_duration(args.for_, "--for")
                if seconds <= 0:
                    raise ValueError("--for must be longer than 0s")
                until = now + seconds
            else:
                until = text.parse_time(args.until, "--until")
                if until <= now:
                    raise ValueError("--until must be in the future")
            a.silence_rule(stored.id, until)
        if until:
            print(f"silenced rule {stored.name!r} until {_utc(until)} UTC")
        else:
            print(f"lifted the silence of rule {stored.name!r}")
        return 0
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def _alert_list(store: Store, admin: ModuleType, project: str | None) -> None:
    """One line per rule: id, project, name, state (and how many groups fire), last value, silence, the rule."""
    project_id = store.get_project(project).id if project else None
    now = int(time.time())
    for s in admin.summaries(store, project_id):
        state = s.state + (f" ({s.firing}/{s.groups} groups firing)" if s.groups > 1 else "")
        value = "-" if s.value is None else f"{s.value:g}"
        silenced = f"silenced until {_utc(s.stored.silenced_until)}" if s.silenced(now) else "-"
        about = s.rule.describe() if s.rule else f"unreadable: {s.problem}"
        print(f"{s.stored.id}\t{s.stored.project}\t{s.stored.name}\t{state}\t{value}\t{silenced}\t{about}")


def _alert_channel(args: argparse.Namespace, store: Store, admin: ModuleType) -> int:
    rules = _import_server("peekapi_server.alerts.rules")
    project = store.get_project(args.project)
    if args.channel_action == "create":
        kind = next(k for k in _CHANNEL_KINDS if getattr(args, k) is not None)
        channel = rules.Channel(args.name, kind, getattr(args, kind))
        stored, secret = admin.create_channel(store, project.id, channel, int(time.time()))
        if secret:
            print(secret)
        note = ": its signing secret is shown once, above" if secret else ""
        print(f"created {kind} channel {stored.name!r} of project {project.name!r}{note}", file=sys.stderr)
    elif args.channel_action == "list":
        for c in admin.channels(store, project.id):
            signed = "\tsigned" if c.secret else ""
            print(f"{c.name}\t{c.kind}\t{admin.shown_target(c)}{signed}")
    else:
        admin.delete_channel(store, project.id, args.name)
        print(f"deleted channel {args.name!r} of project {project.name!r}")
    return 0


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    details: str = "",
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` in its parent's list, ``summary`` and ``details`` at the top of its --help."""
    description = f"{summary[0].upper()}{summary[1:]}." + (f" {details}" if details else "")
    return sub.add_parser(name, parents=list(parents), help=summary, description=description)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="peekapi",
        description="PeekAPI: the self-hosted collector and its admin. "
        "Each command says what it does with --help (peekapi serve --help).",
        epilog="Exit status: 0 done, 1 the operation was refused (a name taken, no such project, key or rule), "
        "2 the command cannot run as written (a bad option, a missing extra, an unreachable database, a port in use).",
    )
    parser.add_argument("--version", action="version", version=f"peekapi {__version__}")
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--database",
        help="postgresql://... or sqlite:///path (default: $PEEKAPI_DATABASE_URL or ~/.local/share/peekapi/peekapi.db)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        sub,
        "serve",
        "run the collector: the ingest endpoint (/v1/events), the read API and the dashboard",
        "It listens on 127.0.0.1:8787 by default; an SDK sends to http://HOST:PORT/v1/events. The database is "
        "created or migrated first. On its first start it creates the dashboard user 'admin' and prints a "
        "one-time password.",
        [db],
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8787, help="port (default 8787)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (PostgreSQL only; default 1)")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="the least level logged to stderr (default info)",
    )
    serve.add_argument(
        "--summary-seconds",
        type=_seconds,
        default=60.0,
        help="seconds between the INFO lines summing up what was stored and refused (default 60; 0: none)",
    )
    serve.add_argument(
        "--public-url",
        help="the collector's address as users reach it, for links in alert notifications "
        "(default $PEEKAPI_PUBLIC_URL, else http://HOST:PORT)",
    )
    serve.add_argument(
        "--smtp-url",
        help="where alert emails leave: smtp://[user:password@]host[:port]?from=ADDRESS[&starttls=true][&cafile=PATH] "
        "(default $PEEKAPI_SMTP_URL)",
    )
    serve.set_defaults(handler=_serve)

    project = _command(
        sub, "project", "manage projects", "A project holds the events of one API, its ingest keys and read tokens."
    )
    psub = project.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _command(
        psub, "create", "create a project", "Then create an ingest key for it: peekapi key create NAME.", [db]
    )
    create.add_argument("name", help="the project's name, unique")
    create.add_argument("--raw-retention-days", type=int, default=14, help="keep raw events this long (14)")
    create.add_argument("--rollup-retention-days", type=int, default=400, help="keep rollups this long (400)")
    create.add_argument("--endpoint-cap", type=int, default=500, help="distinct endpoints before (other) (500)")
    _command(psub, "list", "list projects", "One line each: id, name, retention and endpoint cap.", [db])
    project.set_defaults(handler=_project)

    credentials = (
        ("key", "ingest keys", "An ingest key lets an SDK send events to a project (the SDK's api_key)."),
        ("token", "read tokens", "A read token lets a client read a project's figures from the read API."),
    )
    for name, label, about in credentials:
        cmd = _command(sub, name, f"manage {label}", about)
        csub = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
        c = _command(
            csub,
            "create",
            f"create one of a project's {label}",
            "It is printed once, on stdout; the collector keeps only its hash.",
            [db],
        )
        c.add_argument("project", help="the project's name")
        ls = _command(csub, "list", f"list {label}", "One line each: id, project, prefix, state.", [db])
        ls.add_argument("--project", help="only this project's")
        rv = _command(
            csub, "revoke", f"revoke one of the {label}", "It is refused from then on; it cannot be restored.", [db]
        )
        rv.add_argument("ident", metavar="ID_OR_PREFIX", help="its id, or the prefix that list shows")
        cmd.set_defaults(handler=_credentials)

    user = _command(sub, "user", "manage dashboard users", "Passwords are stored hashed (scrypt).")
    usub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    user_actions = (
        ("create", "create a dashboard user", "The password is asked for twice, unless --password-stdin."),
        ("password", "set a dashboard user's password", "Their open sessions end."),
    )
    for action, summary, details in user_actions:
        u = _command(usub, action, summary, details, [db])
        u.add_argument("name", help="the user's name")
        u.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _command(usub, "list", "list the dashboard users", "One line each: the name and when it was created.", [db])
    d = _command(usub, "delete", "delete a dashboard user", "Their open sessions end; the last user stays.", [db])
    d.add_argument("name", help="the user's name")
    user.set_defaults(handler=_user)
    _alert_parser(sub, db)
    return parser


def _alert_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], db: argparse.ArgumentParser) -> None:
    alert = _command(
        sub,
        "alert",
        "manage alert rules and their notification channels",
        "The running collector evaluates every rule once a minute and notifies its channels.",
    )
    alert.set_defaults(handler=_alert)
    asub = alert.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _command(
        asub,
        "create",
        "create an alert rule",
        "Durations are written 90s, 5m, 1h or 2d; rates (error_rate, error_rate_5xx, error_rate_4xx) are "
        "percentages; --increase/--decrease compare with a baseline window, in percent.",
        [db],
    )
    create.add_argument("project", help="the project's name")
    create.add_argument("name", help="the rule's name, unique in the project")
    create.add_argument(
        "--metric",
        required=True,
        help="requests (in the window), requests_per_minute, error_rate, error_rate_5xx, error_rate_4xx, "
        "p50_ms, p95_ms, p99_ms, bytes or consumers",
    )
    how = create.add_mutually_exclusive_group(required=True)
    how.add_argument("--above", metavar="X", help="fire when the metric is above X")
    how.add_argument("--below", metavar="X", help="fire when the metric is below X")
    how.add_argument("--increase", metavar="X", help="fire when the metric increases by X percent over the baseline")
    how.add_argument("--decrease", metavar="X", help="fire when the metric decreases by X percent from the baseline")
    create.add_argument("--window", help="the window the metric is measured over, whole minutes (default 5m)")
    create.add_argument("--for", dest="for_", metavar="DURATION", help="breaching this long before firing (default 0s)")
    create.add_argument(
        "--min-requests", metavar="N", help="a rate or a change counts only with N requests (default 0)"
    )
    create.add_argument("--recovery", metavar="X", help="where the value must be back to for resolving (default X)")
    create.add_argument(
        "--no-data", metavar="keep|ok|alert", help="what a window without requests means (default keep)"
    )
    create.add_argument("--endpoint", metavar="ROUTE", help="only this route (default: all)")
    create.add_argument("--method", help="only this HTTP method")
    create.add_argument("--status-class", metavar="N", help="only responses of this class (1..5)")
    create.add_argument("--consumer", metavar="C", help="only this consumer")
    create.add_argument("--group-by", metavar="endpoint|consumer", help="one alert per endpoint or per consumer")
    create.add_argument("--baseline", metavar="previous|week", help="for a change: the previous window or a week ago")
    create.add_argument("--channel", action="append", metavar="NAME", help="notify this channel (repeatable)")
    create.add_argument("--repeat", metavar="DURATION", help="remind this often while firing (default 0s: never)")
    ls = _command(
        asub, "list", "list alert rules", "One line each: id, project, name, state, last value, silence, rule.", [db]
    )
    ls.add_argument("--project", help="only this project's")
    delete = _command(asub, "delete", "delete an alert rule", "Its states and history go with it.", [db])
    delete.add_argument("project", help="the project's name")
    delete.add_argument("name", help="the rule's name")
    silence = _command(asub, "silence", "silence an alert rule", "Nothing is sent for it until the silence ends.", [db])
    silence.add_argument("project", help="the project's name")
    silence.add_argument("name", help="the rule's name")
    until = silence.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="for_", metavar="DURATION", help="for this long from now (2h, 1d)")
    until.add_argument("--until", metavar="ISO", help="until this time (2026-12-24T08:00; UTC unless it has an offset)")
    until.add_argument("--off", action="store_true", help="lift the silence")
    channel = _command(
        asub,
        "channel",
        "manage notification channels",
        "A channel is a signed webhook, a Slack or Discord incoming webhook, or email addresses.",
    )
    csub = channel.add_subparsers(dest="channel_action", required=True, metavar="ACTION")
    ccreate = _command(
        csub, "create", "create a channel", "A webhook's signing secret (whsec_...) is printed once, on stdout.", [db]
    )
    ccreate.add_argument("project", help="the project's name")
    ccreate.add_argument("name", help="the channel's name, unique in the project")
    target = ccreate.add_mutually_exclusive_group(required=True)
    target.add_argument("--webhook", metavar="URL", help="POST signed JSON (Standard Webhooks) to this URL")
    target.add_argument("--slack", metavar="URL", help="a Slack incoming webhook URL")
    target.add_argument("--discord", metavar="URL", help="a Discord webhook URL")
    target.add_argument("--email", metavar="ADDRS", help="email addresses, separated by commas")
    clist = _command(csub, "list", "list a project's channels", "One line each: name, kind, where it sends.", [db])
    clist.add_argument("project", help="the project's name")
    cdelete = _command(csub, "delete", "delete a channel", "Refused while a rule sends to it.", [db])
    cdelete.add_argument("project", help="the project's name")
    cdelete.add_argument("name", help="the channel's name")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``peekapi`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"peekapi: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        store_mod = sys.modules.get("peekapi_server.store")
        if store_mod is not None and isinstance(exc, store_mod.StoreError):
            print(f"peekapi: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
