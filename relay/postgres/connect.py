"""Connection settings and the psycopg-to-relay error boundary."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo

from ..config import Config
from ..errors import DsnRejected, OutboxUnavailable, OutboxUnreachable, SchemaMissing
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
        raise DsnRejected(
            "dsn", "invalid DSN: it cannot be parsed as a URL or key=value pairs"
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


# What the server says when it will never accept this DSN: waiting would not help. libpq reports
# a failed connection without a SQLSTATE, so its words are all there is to go by.
_REJECTED = re.compile(
    r"password authentication failed|authentication failed for user|no password supplied"
    r"|role \".*\" does not exist|database \".*\" does not exist|no pg_hba\.conf entry"
    r"|pg_hba\.conf rejects|invalid connection option|invalid (URI|sslmode|integer value)"
    r"|is not permitted to log in|certificate|Servname not supported"
    # something answers, but not PostgreSQL
    r"|invalid response to SSL negotiation|expected authentication request|invalid message format"
)


def cause(exc: BaseException) -> str:
    """What went wrong in a few words, from a psycopg or OS error: `connection refused`,
    `the database system is starting up`, `Too many open files`."""
    if isinstance(exc, OSError) and not isinstance(exc, psycopg.Error):
        return exc.strerror or type(exc).__name__
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    # libpq: 'connection failed: connection to server at "h", port p failed: FATAL:  why'
    line = line.rpartition(" failed: ")[2] if " failed: " in line else line
    line = line.removeprefix("FATAL:").strip()
    if not line or line == "no error details available":
        # psycopg found libpq's message empty: the OS error that ended the try is the cause.
        context = exc.__cause__ or exc.__context__
        return cause(context) if context is not None else type(exc).__name__
    return line[0].lower() + line[1:] if line[1:2].islower() else line


@contextmanager
def map_psycopg_errors(
    config: Config, doing: str, *, into: type[OutboxUnavailable] | None = None
) -> Iterator[None]:
    """Raise a psycopg or OS error from the block, met while `doing` something, as relay's: `into`
    if given, else `DsnRejected` (a DSN the server will never accept: a configuration error),
    `SchemaMissing`, `OutboxUnreachable` (an outage) or `OutboxUnavailable`. From None: psycopg's
    may quote the DSN."""
    try:
        yield
    except (psycopg.Error, OSError) as exc:
        where = describe_dsn(config.dsn)
        why = mask(cause(exc), find_secrets(config.dsn))
        if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidSchemaName):
            error: OutboxUnavailable = SchemaMissing(
                f"the outbox in schema {config.schema!r} is missing at {where}: run `relay migrate`"
            )
        elif isinstance(exc, psycopg.OperationalError) and _REJECTED.search(str(exc)):
            error = DsnRejected("dsn", f"cannot connect to {where}: {why}")
        elif isinstance(exc, psycopg.OperationalError | OSError):
            # Connection-level trouble (SQLSTATE classes 08, 53, 57, 58 and libpq's own): wait.
            error = OutboxUnreachable(f"{doing} failed at {where}: {why}")
        else:
            error = OutboxUnavailable(f"{doing} failed at {where}: {why}")
        raise (error if into is None else into(str(error))) from None
