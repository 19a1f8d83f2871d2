"""`relay.enqueue` on a psycopg connection, sync or async: one VALUES statement per chunk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from ..errors import TransactionRequired
from .enqueue_queries import EnqueueQueries
from .new_events import EventRow, NewEvent, checked_chunks


def _as_is(text: str) -> str:
    return text


def _params(rows: Sequence[EventRow]) -> list[Any]:
    params: list[Any] = []
    for row in rows:
        # Already JSON text (new_events dumped it): psycopg passes it on as jsonb untouched.
        params += [row.topic, row.key, Jsonb(row.payload, _as_is), Jsonb(row.headers, _as_is)]
    return params


def unusable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> str | None:
    """Why `conn` cannot take a write in a transaction of its owner's, or None when it can."""
    if conn.closed or conn.broken:
        return "the connection is closed"
    status = conn.info.transaction_status
    if status == pq.TransactionStatus.INERROR:
        return "its transaction failed earlier: roll it back first"
    if status == pq.TransactionStatus.IDLE and conn.autocommit:
        return (
            "it is in autocommit mode outside a transaction, so the event would commit on its"
            " own: enqueue inside `with conn.transaction():`, or connect with autocommit=False"
        )
    return None


def _check(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], function: str) -> None:
    if (why := unusable(conn)) is not None:
        raise TransactionRequired(f"{function}: cannot write through this {_name(conn)}: {why}")


def _name(conn: object) -> str:
    return f"psycopg {type(conn).__name__}"


def insert(conn: psycopg.Connection[Any], events: Iterable[NewEvent], schema: str) -> list[int]:
    """Write `events` through `conn`, in its current transaction; their ids, in order."""
    _check(conn, "relay.enqueue")
    ids: list[int] = []
    # A cursor of our own rows: the caller's connection may have any row factory (dict_row).
    with conn.cursor(row_factory=tuple_row) as cursor:
        for chunk in checked_chunks(events):
            cursor.execute(EnqueueQueries(schema).enqueue(len(chunk)), _params(chunk))
            ids += [row[0] for row in cursor.fetchall()]
    return ids


async def insert_async(
    conn: psycopg.AsyncConnection[Any], events: Iterable[NewEvent], schema: str
) -> list[int]:
    """`insert` for an `AsyncConnection`."""
    _check(conn, "relay.enqueue_async")
    ids: list[int] = []
    async with conn.cursor(row_factory=tuple_row) as cursor:
        for chunk in checked_chunks(events):
            await cursor.execute(EnqueueQueries(schema).enqueue(len(chunk)), _params(chunk))
            ids += [row[0] for row in await cursor.fetchall()]
    return ids
