"""`relay.enqueue` through SQLAlchemy: a Session or Connection, an AsyncSession or
AsyncConnection (and their scoped variants, Flask-SQLAlchemy's `db.session` among them).

The statement goes through SQLAlchemy's own `execute`, so it joins the transaction SQLAlchemy
tracks (beginning it, as any statement would, when none is open) on whatever driver the engine
uses: psycopg, or asyncpg for an async engine. Only `relay.postgres.enqueue` imports this module,
and only for an object whose class comes from SQLAlchemy: SQLAlchemy is loaded already by then.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import ARRAY, Text, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, scoped_session

from ..errors import TransactionRequired
from .enqueue_psycopg import unusable
from .enqueue_queries import EnqueueQueries
from .new_events import EventRow, NewEvent, as_columns, checked_chunks

if TYPE_CHECKING:
    from sqlalchemy import TextClause
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

_COLUMNS = ("topics", "keys", "payloads", "headers")


def is_async(target: object) -> bool | None:
    """Whether `target` is one of SQLAlchemy's async writers (True) or sync ones (False); None
    when it is neither (an Engine, a sessionmaker, a Result...)."""
    if isinstance(target, Session | Connection | scoped_session):
        return False
    # Loaded by whoever made an async session or connection; never loaded here for nothing.
    if (aio := sys.modules.get("sqlalchemy.ext.asyncio")) is not None and isinstance(
        target, aio.AsyncSession | aio.AsyncConnection | aio.async_scoped_session
    ):
        return True
    return None


@functools.cache  # one per schema: SQLAlchemy then finds its compiled form in its own cache
def _statement(schema: str) -> TextClause:
    placeholders = (f":{name}" for name in _COLUMNS)
    # Typed binds: SQLAlchemy hands each driver a list it binds as one array.
    return text(EnqueueQueries(schema).enqueue_columns(*placeholders)).bindparams(
        *(bindparam(name, type_=ARRAY(Text)) for name in _COLUMNS)
    )


def _check(connection: Connection, function: str) -> None:
    """Refuse a connection that cannot write in a transaction: closed or invalidated, in
    autocommit, or (psycopg tells) in a failed transaction."""
    why: str | None = None
    if connection.closed or connection.invalidated:
        why = "the connection is closed"
    else:
        dbapi = connection.connection.dbapi_connection
        driver = connection.connection.driver_connection
        if getattr(dbapi, "autocommit", False):
            why = (
                "its engine is in AUTOCOMMIT isolation, so the event would commit on its own:"
                " enqueue through a connection or session without isolation_level='AUTOCOMMIT'"
            )
        elif isinstance(driver, psycopg.Connection | psycopg.AsyncConnection):
            why = unusable(driver)
    if why is not None:
        raise TransactionRequired(
            f"{function}: cannot write through this SQLAlchemy Connection: {why}"
        )


def _params(chunk: Sequence[EventRow]) -> dict[str, list[Any]]:
    return dict(zip(_COLUMNS, as_columns(chunk), strict=True))


def insert(
    target: Session | Connection | scoped_session[Any], events: Iterable[NewEvent], schema: str
) -> list[int]:
    """Write `events` in the transaction of `target` (a Session: the transaction it has, or
    begins); their ids, in order."""
    writer = target() if isinstance(target, scoped_session) else target
    connection = writer.connection() if isinstance(writer, Session) else writer
    _check(connection, "relay.enqueue")
    statement = _statement(schema)
    ids: list[int] = []
    for chunk in checked_chunks(events):
        ids += connection.execute(statement, _params(chunk)).scalars().all()
    return ids


async def insert_async(
    target: AsyncSession | AsyncConnection | async_scoped_session[Any],
    events: Iterable[NewEvent],
    schema: str,
) -> list[int]:
    """`insert` for an AsyncSession or AsyncConnection."""
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session

    writer = target() if isinstance(target, async_scoped_session) else target
    connection = await writer.connection() if isinstance(writer, AsyncSession) else writer
    if connection.closed or connection.sync_connection is None:
        raise TransactionRequired(
            "relay.enqueue_async: cannot write through this SQLAlchemy AsyncConnection:"
            " the connection is closed"
        )
    _check(connection.sync_connection, "relay.enqueue_async")
    statement = _statement(schema)
    ids: list[int] = []
    for chunk in checked_chunks(events):
        result = await connection.execute(statement, _params(chunk))
        ids += result.scalars().all()
    return ids
