"""The writer's API, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio
from psycopg.rows import dict_row

# psycopg binds asyncio's loop lookup when it is imported; the adapter points it at trio-asyncio's
# (see relay/postgres/outbox.py). Imported here so this module passes when it runs alone.
import relay.postgres.outbox  # noqa: F401
from relay import NewEvent, enqueue, enqueue_async, enqueue_many, enqueue_many_async
from relay.aio import aio_as_trio, asyncio_loop


def pending(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, topic, key, payload, headers FROM relay.outbox ORDER BY id"
        ).fetchall()


def test_enqueue_writes_one_row_in_the_callers_transaction(database_dsn: str) -> None:
    with psycopg.connect(database_dsn) as conn:
        id = enqueue(conn, "orders.created", {"id": 1}, key="order-1", headers={"trace": "t"})
        assert pending(database_dsn) == []  # not committed yet: invisible
    assert pending(database_dsn) == [(id, "orders.created", "order-1", {"id": 1}, {"trace": "t"})]


def test_an_enqueue_in_a_rolled_back_transaction_leaves_nothing(database_dsn: str) -> None:
    with psycopg.connect(database_dsn) as conn:
        enqueue(conn, "orders.created", {"id": 1})
        conn.rollback()
    assert pending(database_dsn) == []


def test_enqueue_many_writes_all_rows_in_one_statement_and_returns_ids_in_order(
    database_dsn: str,
) -> None:
    events = [NewEvent("t", {"n": n}, key=f"k{n % 3}") for n in range(25_000)]
    with psycopg.connect(database_dsn) as conn:
        ids = enqueue_many(conn, events)
    rows = pending(database_dsn)
    assert ids == [row[0] for row in rows]
    assert [row[3]["n"] for row in rows] == list(range(25_000))


def test_enqueue_rejects_an_empty_topic(database_dsn: str) -> None:
    with psycopg.connect(database_dsn) as conn, pytest.raises(ValueError, match="topic"):
        enqueue(conn, "", {"id": 1})


async def test_enqueue_async_writes_in_the_callers_transaction(database_dsn: str) -> None:
    async def write() -> list[int]:
        async with await psycopg.AsyncConnection.connect(database_dsn) as conn:
            first = await enqueue_async(conn, "a", [1, 2], key="k")
            rest = await enqueue_many_async(conn, [NewEvent("b", None), NewEvent("c", "x")])
            return [first, *rest]

    with trio.fail_after(30):
        async with asyncio_loop():
            ids = await aio_as_trio(write)()
    assert [(row[0], row[1], row[3]) for row in pending(database_dsn)] == [
        (ids[0], "a", [1, 2]),
        (ids[1], "b", None),
        (ids[2], "c", "x"),
    ]


def test_enqueue_works_on_a_connection_that_returns_dicts(database_dsn: str) -> None:
    with psycopg.connect(database_dsn, row_factory=dict_row) as conn:
        first = enqueue(conn, "a", {"n": 1})
        rest = enqueue_many(conn, [NewEvent("b", 2), NewEvent("c", 3)])
    assert [row[0] for row in pending(database_dsn)] == [first, *rest]


async def test_enqueue_async_works_on_a_connection_that_returns_dicts(database_dsn: str) -> None:
    async def write() -> int:
        async with await psycopg.AsyncConnection.connect(
            database_dsn, row_factory=dict_row
        ) as conn:
            return await enqueue_async(conn, "a", {"n": 1})

    with trio.fail_after(30):
        async with asyncio_loop():
            id = await aio_as_trio(write)()
    assert [row[0] for row in pending(database_dsn)] == [id]


@pytest.mark.parametrize(
    ("event", "error", "words"),
    [
        (NewEvent("t", {"when": object()}), TypeError, "payload is not valid JSON"),
        (NewEvent("t", {"n": 1}, headers={"h": {1, 2}}), TypeError, "headers is not valid JSON"),
        (NewEvent("t", float("nan")), ValueError, "payload is not valid JSON"),
        (NewEvent("t", {}, headers=[1, 2]), TypeError, "headers must be a mapping"),  # type: ignore[arg-type]
    ],
)
def test_a_payload_or_headers_json_cannot_hold_name_the_event(
    database_dsn: str, event: NewEvent, error: type[Exception], words: str
) -> None:
    events = [NewEvent("fine", 1), event]
    with psycopg.connect(database_dsn) as conn:
        with pytest.raises(error, match=rf"event 1 \(topic 't'\): {words}"):
            enqueue_many(conn, events)
        conn.rollback()
    assert pending(database_dsn) == []
