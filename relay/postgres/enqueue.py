"""The writer's side: add events to the outbox inside the caller's own transaction.

Two entry points, `enqueue` (and `enqueue_many`) for blocking code and `enqueue_async` (and
`enqueue_many_async`) for asyncio code, each taking whatever the application already writes
through: a psycopg connection, a SQLAlchemy session or connection, an asyncpg connection. The
kind is told from the object's class: SQLAlchemy's and asyncpg's adapters are imported only for
their own objects, so `import relay` never loads either library (both are optional extras).
Every path writes in the caller's transaction and never commits; each checks the events the same
way (`new_events`) before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg

from . import enqueue_psycopg
from .new_events import NewEvent

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
    from sqlalchemy.orm import Session, scoped_session

    Writer: TypeAlias = psycopg.Connection[Any] | Session | Connection | scoped_session[Any]
    AsyncWriter: TypeAlias = (
        psycopg.AsyncConnection[Any]
        | AsyncSession
        | AsyncConnection
        | async_scoped_session[Any]
        | asyncpg.Connection
        | asyncpg.pool.PoolConnectionProxy
    )

__all__ = ["NewEvent", "enqueue", "enqueue_async", "enqueue_many", "enqueue_many_async"]

_SYNC_KINDS = "a psycopg Connection, or a SQLAlchemy Session or Connection"
_ASYNC_KINDS = (
    "a psycopg AsyncConnection, a SQLAlchemy AsyncSession or AsyncConnection,"
    " or an asyncpg connection"
)


def _library(target: object) -> str | None:
    """The library `target`'s class (or a base of it) comes from, among those relay writes
    through; found by module name, so that neither optional library is imported to ask."""
    for cls in type(target).__mro__:
        top = cls.__module__.partition(".")[0]
        if top in ("psycopg", "sqlalchemy", "asyncpg"):
            return top
    return None


def _kind(target: object) -> tuple[str, bool] | None:
    """(library, is it async) for a writer relay can use; None for anything else."""
    library = _library(target)
    if library == "psycopg":
        if isinstance(target, psycopg.Connection):
            return library, False
        if isinstance(target, psycopg.AsyncConnection):
            return library, True
    elif library == "sqlalchemy":
        from . import enqueue_sqlalchemy

        if (is_async := enqueue_sqlalchemy.is_async(target)) is not None:
            return library, is_async
    elif library == "asyncpg":
        from . import enqueue_asyncpg

        if enqueue_asyncpg.is_connection(target):
            return library, True
    return None


def _describe(target: object) -> str:
    """`target`'s kind with its article: "a psycopg Cursor", "an asyncpg Pool", "a str"."""
    library = _library(target)
    name = f"{library} {type(target).__name__}" if library else type(target).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _refusal(function: str, target: object, kind: tuple[str, bool] | None) -> TypeError:
    """The one-line error for a `target` that `function` cannot write through."""
    what = _describe(target)
    if kind is not None:  # the right library, the other function
        is_async = kind[1]
        instead = "await relay.enqueue_async" if is_async else "call relay.enqueue"
        return TypeError(
            f"{function} cannot write through {what}: it is"
            f" {'async' if is_async else 'blocking'}, {instead}(...) instead"
        )
    kinds = _ASYNC_KINDS if function.endswith("_async") else _SYNC_KINDS
    hint = ""
    if type(target).__name__ in ("Engine", "AsyncEngine", "sessionmaker", "async_sessionmaker"):
        hint = " (an engine or a session factory holds no transaction of yours: pass a session)"
    elif type(target).__name__ in ("Pool", "ConnectionPool", "AsyncConnectionPool"):
        hint = " (a pool holds no transaction of yours: pass a connection taken from it)"
    elif isinstance(target, str):
        hint = " (a DSN holds no transaction of yours: pass a connection in one)"
    return TypeError(f"{function} cannot write through {what}: pass {kinds}{hint}")


def enqueue(
    conn: Writer,
    topic: str,
    payload: Any,
    *,
    key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    schema: str = "relay",
) -> int:
    """Add one event in `conn`'s current transaction; it is sent once that transaction commits.

    Args:
        conn: a psycopg `Connection`, or a SQLAlchemy `Session` (or `scoped_session`) or
            `Connection`: the event joins the transaction it has, or begins one as any
            statement would. Never committed here.

    Returns:
        The event's id.

    Raises:
        TypeError: `conn` is none of those (an async one names `enqueue_async`).
        relay.TransactionRequired: `conn` is closed, in autocommit mode outside a transaction,
            or in a failed transaction.
    """
    return enqueue_many(conn, [NewEvent(topic, payload, key, headers)], schema=schema)[0]


def enqueue_many(conn: Writer, events: Iterable[NewEvent], *, schema: str = "relay") -> list[int]:
    """Add many events in one statement (per 10,000) in `conn`'s current transaction.

    Returns:
        The events' ids, in the order given.

    Raises:
        TypeError: as `enqueue`; or a payload or headers JSON cannot hold (the message names the
            event's index and topic), or headers that are not a mapping.
        ValueError: an empty topic, or a payload or headers with NaN, Infinity or a cycle.
        relay.TransactionRequired: as `enqueue`.
    """
    kind = _kind(conn)
    if kind == ("psycopg", False):
        return enqueue_psycopg.insert(conn, events, schema)  # type: ignore[arg-type]
    if kind == ("sqlalchemy", False):
        from . import enqueue_sqlalchemy

        return enqueue_sqlalchemy.insert(conn, events, schema)  # type: ignore[arg-type]
    raise _refusal("relay.enqueue", conn, kind)


async def enqueue_async(
    conn: AsyncWriter,
    topic: str,
    payload: Any,
    *,
    key: str | None = None,
    headers: Mapping[str, Any] | None = None,
    schema: str = "relay",
) -> int:
    """`enqueue` for asyncio code.

    Args:
        conn: a psycopg `AsyncConnection`, a SQLAlchemy `AsyncSession` (or
            `async_scoped_session`) or `AsyncConnection` on either async driver, or an asyncpg
            connection (plain or from a pool) inside `async with conn.transaction():`.
    """
    ids = await enqueue_many_async(conn, [NewEvent(topic, payload, key, headers)], schema=schema)
    return ids[0]


async def enqueue_many_async(
    conn: AsyncWriter, events: Iterable[NewEvent], *, schema: str = "relay"
) -> list[int]:
    """`enqueue_many` for asyncio code: `conn` as `enqueue_async` takes it."""
    kind = _kind(conn)
    if kind == ("psycopg", True):
        return await enqueue_psycopg.insert_async(conn, events, schema)  # type: ignore[arg-type]
    if kind == ("sqlalchemy", True):
        from . import enqueue_sqlalchemy

        return await enqueue_sqlalchemy.insert_async(conn, events, schema)  # type: ignore[arg-type]
    if kind == ("asyncpg", True):
        from . import enqueue_asyncpg

        return await enqueue_asyncpg.insert(conn, events, schema)
    raise _refusal("relay.enqueue_async", conn, kind)
