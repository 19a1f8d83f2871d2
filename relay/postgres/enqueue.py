"""The writer's side: add events to the outbox inside the caller's own transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import psycopg
from psycopg.types.json import Jsonb

from .queries import Queries

# PostgreSQL takes at most 65,535 parameters per statement; 4 per row leaves room for 16,383.
_ROWS_PER_STATEMENT = 10_000


@attrs.frozen
class NewEvent:
    """An event to enqueue: `payload` is anything `json.dumps` accepts."""

    topic: str
    payload: Any
    key: str | None = None
    headers: Mapping[str, Any] | None = None


def _queries(schema: str) -> Queries:
    return Queries(schema)


def _params(events: Sequence[NewEvent]) -> list[Any]:
    params: list[Any] = []
    for event in events:
        if not isinstance(event.topic, str) or not event.topic:
            raise ValueError(f"topic must be a non-empty string, got {event.topic!r}")
        params += [event.topic, event.key, Jsonb(event.payload), Jsonb(dict(event.headers or {}))]
    return params


def _chunks(events: Iterable[NewEvent]) -> Iterable[Sequence[NewEvent]]:
    batch: list[NewEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) == _ROWS_PER_STATEMENT:
            yield batch
            batch = []
    if batch:
        yield batch


def enqueue(
    conn: psycopg.Connection[Any],
    topic: str,
    payload: Any,
    *,
    key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    schema: str = "relay",
) -> int:
    """Add one event in `conn`'s current transaction; it is sent once that transaction commits.

    Returns:
        The event's id.
    """
    return enqueue_many(conn, [NewEvent(topic, payload, key, headers)], schema=schema)[0]


def enqueue_many(
    conn: psycopg.Connection[Any], events: Iterable[NewEvent], *, schema: str = "relay"
) -> list[int]:
    """Add many events in one statement (per 10,000) in `conn`'s current transaction.

    Returns:
        The events' ids, in the order given.
    """
    ids: list[int] = []
    for chunk in _chunks(events):
        cursor = conn.execute(_queries(schema).enqueue(len(chunk)), _params(chunk))
        ids += [row[0] for row in cursor.fetchall()]
    return ids


async def enqueue_async(
    conn: psycopg.AsyncConnection[Any],
    topic: str,
    payload: Any,
    *,
    key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    schema: str = "relay",
) -> int:
    """`enqueue` for an `AsyncConnection`."""
    ids = await enqueue_many_async(conn, [NewEvent(topic, payload, key, headers)], schema=schema)
    return ids[0]


async def enqueue_many_async(
    conn: psycopg.AsyncConnection[Any], events: Iterable[NewEvent], *, schema: str = "relay"
) -> list[int]:
    """`enqueue_many` for an `AsyncConnection`."""
    ids: list[int] = []
    for chunk in _chunks(events):
        cursor = await conn.execute(_queries(schema).enqueue(len(chunk)), _params(chunk))
        ids += [row[0] for row in await cursor.fetchall()]
    return ids
