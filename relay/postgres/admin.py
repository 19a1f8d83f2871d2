"""What `relay status` and `relay dead` ask of the database: plain synchronous psycopg.

Each answer says where it was found (`describe_connection`: the server and database reached,
not the DSN as written). The sessions run without relay's statement timeout (see
`admin_connection_kwargs`).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..config import Config
from .admin_queries import AdminQueries
from .connect import admin_connection_kwargs, describe_connection, map_psycopg_errors
from .migrations import require_latest, schema_version

RETRYING_SHOWN = 10  # `relay status` lists this many of the oldest retrying events
_FETCH = 500  # `relay dead list` holds at most this many rows at once


@attrs.frozen
class TopicCounts:
    topic: str
    pending: int
    retrying: int
    dead: int


@attrs.frozen
class RetryingEvent:
    """An event that failed at least once (or was deferred while its route was down) and waits
    in the outbox for its next try."""

    id: int
    topic: str
    key: str | None
    attempts: int
    next_try_at: datetime.datetime
    last_error: str | None  # at most 1,000 characters of it


@attrs.frozen
class OutboxStatus:
    """How the outbox stands: pending includes retrying events."""

    server: str  # host:port/dbname, as reached
    pending: int
    oldest_pending_age: float | None  # seconds since the oldest pending event was written
    retrying: int  # events waiting for a scheduled retry (or for their route to come back)
    dead: int
    topics: tuple[TopicCounts, ...]
    retrying_events: tuple[RetryingEvent, ...] = ()  # the oldest, up to RETRYING_SHOWN


@attrs.frozen
class DeadFilter:
    """Which dead events a `relay dead` command acts on; no filter means all."""

    topic: str | None = None
    ids: tuple[int, ...] = ()
    older_than: datetime.timedelta | None = None

    def where(self) -> sql.Composable:
        return AdminQueries.dead_where(self.topic, self.ids, self.older_than)


@attrs.frozen
class DeadListing:
    """The dead events `list_dead` found, read from the server as they are iterated."""

    server: str
    rows: Iterator[dict[str, Any]]
    missing_ids: tuple[int, ...]  # ids asked for that no dead event matching the filter has


@attrs.frozen
class DeadChange:
    """What `change_dead` did, or with `dry_run` would do."""

    server: str
    count: int
    first_id: int | None
    last_id: int | None
    missing_ids: tuple[int, ...]  # ids asked for that no dead event matching the filter has
    dry_run: bool


@contextmanager
def _connect(config: Config, doing: str) -> Iterator[psycopg.Connection[Any]]:
    with (
        map_psycopg_errors(config, doing),
        psycopg.connect(config.dsn, **admin_connection_kwargs(config)) as conn,
    ):
        require_latest(config, schema_version(conn, config))
        yield conn


def status(config: Config) -> OutboxStatus:
    """Counts and ages of the outbox, per topic too, and the oldest retrying events."""
    queries = AdminQueries(config.schema)
    with _connect(config, "status") as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(queries.status).fetchall()
        retrying = cursor.execute(queries.retrying_events(RETRYING_SHOWN)).fetchall()
        server = describe_connection(conn)
    ages = [row["age"] for row in rows if row["age"] is not None]
    return OutboxStatus(
        server=server,
        pending=sum(row["pending"] for row in rows),
        oldest_pending_age=max(ages) if ages else None,
        retrying=sum(row["retrying"] for row in rows),
        dead=sum(row["dead"] for row in rows),
        topics=tuple(
            TopicCounts(row["topic"], row["pending"], row["retrying"], row["dead"]) for row in rows
        ),
        retrying_events=tuple(RetryingEvent(**row) for row in retrying),
    )


def _missing(conn: psycopg.Connection[Any], config: Config, where: DeadFilter) -> tuple[int, ...]:
    if not where.ids:
        return ()
    query = AdminQueries(config.schema).dead_unmatched(where.where(), where.ids)
    return tuple(row[0] for row in conn.execute(query))


@contextmanager
def list_dead(config: Config, where: DeadFilter, limit: int) -> Iterator[DeadListing]:
    """Dead events, oldest first, as dicts of their columns (payload and headers decoded).

    A server-side cursor hands them over `_FETCH` at a time: memory stays bounded whatever
    `limit` is.
    """
    query = AdminQueries(config.schema).list_dead(where.where(), limit)
    with _connect(config, "dead list") as conn:
        missing = _missing(conn, config, where)
        with conn.cursor("relay_dead_list", row_factory=dict_row) as cursor:
            cursor.itersize = _FETCH
            cursor.execute(query)
            yield DeadListing(describe_connection(conn), iter(cursor), missing)


def change_dead(
    config: Config, where: DeadFilter, action: Literal["retry", "purge"], *, dry_run: bool
) -> DeadChange:
    """Retry (move back into the outbox with their own ids, attempts reset) or purge (delete for
    good) the dead events `where` matches, in one transaction; with `dry_run`, only count them.

    A retried event's insert fires the NOTIFY trigger, so a running relay picks it up at once.
    """
    queries = AdminQueries(config.schema)
    with _connect(config, f"dead {action}") as conn:
        missing = _missing(conn, config, where)
        if dry_run:
            statement = queries.dead_summary(where.where())
        elif action == "retry":
            statement = queries.retry_dead(where.where())
        else:
            statement = queries.purge_dead(where.where())
        row = conn.execute(statement).fetchone()
        assert row is not None  # an aggregate always returns its row
        return DeadChange(describe_connection(conn), row[0], row[1], row[2], missing, dry_run)
