"""`relay.enqueue_async` on an asyncpg connection (or one acquired from an asyncpg pool).

asyncpg commits every statement by itself unless a transaction is open
(`async with conn.transaction():`), so outside one the write is refused rather than committed.
Only `relay.postgres.enqueue` imports this module, and only for an object whose class comes from
asyncpg: asyncpg is loaded already by then.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import asyncpg
import asyncpg.pool

from ..errors import TransactionRequired
from .enqueue_queries import EnqueueQueries
from .new_events import NewEvent, as_columns, checked_chunks


@functools.cache  # the same text each time, so asyncpg's prepared-statement cache finds it
def _statement(schema: str) -> str:
    return EnqueueQueries(schema).enqueue_columns("$1", "$2", "$3", "$4")


def is_connection(target: object) -> bool:
    """Whether `target` is an asyncpg connection, or a pool's proxy of one."""
    return isinstance(target, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy)


async def insert(conn: Any, events: Iterable[NewEvent], schema: str) -> list[int]:
    """Write `events` in `conn`'s open transaction; their ids, in order."""
    why: str | None = None
    try:
        if conn.is_closed():
            why = "the connection is closed"
        elif not conn.is_in_transaction():
            why = (
                "no transaction is open, and asyncpg would commit the event on its own:"
                " enqueue inside `async with conn.transaction():`"
            )
    except asyncpg.InterfaceError as exc:  # a pool's proxy after its connection went back
        why = str(exc)
    if why is not None:
        raise TransactionRequired(
            f"relay.enqueue_async: cannot write through this asyncpg {type(conn).__name__}: {why}"
        )
    statement = _statement(schema)
    ids: list[int] = []
    for chunk in checked_chunks(events):
        ids += [row[0] for row in await conn.fetch(statement, *as_columns(chunk))]
    return ids
