"""The operator's statements: `relay status` and the dead-event commands, named, with identifiers
quoted (see `admin`, which runs them)."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence

import attrs
from psycopg import sql

from .queries import SchemaQueries


@attrs.frozen
class AdminQueries(SchemaQueries):
    """What `relay status` reads, and the dead-event commands' selection, listing, retry, purge."""

    @functools.cached_property
    def status(self) -> sql.Composed:
        """For `relay status`, per topic: pending (retrying included), retrying (waiting for a
        retry, or deferred while their route is down), dead, age."""
        return sql.SQL(
            """
            WITH pending AS (
                SELECT topic, count(*) AS pending,
                       count(*) FILTER (WHERE (attempts > 0 OR last_error IS NOT NULL)
                                          AND available_at > now()) AS retrying,
                       min(created_at) AS oldest
                FROM {outbox} GROUP BY topic),
            dead AS (SELECT topic, count(*) AS dead FROM {dead} GROUP BY topic)
            SELECT coalesce(p.topic, d.topic) AS topic, coalesce(p.pending, 0) AS pending,
                   coalesce(p.retrying, 0) AS retrying, coalesce(d.dead, 0) AS dead,
                   extract(epoch FROM now() - p.oldest)::float8 AS age
            FROM pending p FULL JOIN dead d ON p.topic = d.topic
            ORDER BY 1
            """
        ).format(outbox=self._table("outbox"), dead=self._table("outbox_dead"))

    @staticmethod
    def dead_where(
        topic: str | None, ids: Sequence[int], older_than: datetime.timedelta | None
    ) -> sql.Composed:
        """Dead events of `topic`, among `ids`, dead longer than `older_than`; None: any."""
        clauses: list[sql.Composable] = [sql.SQL("true")]
        if topic is not None:
            clauses.append(sql.SQL("topic = {}").format(sql.Literal(topic)))
        if ids:
            clauses.append(sql.SQL("id = ANY({})").format(sql.Literal(list(ids))))
        if older_than is not None:
            clauses.append(sql.SQL("failed_at < now() - {}").format(sql.Literal(older_than)))
        return sql.SQL(" AND ").join(clauses)

    def retrying_events(self, limit: int) -> sql.Composed:
        """The oldest `limit` events that failed at least once, or were deferred while their route
        was down, and wait in the outbox; the error cut to 1,000 characters (a webhook's whole
        answer body may be in it)."""
        return sql.SQL(
            "SELECT id, topic, key, attempts, available_at AS next_try_at,"
            " left(last_error, 1000) AS last_error"
            " FROM {outbox} WHERE attempts > 0 OR last_error IS NOT NULL ORDER BY id LIMIT {limit}"
        ).format(outbox=self._table("outbox"), limit=sql.Literal(limit))

    def list_dead(self, where: sql.Composable, limit: int) -> sql.Composed:
        """At most `limit` dead events matching `where` (see `dead_where`), oldest first."""
        return sql.SQL(
            "SELECT id, topic, key, payload, headers, created_at, attempts, last_error, failed_at"
            " FROM {dead} WHERE {where} ORDER BY id LIMIT {limit}"
        ).format(dead=self._table("outbox_dead"), where=where, limit=sql.Literal(limit))

    def dead_unmatched(self, where: sql.Composable, ids: Sequence[int]) -> sql.Composed:
        """Those of `ids` that no dead event matching `where` has."""
        return sql.SQL(
            "SELECT wanted FROM unnest({ids}::bigint[]) AS w(wanted) WHERE NOT EXISTS"
            " (SELECT 1 FROM {dead} WHERE id = wanted AND {where}) ORDER BY wanted"
        ).format(dead=self._table("outbox_dead"), where=where, ids=sql.Literal(list(ids)))

    def dead_summary(self, where: sql.Composable) -> sql.Composed:
        """How many dead events match `where`, and their lowest and highest id."""
        return sql.SQL("SELECT count(*), min(id), max(id) FROM {dead} WHERE {where}").format(
            dead=self._table("outbox_dead"), where=where
        )

    def retry_dead(self, where: sql.Composable) -> sql.Composed:
        """Move the dead events matching `where` back into the outbox, attempts reset; returns
        how many, and their lowest and highest id."""
        return sql.SQL(
            """
            WITH moved AS (DELETE FROM {dead} WHERE {where}
                           RETURNING id, topic, key, payload, headers, created_at, last_error),
            back AS (
                INSERT INTO {outbox} (id, topic, key, payload, headers, created_at, last_error)
                OVERRIDING SYSTEM VALUE
                SELECT id, topic, key, payload, headers, created_at, last_error FROM moved
                RETURNING id)
            SELECT count(*), min(id), max(id) FROM back
            """
        ).format(dead=self._table("outbox_dead"), outbox=self._table("outbox"), where=where)

    def purge_dead(self, where: sql.Composable) -> sql.Composed:
        """Delete the dead events matching `where` for good; returns how many, and their lowest
        and highest id."""
        return sql.SQL(
            "WITH gone AS (DELETE FROM {dead} WHERE {where} RETURNING id)"
            " SELECT count(*), min(id), max(id) FROM gone"
        ).format(dead=self._table("outbox_dead"), where=where)
