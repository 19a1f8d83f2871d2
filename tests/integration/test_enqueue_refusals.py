"""What `relay.enqueue` refuses, in one line each, having written nothing: something that is no
connection (`TypeError`), and a connection that is closed, would commit on its own, or sits in a
failed transaction (`relay.TransactionRequired`), for every layer where that can happen."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from relay import TransactionRequired, enqueue, enqueue_async

from .enqueue_layers import asyncpg, asyncpg_dsn, in_asyncio, outbox, url

sqlalchemy = pytest.importorskip("sqlalchemy", reason="needs relay-outbox[sqlalchemy]")
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

SYNC_KINDS = "pass a psycopg Connection, or a SQLAlchemy Session or Connection"
ASYNC_KINDS = "pass a psycopg AsyncConnection, a SQLAlchemy AsyncSession or AsyncConnection"


# Not a writer at all: one TypeError, one line, naming the function, what it got and what it takes,
# and never the value itself (a DSN may carry a password).
NOT_WRITERS = {
    "none": None,
    "dsn": "postgresql://app:s3cret-pw@127.0.0.1/app",
    "huge-dsn": "host=127.0.0.1 password=s3cret-pw " + "x" * 1_000_000,
    "bytes": b"\xff\x00s3cret-pw",
    "int": 42,
    "object": object(),
    "list": ["s3cret-pw"],
    "dict": {"password": "s3cret-pw"},
}


@pytest.mark.parametrize("target", NOT_WRITERS.values(), ids=NOT_WRITERS.keys())
async def test_something_that_is_no_connection_is_refused_in_one_line(target: Any) -> None:
    with pytest.raises(TypeError, match=r"^relay\.enqueue cannot write through an? \w+: ") as sync:
        enqueue(target, "t", 1)
    with pytest.raises(
        TypeError, match=r"^relay\.enqueue_async cannot write through an? \w+: "
    ) as aio:
        await enqueue_async(target, "t", 1)
    assert SYNC_KINDS in str(sync.value) and ASYNC_KINDS in str(aio.value)
    for message in (str(sync.value), str(aio.value)):
        assert "\n" not in message and "s3cret" not in message and len(message) < 300


def test_an_engine_or_session_factory_is_refused_pointing_at_a_session(database_dsn: str) -> None:
    engine = create_engine(url(database_dsn, "postgresql+psycopg"))
    for target in (engine, sessionmaker(engine)):
        with pytest.raises(TypeError, match=r"holds no transaction of yours: pass a session\)$"):
            enqueue(target, "t", 1)  # type: ignore[arg-type]
    engine.dispose()
    assert outbox(database_dsn) == []


def test_a_psycopg_cursor_is_refused_naming_what_is_taken(database_dsn: str) -> None:
    with psycopg.connect(database_dsn) as conn, conn.cursor() as cursor:
        with pytest.raises(TypeError) as caught:
            enqueue(cursor, "t", 1)  # type: ignore[arg-type]
    assert str(caught.value) == f"relay.enqueue cannot write through a psycopg Cursor: {SYNC_KINDS}"


async def test_an_asyncpg_pool_or_an_async_engine_is_refused_in_one_line(
    database_dsn: str,
) -> None:
    async def attempt() -> list[str]:
        engine = create_async_engine(url(database_dsn, "postgresql+asyncpg"))
        messages = []
        async with asyncpg.create_pool(asyncpg_dsn(database_dsn), min_size=1, max_size=1) as pool:
            for target in (pool, engine):
                with pytest.raises(TypeError) as caught:
                    await enqueue_async(target, "t", 1)
                messages.append(str(caught.value))
        await engine.dispose()
        return messages

    pool_message, engine_message = await in_asyncio(attempt)
    assert pool_message.startswith(
        f"relay.enqueue_async cannot write through an asyncpg Pool: {ASYNC_KINDS}"
    )
    assert pool_message.endswith(
        "(a pool holds no transaction of yours: pass a connection taken from it)"
    )
    assert engine_message.startswith(
        f"relay.enqueue_async cannot write through a sqlalchemy AsyncEngine: {ASYNC_KINDS}"
    )
    assert engine_message.endswith("holds no transaction of yours: pass a session)")
    assert outbox(database_dsn) == []


async def test_an_async_writer_in_the_blocking_function_names_the_async_one(
    database_dsn: str,
) -> None:
    engine = create_async_engine(url(database_dsn, "postgresql+asyncpg"))
    with pytest.raises(
        TypeError, match=r"sqlalchemy AsyncSession: it is async, await relay\.enqueue_async"
    ):
        enqueue(AsyncSession(engine), "t", 1)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"sqlalchemy Session: it is blocking, call relay\.enqueue\("
    ):
        await enqueue_async(Session(), "t", 1)  # type: ignore[arg-type]
    with psycopg.connect(database_dsn) as conn:
        with pytest.raises(TypeError, match=r"psycopg Connection: it is blocking"):
            await enqueue_async(conn, "t", 1)  # type: ignore[arg-type]


# Closed, outside a transaction, in a failed one: relay.TransactionRequired, nothing written.


def test_a_closed_psycopg_connection_is_refused(database_dsn: str) -> None:
    conn = psycopg.connect(database_dsn)
    conn.close()
    with pytest.raises(TransactionRequired, match=r"psycopg Connection: the connection is closed$"):
        enqueue(conn, "t", 1)


def test_a_psycopg_connection_in_autocommit_is_refused_outside_a_transaction(
    database_dsn: str,
) -> None:
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        with pytest.raises(TransactionRequired, match=r"autocommit mode outside a transaction"):
            enqueue(conn, "t", 1)
        assert outbox(database_dsn) == []
        with conn.transaction():  # an explicit transaction is the caller's: fine
            id = enqueue(conn, "t", 2)
    assert outbox(database_dsn) == [(id, "t", None, 2, {})]


def test_a_psycopg_connection_in_a_failed_transaction_is_refused(database_dsn: str) -> None:
    with psycopg.connect(database_dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        with pytest.raises(TransactionRequired, match=r"failed earlier: roll it back first$"):
            enqueue(conn, "t", 1)


def test_a_closed_sqlalchemy_connection_is_refused(database_dsn: str) -> None:
    engine = create_engine(url(database_dsn, "postgresql+psycopg"))
    connection = engine.connect()
    connection.close()
    with pytest.raises(
        TransactionRequired, match=r"SQLAlchemy Connection: the connection is closed$"
    ):
        enqueue(connection, "t", 1)
    engine.dispose()


def test_a_sqlalchemy_engine_in_autocommit_is_refused(database_dsn: str) -> None:
    engine = create_engine(url(database_dsn, "postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with Session(engine) as session:
        with pytest.raises(TransactionRequired, match=r"AUTOCOMMIT isolation"):
            enqueue(session, "t", 1)
        session.commit()
    engine.dispose()
    assert outbox(database_dsn) == []


def test_a_sqlalchemy_connection_in_a_failed_transaction_is_refused(database_dsn: str) -> None:
    engine = create_engine(url(database_dsn, "postgresql+psycopg"))
    with engine.connect() as connection:
        with pytest.raises(sqlalchemy.exc.DataError):
            connection.execute(text("SELECT 1/0"))
        with pytest.raises(TransactionRequired, match=r"failed earlier: roll it back first$"):
            enqueue(connection, "t", 1)
    engine.dispose()


async def test_a_closed_sqlalchemy_async_connection_is_refused(database_dsn: str) -> None:
    async def attempt() -> None:
        engine = create_async_engine(url(database_dsn, "postgresql+asyncpg"))
        connection = await engine.connect()
        await connection.close()
        try:
            with pytest.raises(
                TransactionRequired, match=r"AsyncConnection: the connection is closed$"
            ):
                await enqueue_async(connection, "t", 1)
        finally:
            await engine.dispose()

    await in_asyncio(attempt)


async def test_a_sqlalchemy_async_engine_in_autocommit_is_refused(database_dsn: str) -> None:
    async def attempt() -> None:
        engine = create_async_engine(
            url(database_dsn, "postgresql+asyncpg"), isolation_level="AUTOCOMMIT"
        )
        try:
            async with AsyncSession(engine) as session:
                with pytest.raises(TransactionRequired, match=r"AUTOCOMMIT isolation"):
                    await enqueue_async(session, "t", 1)
        finally:
            await engine.dispose()

    await in_asyncio(attempt)
    assert outbox(database_dsn) == []


async def test_an_asyncpg_connection_is_refused_outside_a_transaction_and_when_closed(
    database_dsn: str,
) -> None:
    async def attempt() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(database_dsn))
        with pytest.raises(TransactionRequired, match=r"no transaction is open, and asyncpg would"):
            await enqueue_async(conn, "t", 1)
        await conn.close()
        with pytest.raises(
            TransactionRequired, match=r"asyncpg Connection: the connection is closed$"
        ):
            await enqueue_async(conn, "t", 1)

    await in_asyncio(attempt)
    assert outbox(database_dsn) == []


async def test_an_asyncpg_pool_connection_given_back_is_refused(database_dsn: str) -> None:
    async def attempt() -> None:
        async with asyncpg.create_pool(asyncpg_dsn(database_dsn), min_size=1, max_size=1) as pool:
            async with pool.acquire() as conn:
                pass
            with pytest.raises(TransactionRequired, match=r"released back to the pool"):
                await enqueue_async(conn, "t", 1)

    await in_asyncio(attempt)


async def test_a_closed_psycopg_async_connection_is_refused(database_dsn: str) -> None:
    async def attempt() -> None:
        conn = await psycopg.AsyncConnection.connect(database_dsn)
        await conn.close()
        with pytest.raises(
            TransactionRequired, match=r"AsyncConnection: the connection is closed$"
        ):
            await enqueue_async(conn, "t", 1)

    await in_asyncio(attempt)
