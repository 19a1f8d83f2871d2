"""Every database layer `relay.enqueue` writes through, behind one shape for the tests: open a
writer on a DSN, enqueue in its transaction, then commit or roll back the way that layer does.

Sync layers are plain functions; async ones run on relay's trio-asyncio loop (`relay.aio`), as an
asyncio application would run them on its own loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import psycopg
import pytest
import trio
from psycopg import conninfo

# psycopg binds asyncio's loop lookup when it is imported; the adapter points it at
# trio-asyncio's (see relay/postgres/outbox.py).
import relay.postgres.outbox  # noqa: F401
from relay import NewEvent, enqueue_many, enqueue_many_async
from relay.aio import aio_as_trio, asyncio_loop

sqlalchemy = pytest.importorskip("sqlalchemy", reason="needs relay-outbox[sqlalchemy]")
asyncpg = pytest.importorskip("asyncpg", reason="needs relay-outbox[asyncpg]")

from sqlalchemy import URL, create_engine  # noqa: E402
from sqlalchemy.ext.asyncio import (  # noqa: E402
    AsyncSession,
    async_scoped_session,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, scoped_session, sessionmaker  # noqa: E402


def url(dsn: str, driver: str) -> URL:
    """`dsn` (libpq's key=value or URL form) as a SQLAlchemy URL for `driver`."""
    params = conninfo.conninfo_to_dict(dsn)
    return URL.create(
        driver,
        username=str(params["user"]) if "user" in params else None,
        password=str(params["password"]) if "password" in params else None,
        host=str(params.get("host", "127.0.0.1")),
        port=int(params["port"]) if "port" in params else None,
        database=str(params["dbname"]),
    )


def asyncpg_dsn(dsn: str) -> str:
    return url(dsn, "postgresql").render_as_string(hide_password=False)


# Given a layer's writer, does something through it (an async layer's returns an awaitable).
Write = Callable[[Any], Any]


@attrs.frozen
class SyncLayer:
    name: str
    open: Callable[[str], Any]  # dsn -> context manager yielding (writer, commit, rollback)

    async def run(self, dsn: str, write: Write, *, commit: bool) -> Any:
        with self.open(dsn) as (writer, do_commit, do_rollback):
            result = write(writer)
            (do_commit if commit else do_rollback)()
        return result

    async def enqueue(
        self, dsn: str, events: list[NewEvent], *, commit: bool, schema: str = "relay"
    ) -> list[int]:
        """`relay.enqueue_many` through this layer, then commit or roll back."""
        ids: list[int] = await self.run(
            dsn, lambda w: enqueue_many(w, events, schema=schema), commit=commit
        )
        return ids


@attrs.frozen
class AsyncLayer:
    name: str
    open: Callable[[str], Any]  # dsn -> async context manager yielding (writer, commit, rollback)

    async def run(self, dsn: str, write: Write, *, commit: bool) -> Any:
        async def in_asyncio() -> Any:
            async with self.open(dsn) as (writer, do_commit, do_rollback):
                result = await write(writer)
                await (do_commit if commit else do_rollback)()
            return result

        async with asyncio_loop():
            return await aio_as_trio(in_asyncio)()

    async def enqueue(
        self, dsn: str, events: list[NewEvent], *, commit: bool, schema: str = "relay"
    ) -> list[int]:
        """`relay.enqueue_many_async` through this layer, then commit or roll back."""
        ids: list[int] = await self.run(
            dsn, lambda w: enqueue_many_async(w, events, schema=schema), commit=commit
        )
        return ids


@contextmanager
def _psycopg(dsn: str) -> Iterator[Any]:
    with psycopg.connect(dsn) as conn:
        yield conn, conn.commit, conn.rollback


@contextmanager
def _sa_session(dsn: str) -> Iterator[Any]:
    engine = create_engine(url(dsn, "postgresql+psycopg"))
    try:
        with Session(engine) as session:
            yield session, session.commit, session.rollback
    finally:
        engine.dispose()


@contextmanager
def _sa_scoped_session(dsn: str) -> Iterator[Any]:
    engine = create_engine(url(dsn, "postgresql+psycopg"))
    scoped = scoped_session(sessionmaker(engine))
    try:
        yield scoped, scoped.commit, scoped.rollback
    finally:
        scoped.remove()
        engine.dispose()


@contextmanager
def _sa_connection(dsn: str) -> Iterator[Any]:
    engine = create_engine(url(dsn, "postgresql+psycopg"))
    try:
        with engine.connect() as connection:
            yield connection, connection.commit, connection.rollback
    finally:
        engine.dispose()


@asynccontextmanager
async def _psycopg_async(dsn: str) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        yield conn, conn.commit, conn.rollback


def _sa_async_session(driver: str) -> Callable[[str], Any]:
    @asynccontextmanager
    async def open(dsn: str) -> AsyncIterator[Any]:
        engine = create_async_engine(url(dsn, driver))
        try:
            async with AsyncSession(engine) as session:
                yield session, session.commit, session.rollback
        finally:
            await engine.dispose()

    return open


def _sa_async_connection(driver: str) -> Callable[[str], Any]:
    @asynccontextmanager
    async def open(dsn: str) -> AsyncIterator[Any]:
        engine = create_async_engine(url(dsn, driver))
        try:
            async with engine.connect() as connection:
                yield connection, connection.commit, connection.rollback
        finally:
            await engine.dispose()

    return open


@asynccontextmanager
async def _sa_async_scoped_session(dsn: str) -> AsyncIterator[Any]:
    engine = create_async_engine(url(dsn, "postgresql+asyncpg"))
    scoped = async_scoped_session(async_sessionmaker(engine), scopefunc=lambda: "test")
    try:
        yield scoped, scoped.commit, scoped.rollback
    finally:
        await scoped.remove()
        await engine.dispose()


@asynccontextmanager
async def _asyncpg(dsn: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(asyncpg_dsn(dsn))
    try:
        transaction = conn.transaction()
        await transaction.start()
        yield conn, transaction.commit, transaction.rollback
    finally:
        await conn.close()


@asynccontextmanager
async def _asyncpg_pool(dsn: str) -> AsyncIterator[Any]:
    async with (
        asyncpg.create_pool(asyncpg_dsn(dsn), min_size=1, max_size=1) as pool,
        pool.acquire() as conn,
    ):
        transaction = conn.transaction()
        await transaction.start()
        yield conn, transaction.commit, transaction.rollback


SYNC_LAYERS = [
    SyncLayer("psycopg", _psycopg),
    SyncLayer("sqlalchemy-session-psycopg", _sa_session),
    SyncLayer("sqlalchemy-scoped-session-psycopg", _sa_scoped_session),
    SyncLayer("sqlalchemy-connection-psycopg", _sa_connection),
]
ASYNC_LAYERS = [
    AsyncLayer("psycopg-async", _psycopg_async),
    AsyncLayer("sqlalchemy-asyncsession-psycopg", _sa_async_session("postgresql+psycopg")),
    AsyncLayer("sqlalchemy-asyncsession-asyncpg", _sa_async_session("postgresql+asyncpg")),
    AsyncLayer("sqlalchemy-asyncconnection-psycopg", _sa_async_connection("postgresql+psycopg")),
    AsyncLayer("sqlalchemy-asyncconnection-asyncpg", _sa_async_connection("postgresql+asyncpg")),
    AsyncLayer("sqlalchemy-async-scoped-session-asyncpg", _sa_async_scoped_session),
    AsyncLayer("asyncpg", _asyncpg),
    AsyncLayer("asyncpg-pool", _asyncpg_pool),
]
LAYERS: list[SyncLayer | AsyncLayer] = [*SYNC_LAYERS, *ASYNC_LAYERS]


def outbox(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, topic, key, payload, headers FROM relay.outbox ORDER BY id"
        ).fetchall()


async def in_asyncio(fn: Any) -> Any:
    with trio.fail_after(30):
        async with asyncio_loop():
            return await aio_as_trio(fn)()
