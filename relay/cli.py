"""The `relay` command line.

Every expected failure ends as one line on stderr and an exit code (sysexits): 2 for bad usage or
bad configuration (a DSN the server refuses for good included), 69 (EX_UNAVAILABLE) when the
database could not be reached within `--wait`, 1 when the relay gave up. Never a traceback, never
a password. Results go to stdout, logs to stderr. This is the only place errors become exit codes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from .config import Config, resolve_dsn
from .errors import ConfigError, RelayError, RestartIntensityExceeded, Unreachable

EXIT_OK, EXIT_GAVE_UP, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 69
# Seconds a one-shot command (migrate, status, dead) waits for an unreachable database.
DEFAULT_WAIT = 10.0

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other error."""

    def error(self, message: str) -> Any:
        raise ConfigError("usage", f"{message} (see `{self.prog} --help`)")


def _duration(text: str) -> datetime.timedelta:
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration like 90s, 15m, 2h or 7d: {text!r}")
    return datetime.timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


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
    schema = Config().schema
    parser.add_argument(
        "--schema",
        default=os.environ.get("RELAY_SCHEMA", schema),
        help=f"the outbox schema (default: $RELAY_SCHEMA, else {schema})",
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"seconds to wait for an unreachable database (default: {DEFAULT_WAIT:g})",
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .daemon.settings import add_run_options

    parser = _Parser(prog="relay", description="A transactional-outbox relay for PostgreSQL.")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    migrate = commands.add_parser("migrate", help="create or upgrade the outbox schema")
    _database_options(migrate)

    run = commands.add_parser("run", help="run the relay until SIGINT or SIGTERM")
    run.add_argument("--dsn", help="libpq DSN or URL (default: $RELAY_DSN, $DATABASE_URL, PG*)")
    add_run_options(run)

    status = commands.add_parser("status", help="pending, oldest pending age, retrying, dead")
    _database_options(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")

    dead = commands.add_parser("dead", help="list, retry or purge dead events")
    actions = dead.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    for name, text in (
        ("list", "print dead events as JSON lines"),
        ("retry", "move dead events back into the outbox"),
        ("purge", "delete dead events for good"),
    ):
        action = actions.add_parser(name, help=text)
        _database_options(action)
        action.add_argument("--topic", help="only events of this topic")
        action.add_argument("--id", type=int, action="append", default=[], help="only this id")
        action.add_argument(
            "--older-than", type=_duration, help="only events dead longer than this (90s, 2h, 7d)"
        )
        if name == "list":
            action.add_argument("--limit", type=int, default=100, help="at most this many")

    demo = commands.add_parser("demo", help="embedded PostgreSQL, a producer and the relay")
    demo.add_argument("--rate", type=float, default=50.0, help="events per second (default: 50)")
    demo.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)"
    )
    return parser


def _config(args: argparse.Namespace) -> Config:
    return Config(dsn=resolve_dsn(args.dsn), schema=args.schema)


def _migrate(args: argparse.Namespace) -> int:
    from .postgres import LATEST_VERSION, migrate
    from .postgres.connect import describe_dsn

    config = _config(args)
    applied = migrate(config)
    where = f"schema {config.schema!r} at {describe_dsn(config.dsn)}"
    if not applied:
        print(f"{where} is up to date (version {LATEST_VERSION}); nothing to do")
    for migration in applied:
        print(f"applied migration {migration.version} to {where}: {migration.description}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from .postgres.admin import status

    found = status(_config(args))
    if args.json:
        print(
            json.dumps(
                {
                    "pending": found.pending,
                    "oldest_pending_age_seconds": found.oldest_pending_age,
                    "retrying": found.retrying,
                    "dead": found.dead,
                    "topics": {
                        t.topic: {"pending": t.pending, "retrying": t.retrying, "dead": t.dead}
                        for t in found.topics
                    },
                }
            )
        )
        return EXIT_OK
    age = "-" if found.oldest_pending_age is None else f"{found.oldest_pending_age:.1f}s"
    print(
        f"pending {found.pending}  oldest pending age {age}  "
        f"retrying {found.retrying}  dead {found.dead}"
    )
    if found.topics:
        width = max(len("topic"), *(len(t.topic) for t in found.topics))
        print(f"{'topic':<{width}}  {'pending':>9}  {'retrying':>9}  {'dead':>9}")
        for t in found.topics:
            print(f"{t.topic:<{width}}  {t.pending:>9}  {t.retrying:>9}  {t.dead:>9}")
    return EXIT_OK


def _dead(args: argparse.Namespace) -> int:
    from .postgres import admin

    config = _config(args)
    where = admin.DeadFilter(topic=args.topic, ids=tuple(args.id), older_than=args.older_than)
    if args.action == "list":
        for row in admin.list_dead(config, where, args.limit):
            print(json.dumps(row, default=_iso))
    elif args.action == "retry":
        print(f"moved {admin.retry_dead(config, where)} dead event(s) back into the outbox")
    else:
        print(f"purged {admin.purge_dead(config, where)} dead event(s)")
    return EXIT_OK


def _iso(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _run(args: argparse.Namespace) -> int:
    from .daemon.run import run_daemon
    from .daemon.settings import load_settings

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
        args = _parser().parse_args(argv)
        if args.command in ONE_SHOT:
            return _waiting(COMMANDS[args.command], args)
        return COMMANDS[args.command](args)
    except RestartIntensityExceeded as exc:
        print(f"relay: gave up: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except Unreachable as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RelayError as exc:  # ConfigError included
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
