"""What `relay status` and `relay dead` ask of the database: plain synchronous psycopg."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..config import Config
from .connect import connection_kwargs, map_psycopg_errors
from .migrations import require_latest, schema_version
from .queries import Queries


@attrs.frozen
class TopicCounts:
    topic: str
    pending: int
    retrying: int
    dead: int


@attrs.frozen
class OutboxStatus:
    """How the outbox stands: pending includes retrying events."""

    pending: int
    oldest_pending_age: float | None  # seconds since the oldest pending event was written
    retrying: int  # events waiting for a scheduled retry
    dead: int
    topics: tuple[TopicCounts, ...]


@attrs.frozen
class DeadFilter:
    """Which dead events a `relay dead` command acts on; no filter means all."""

    topic: str | None = None
    ids: tuple[int, ...] = ()
    older_than: datetime.timedelta | None = None

    def where(self) -> sql.Composable:
        return Queries.dead_where(self.topic, self.ids, self.older_than)


@contextmanager
def _connect(config: Config, doing: str) -> Iterator[psycopg.Connection[Any]]:
    with (
        map_psycopg_errors(config, doing),
        psycopg.connect(config.dsn, **connection_kwargs(config)) as conn,
    ):
        require_latest(config, schema_version(conn, config))
        yield conn


def status(config: Config) -> OutboxStatus:
    """Counts and ages of the outbox, per topic too."""
    with _connect(config, "status") as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(Queries(config.schema).status).fetchall()
    ages = [row["age"] for row in rows if row["age"] is not None]
    return OutboxStatus(
        pending=sum(row["pending"] for row in rows),
        oldest_pending_age=max(ages) if ages else None,
        retrying=sum(row["retrying"] for row in rows),
        dead=sum(row["dead"] for row in rows),
        topics=tuple(
            TopicCounts(row["topic"], row["pending"], row["retrying"], row["dead"]) for row in rows
        ),
    )


def list_dead(config: Config, where: DeadFilter, limit: int) -> list[dict[str, Any]]:
    """Dead events, oldest first, as dicts of their columns (payload and headers decoded)."""
    query = Queries(config.schema).list_dead(where.where(), limit)
    with _connect(config, "dead list") as conn, conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query).fetchall()


def retry_dead(config: Config, where: DeadFilter) -> int:
    """Move dead events back into the outbox with their own ids, attempts reset; returns count.

    The insert fires the NOTIFY trigger, so a running relay picks them up at once.
    """
    with _connect(config, "dead retry") as conn:
        return conn.execute(Queries(config.schema).retry_dead(where.where())).rowcount


def purge_dead(config: Config, where: DeadFilter) -> int:
    """Delete dead events for good; returns how many."""
    with _connect(config, "dead purge") as conn:
        return conn.execute(Queries(config.schema).purge_dead(where.where())).rowcount
