"""The writer's side: add events to the outbox inside the caller's own transaction."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import psycopg
from psycopg.rows import tuple_row
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


def _as_is(text: str) -> str:
    return text


# JSON's escape of a NUL character: `\u0000` after an even number of backslashes.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _jsonb(value: Any, what: str, index: int, topic: str) -> Jsonb:
    """`value` as JSON, dumped here rather than by psycopg, so that a value JSON cannot hold
    names its event. No NaN or Infinity, no NUL character and no lone surrogate: PostgreSQL's
    jsonb refuses them all."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode()  # a lone surrogate (text decoded with surrogateescape) is no UTF-8
        if _NUL_ESCAPE.search(text):
            raise ValueError("it holds a NUL character (\\u0000), which jsonb cannot store")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        kind = TypeError if isinstance(exc, TypeError) else ValueError
        raise kind(f"event {index} (topic {topic!r}): {what} is not valid JSON: {exc}") from None
    return Jsonb(text, dumps=_as_is)


def _params(events: Sequence[NewEvent], first: int) -> list[Any]:
    params: list[Any] = []
    for index, event in enumerate(events, first):
        if not isinstance(event.topic, str) or not event.topic or "\x00" in event.topic:
            raise ValueError(
                f"event {index}: topic must be a non-empty string without NUL, got {event.topic!r}"
            )
        if event.key is not None and (not isinstance(event.key, str) or "\x00" in event.key):
            raise ValueError(
                f"event {index} (topic {event.topic!r}): key must be a string without NUL or None,"
                f" got {event.key!r}"
            )
        if event.headers is not None and not isinstance(event.headers, Mapping):
            raise TypeError(
                f"event {index} (topic {event.topic!r}): headers must be a mapping,"
                f" got {type(event.headers).__name__}"
            )
        params += [
            event.topic,
            event.key,
            _jsonb(event.payload, "payload", index, event.topic),
            _jsonb(dict(event.headers or {}), "headers", index, event.topic),
        ]
    return params


def _chunks(events: Iterable[NewEvent]) -> Iterator[tuple[int, Sequence[NewEvent]]]:
    """The events in statements' worth, each with the index of its first event."""
    batch: list[NewEvent] = []
    first = 0
    for event in events:
        batch.append(event)
        if len(batch) == _ROWS_PER_STATEMENT:
            yield first, batch
            first += len(batch)
            batch = []
    if batch:
        yield first, batch


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

    Raises:
        TypeError: a payload or headers JSON cannot hold (the message names the event's index
            and topic), or headers that are not a mapping.
        ValueError: an empty topic, or a payload or headers with NaN, Infinity or a cycle.
    """
    ids: list[int] = []
    # A cursor of our own rows: the caller's connection may have any row factory (dict_row).
    with conn.cursor(row_factory=tuple_row) as cursor:
        for first, chunk in _chunks(events):
            cursor.execute(_queries(schema).enqueue(len(chunk)), _params(chunk, first))
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
    async with conn.cursor(row_factory=tuple_row) as cursor:
        for first, chunk in _chunks(events):
            await cursor.execute(_queries(schema).enqueue(len(chunk)), _params(chunk, first))
            ids += [row[0] for row in await cursor.fetchall()]
    return ids
