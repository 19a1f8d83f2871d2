"""The `relay` command line.

Every expected failure ends as one line on stderr and an exit code: 2 for bad usage, bad
configuration or an unreachable database; 1 when the relay gave up. Never a traceback, never a
password.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .config import Config, resolve_dsn
from .errors import ConfigError, RelayError, RestartIntensityExceeded

EXIT_OK, EXIT_GAVE_UP, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("relay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="A transactional-outbox relay for PostgreSQL."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def database_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dsn",
            help="libpq DSN or URL (default: $RELAY_DSN, $DATABASE_URL, "
            "then libpq's PG* variables)",
        )
        sub.add_argument("--schema", default="relay", help="the outbox schema (default: relay)")

    migrate = commands.add_parser("migrate", help="create or upgrade the outbox schema")
    database_options(migrate)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = _parser().parse_args(argv)
    commands = {"migrate": _migrate}
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"relay: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RestartIntensityExceeded as exc:
        print(f"relay: gave up: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except RelayError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
