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
        clauses: list[sql.Composable] = [sql.SQL("true")]
        if self.topic is not None:
            clauses.append(sql.SQL("topic = {}").format(sql.Literal(self.topic)))
        if self.ids:
            clauses.append(sql.SQL("id = ANY({})").format(sql.Literal(list(self.ids))))
        if self.older_than is not None:
            clauses.append(sql.SQL("failed_at < now() - {}").format(sql.Literal(self.older_than)))
        return sql.SQL(" AND ").join(clauses)


@contextmanager
def _connect(config: Config, doing: str) -> Iterator[psycopg.Connection[Any]]:
    with (
        map_psycopg_errors(config, doing),
        psycopg.connect(config.dsn, **connection_kwargs(config)) as conn,
    ):
        require_latest(config, schema_version(conn, config))
        yield conn


def _tables(config: Config) -> dict[str, sql.Identifier]:
    return {
        "outbox": sql.Identifier(config.schema, "outbox"),
        "dead": sql.Identifier(config.schema, "outbox_dead"),
    }


def status(config: Config) -> OutboxStatus:
    """Counts and ages of the outbox, per topic too."""
    query = sql.SQL(
        """
        WITH pending AS (
            SELECT topic, count(*) AS pending,
                   count(*) FILTER (WHERE attempts > 0 AND available_at > now()) AS retrying,
                   min(created_at) AS oldest
            FROM {outbox} GROUP BY topic),
        dead AS (SELECT topic, count(*) AS dead FROM {dead} GROUP BY topic)
        SELECT coalesce(p.topic, d.topic) AS topic, coalesce(p.pending, 0) AS pending,
               coalesce(p.retrying, 0) AS retrying, coalesce(d.dead, 0) AS dead,
               extract(epoch FROM now() - p.oldest)::float8 AS age
        FROM pending p FULL JOIN dead d ON p.topic = d.topic
        ORDER BY 1
        """
    ).format(**_tables(config))
    with _connect(config, "status") as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(query).fetchall()
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
    query = sql.SQL(
        "SELECT id, topic, key, payload, headers, created_at, attempts, last_error, failed_at"
        " FROM {dead} WHERE {where} ORDER BY id LIMIT {limit}"
    ).format(where=where.where(), limit=sql.Literal(limit), **_tables(config))
    with _connect(config, "dead list") as conn, conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query).fetchall()


def retry_dead(config: Config, where: DeadFilter) -> int:
    """Move dead events back into the outbox with their own ids, attempts reset; returns count.

    The insert fires the NOTIFY trigger, so a running relay picks them up at once.
    """
    query = sql.SQL(
        """
        WITH moved AS (DELETE FROM {dead} WHERE {where}
                       RETURNING id, topic, key, payload, headers, created_at, last_error)
        INSERT INTO {outbox} (id, topic, key, payload, headers, created_at, last_error)
        OVERRIDING SYSTEM VALUE
        SELECT id, topic, key, payload, headers, created_at, last_error FROM moved
        """
    ).format(where=where.where(), **_tables(config))
    with _connect(config, "dead retry") as conn:
        return conn.execute(query).rowcount


def purge_dead(config: Config, where: DeadFilter) -> int:
    """Delete dead events for good; returns how many."""
    query = sql.SQL("DELETE FROM {dead} WHERE {where}").format(
        where=where.where(), **_tables(config)
    )
    with _connect(config, "dead purge") as conn:
        return conn.execute(query).rowcount
