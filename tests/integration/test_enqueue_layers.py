"""`relay.enqueue` through every usual database layer: psycopg, SQLAlchemy (sync and async, on
psycopg and asyncpg) and asyncpg, each in the caller's transaction, against a real server."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio

import relay
from relay import NewEvent, TransactionRequired, enqueue, enqueue_async, enqueue_many
from relay.aio import aio_as_trio, asyncio_loop
from relay.testing import RecordingSink

from .enqueue_layers import (
    LAYERS,
    AsyncLayer,
    SyncLayer,
    asyncpg,
    asyncpg_dsn,
    url,
)
from .test_bad_input import BAD_EVENTS

sqlalchemy = pytest.importorskip("sqlalchemy")
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

Layer = SyncLayer | AsyncLayer
by_name = pytest.mark.parametrize("layer", LAYERS, ids=[layer.name for layer in LAYERS])

EVENTS = [
    NewEvent("orders.created", {"id": 1, "note": 'ünïcødé, "quotes", a,b;c'}, key="order-1"),
    NewEvent("orders.paid", [1, 2.5, None, True], headers={"traceparent": "00-abc-def-01"}),
    NewEvent("audit", "just a string", key="order-1", headers={"n": {"nested": [1]}}),
]


def outbox(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, topic, key, payload, headers FROM relay.outbox ORDER BY id"
        ).fetchall()


def written(ids: list[int]) -> list[tuple[Any, ...]]:
    return [
        (id, event.topic, event.key, event.payload, dict(event.headers or {}))
        for id, event in zip(ids, EVENTS, strict=True)
    ]


def seen_from_outside(layer: Layer, dsn: str, seen: list[int]) -> Any:
    """A write that enqueues `EVENTS`, then notes how many rows another connection sees."""
    if isinstance(layer, SyncLayer):

        def write(writer: Any) -> list[int]:
            ids = enqueue_many(writer, EVENTS)
            seen.append(len(outbox(dsn)))
            return ids

        return write

    async def write_async(writer: Any) -> list[int]:
        ids = await relay.enqueue_many_async(writer, EVENTS)
        seen.append(len(outbox(dsn)))
        return ids

    return write_async


@by_name
async def test_a_committed_enqueue_is_in_the_outbox_and_wakes_a_listener(
    layer: Layer, database_dsn: str
) -> None:
    seen: list[int] = []
    with psycopg.connect(database_dsn, autocommit=True) as listener, trio.fail_after(30):
        listener.execute("LISTEN relay_outbox")
        ids = await layer.run(
            database_dsn, seen_from_outside(layer, database_dsn, seen), commit=True
        )
        assert len(list(listener.notifies(timeout=10, stop_after=1))) == 1
    assert seen == [0]  # before the commit, nobody else saw it: the caller's transaction
    assert outbox(database_dsn) == written(ids)
    assert ids == sorted(ids)


@by_name
async def test_a_rolled_back_enqueue_leaves_nothing(layer: Layer, database_dsn: str) -> None:
    with trio.fail_after(30):
        ids = await layer.enqueue(database_dsn, EVENTS, commit=False)
    assert len(ids) == len(EVENTS)
    assert outbox(database_dsn) == []


@by_name
async def test_many_events_go_in_order_across_statements(layer: Layer, database_dsn: str) -> None:
    """Past 10,000 events a call takes several statements; ids still come back in order."""
    events = [NewEvent("t", {"n": n}, key=f"k{n % 7}") for n in range(10_001)]
    with trio.fail_after(60):
        ids = await layer.enqueue(database_dsn, events, commit=True)
    rows = outbox(database_dsn)
    assert ids == [row[0] for row in rows]
    assert [row[3]["n"] for row in rows] == list(range(10_001))


@by_name
async def test_bad_events_are_refused_naming_them_and_nothing_is_written(
    layer: Layer, database_dsn: str
) -> None:
    refused: list[str] = []

    def attempt(error: type[Exception], call: Any) -> Any:
        with pytest.raises(error, match=r"^event 1\b") as caught:
            call()
        refused.append(str(caught.value))

    if isinstance(layer, SyncLayer):

        def write(writer: Any) -> None:
            for event, error in BAD_EVENTS.values():
                attempt(
                    error, lambda event=event: enqueue_many(writer, [NewEvent("fine", 1), event])
                )

    else:

        async def write(writer: Any) -> None:  # type: ignore[misc]
            for event, error in BAD_EVENTS.values():
                with pytest.raises(error, match=r"^event 1\b") as caught:
                    await relay.enqueue_many_async(writer, [NewEvent("fine", 1), event])
                refused.append(str(caught.value))

    with trio.fail_after(30):
        await layer.run(database_dsn, write, commit=True)
    assert len(refused) == len(BAD_EVENTS)
    assert not any("\n" in message for message in refused)
    assert outbox(database_dsn) == []


# Not a writer at all: one TypeError, one line, naming the function, what it got and what it takes.
NOT_WRITERS = {
    "none": None,
    "dsn": "postgresql://postgres@127.0.0.1/app",
    "bytes": b"\xff\x00",
    "int": 42,
    "object": object(),
    "list": [],
}


@pytest.mark.parametrize("target", NOT_WRITERS.values(), ids=NOT_WRITERS.keys())
async def test_something_that_is_no_connection_is_refused_in_one_line(target: Any) -> None:
    with pytest.raises(
        TypeError, match=r"^relay\.enqueue cannot write through a .*: pass a psycopg"
    ):
        enqueue(target, "t", 1)
    with pytest.raises(
        TypeError,
        match=r"^relay\.enqueue_async cannot write through .*: pass a psycopg AsyncConnection",
    ):
        await enqueue_async(target, "t", 1)


def test_an_engine_or_session_factory_is_refused_pointing_at_a_session(database_dsn: str) -> None:
    engine = create_engine(url(database_dsn, "postgresql+psycopg"))
    for target in (engine, sessionmaker(engine)):
        with pytest.raises(TypeError, match=r"holds no transaction of yours: pass a session\)$"):
            enqueue(target, "t", 1)  # type: ignore[arg-type]
    engine.dispose()
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


async def in_asyncio(fn: Any) -> Any:
    with trio.fail_after(30):
        async with asyncio_loop():
            return await aio_as_trio(fn)()


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


# End to end: written through a layer, delivered by a running relay.

E2E = [
    layer
    for layer in LAYERS
    if layer.name
    in (
        "sqlalchemy-session-psycopg",
        "sqlalchemy-asyncsession-asyncpg",
        "sqlalchemy-asyncsession-psycopg",
        "asyncpg",
    )
]


@pytest.mark.parametrize("layer", E2E, ids=[layer.name for layer in E2E])
async def test_an_event_enqueued_through_the_layer_is_delivered_by_the_relay(
    layer: Layer, database_dsn: str
) -> None:
    sink = RecordingSink()
    with trio.fail_after(60):
        async with asyncio_loop(), relay.open_relay(relay.Config(dsn=database_dsn), sink):
            ids = await layer.enqueue(database_dsn, EVENTS, commit=True)
            await sink.wait_for(len(EVENTS))
    assert [(e.id, e.topic, e.key, e.payload, dict(e.headers)) for e in sink.events] == written(ids)
    assert outbox(database_dsn) == []
