"""Connection settings and the psycopg-to-relay error boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from ..config import Config
from ..errors import OutboxUnavailable, SchemaMissing
from ..secrets import find_secrets, mask, mask_url


def describe_dsn(dsn: str) -> str:
    """Where `dsn` points, for messages: `host:port/dbname` with no credentials."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparseable DSN)"
    host = params.get("host") or params.get("hostaddr") or "(libpq default host)"
    port = params.get("port") or "5432"
    where = f"{host}:{port}/{params.get('dbname') or '(default database)'}"
    # A password holding an unencoded delimiter makes libpq misread it, and a piece of it as the
    # host, port or database: then show the DSN as written, masked.
    secrets = find_secrets(dsn)
    misread = params.get("password") not in (None, *secrets) or mask(where, secrets) != where
    return mask_url(dsn) if misread else where


def with_default_password(dsn: str, password: str) -> str:
    """`dsn` with `password` when it names none: what libpq does with `PGPASSWORD`, made
    explicit so the variable can go. An unparseable `dsn` is returned as it is (connecting says
    what is wrong with it)."""
    try:
        if conninfo.conninfo_to_dict(dsn).get("password"):
            return dsn
        return conninfo.make_conninfo(dsn, password=password)
    except psycopg.ProgrammingError:
        return dsn


def describe_connection(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> str:
    """Where `conn` is connected, for messages: `host:port/dbname`, as the server was reached
    (libpq's defaults and `PG*` variables included), never as the DSN was written."""
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


# plan_cache_mode: the claim's prepared statements keep their one generic plan. Left to choose,
# the server finds the generic plan's estimate (for a LIMIT it cannot see) dearer than a custom
# plan's and plans every claim afresh, which costs more than running it (0.6 of 1.5 ms for a
# claim of 100). The generic plans are the ones test_schema checks.
# jit=off: those generic plans carry estimates far above jit_above_cost, and compiling them
# (seconds, on a server built with LLVM) would cost more than every claim they serve.
PLANNER_SETTINGS = "-c plan_cache_mode=force_generic_plan -c jit=off"


def _idle_timeout(config: Config) -> float:
    """The server-side bound on an idle claim: never shorter than a delivery may take."""
    return max(config.idle_in_transaction_timeout, config.delivery_timeout + 30.0)


def connection_kwargs(config: Config) -> dict[str, Any]:
    """Arguments every relay connection gets, on top of the user's DSN.

    The session settings bound what a stuck relay can hold: an idle transaction is ended by the
    server, a statement cannot run forever.
    """
    try:
        given = conninfo.conninfo_to_dict(config.dsn)
    except psycopg.ProgrammingError:
        # libpq's message quotes the part it could not parse, which may hold the password.
        raise OutboxUnavailable(
            "invalid DSN: it cannot be parsed as a URL or key=value pairs"
        ) from None
    settings = (
        f"-c idle_in_transaction_session_timeout={int(_idle_timeout(config) * 1000)}"
        f" -c statement_timeout={int(config.statement_timeout * 1000)} {PLANNER_SETTINGS}"
    )
    options = f"{given['options']} {settings}" if given.get("options") else settings
    kwargs: dict[str, Any] = {"application_name": config.application_name, "options": options}
    kwargs.setdefault("connect_timeout", given.get("connect_timeout") or 10)
    # Keepalives notice a peer that vanished without closing the socket.
    kwargs |= {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    return kwargs


# Admin commands (status, dead) run with no statement or idle-transaction limit: an operator is
# there to interrupt them, a dead table of millions may take longer than relay's own 30 s, and
# `relay dead list | less` keeps its transaction idle for as long as the reader reads.
_ADMIN_SETTINGS = "-c statement_timeout=0 -c idle_in_transaction_session_timeout=0"


def admin_connection_kwargs(config: Config) -> dict[str, Any]:
    """`connection_kwargs` for an admin command's session: later `-c` settings win."""
    kwargs = connection_kwargs(config)
    return kwargs | {"options": f"{kwargs['options']} {_ADMIN_SETTINGS}"}


@contextmanager
def map_psycopg_errors(
    config: Config, doing: str, *, into: type[OutboxUnavailable] | None = None
) -> Iterator[None]:
    """Raise a psycopg error from the block, met while `doing` something, as relay's: `into` if
    given, else `SchemaMissing` or `OutboxUnavailable`. From None: psycopg's may quote the DSN."""
    try:
        yield
    except psycopg.Error as exc:
        where = describe_dsn(config.dsn)
        if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
            error: OutboxUnavailable = SchemaMissing(
                f"the outbox in schema {config.schema!r} is missing at {where}: run `relay migrate`"
            )
        else:
            text = str(exc).strip()
            first_line = text.splitlines()[0] if text else type(exc).__name__
            error = OutboxUnavailable(
                f"{doing} failed at {where}: {mask(first_line, find_secrets(config.dsn))}"
            )
        raise (error if into is None else into(str(error))) from None
