"""The writer's statements, which insert events into the outbox, named, with identifiers quoted:
what `relay.enqueue`'s driver adapters run (the relay's own are in `queries`)."""

from __future__ import annotations

import attrs
from psycopg import sql

from .queries import SchemaQueries


@attrs.frozen
class EnqueueQueries(SchemaQueries):
    """The statements that write events, for every driver `relay.enqueue` writes through."""

    def enqueue(self, rows: int) -> sql.Composed:
        """Insert `rows` events in one statement."""
        values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s)") for _ in range(rows))
        return sql.SQL(
            "INSERT INTO {outbox} (topic, key, payload, headers) VALUES {values} RETURNING id"
        ).format(outbox=self._table("outbox"), values=values)

    def enqueue_columns(self, topics: str, keys: str, payloads: str, headers: str) -> str:
        """Insert one event per element of four parallel arrays bound as `text[]` at the given
        placeholders (each driver's own style: `$1`, `:topics`), in array order; returns their
        ids. Plain text for drivers other than psycopg; four parameters however many rows."""
        return (
            sql.SQL(
                "INSERT INTO {outbox} (topic, key, payload, headers)"
                " SELECT e.topic, e.key, e.payload::jsonb, e.headers::jsonb"
                " FROM unnest(CAST({topics} AS text[]), CAST({keys} AS text[]),"
                " CAST({payloads} AS text[]), CAST({headers} AS text[]))"
                " WITH ORDINALITY AS e(topic, key, payload, headers, n)"
                " ORDER BY e.n RETURNING id"
            )
            .format(
                outbox=self._table("outbox"),
                topics=sql.SQL(topics),
                keys=sql.SQL(keys),
                payloads=sql.SQL(payloads),
                headers=sql.SQL(headers),
            )
            .as_string(None)
        )
