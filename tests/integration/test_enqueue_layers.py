"""`relay.enqueue` through every usual database layer: psycopg, SQLAlchemy (sync and async, on
psycopg and asyncpg) and asyncpg, each in the caller's transaction, against a real server."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

import relay
from relay import NewEvent, enqueue_many
from relay.aio import asyncio_loop
from relay.postgres import migrate
from relay.testing import RecordingSink

from .enqueue_layers import LAYERS, AsyncLayer, SyncLayer, outbox
from .test_bad_input import BAD_EVENTS

Layer = SyncLayer | AsyncLayer
by_name = pytest.mark.parametrize("layer", LAYERS, ids=[layer.name for layer in LAYERS])

EVENTS = [
    NewEvent("orders.created", {"id": 1, "note": 'ünïcødé, "quotes", a,b;c'}, key="order-1"),
    NewEvent("orders.paid", [1, 2.5, None, True], headers={"traceparent": "00-abc-def-01"}),
    NewEvent("audit", "just a string", key="order-1", headers={"n": {"nested": [1]}}),
]


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


# What array literals, JSON and quoting could mangle, and a payload of several megabytes.
AWKWARD = [
    NewEvent("NULL", "NULL", key="NULL"),
    NewEvent("{a,b}", {"{": "}"}, key='{"x", y}', headers={"h": "a,b"}),
    NewEvent('say "hi"', 'quo"te', key="back\\slash\\"),
    NewEvent(" spaced ", "", key=""),
    NewEvent("ünï.😀", {}, key="line\nbreak\ttab"),
    NewEvent("t", [], key="$1 :topics %s %(x)s ?"),
    NewEvent("big", "x" * 5_000_000, key="big"),
]


@by_name
async def test_awkward_values_come_back_exactly(layer: Layer, database_dsn: str) -> None:
    with trio.fail_after(60):
        ids = await layer.enqueue(database_dsn, AWKWARD, commit=True)
    assert outbox(database_dsn) == [
        (id, e.topic, e.key, e.payload, dict(e.headers or {}))
        for id, e in zip(ids, AWKWARD, strict=True)
    ]


@by_name
async def test_no_events_write_nothing(layer: Layer, database_dsn: str) -> None:
    with trio.fail_after(30):
        assert await layer.enqueue(database_dsn, [], commit=True) == []
    assert outbox(database_dsn) == []


@by_name
async def test_an_outbox_in_another_schema_is_written_there(
    layer: Layer, empty_database_dsn: str
) -> None:
    """The schema's name is quoted on every path: unquoted, PostgreSQL would fold its case."""
    schema = "Shop_Out"
    migrate(relay.Config(dsn=empty_database_dsn, schema=schema))
    with trio.fail_after(30):
        ids = await layer.enqueue(empty_database_dsn, EVENTS[:1], commit=True, schema=schema)
    with psycopg.connect(empty_database_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT id, topic FROM {}").format(sql.Identifier(schema, "outbox"))
        ).fetchall()
    assert rows == [(ids[0], EVENTS[0].topic)]


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

        async def write(writer: Any) -> None:
            for event, error in BAD_EVENTS.values():
                with pytest.raises(error, match=r"^event 1\b") as caught:
                    await relay.enqueue_many_async(writer, [NewEvent("fine", 1), event])
                refused.append(str(caught.value))

    with trio.fail_after(30):
        await layer.run(database_dsn, write, commit=True)
    assert len(refused) == len(BAD_EVENTS)
    assert not any("\n" in message for message in refused)
    assert outbox(database_dsn) == []


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
    # Events of different keys: two batches in flight may deliver them in either order.
    delivered = sorted(sink.events, key=lambda e: e.id)
    assert [(e.id, e.topic, e.key, e.payload, dict(e.headers)) for e in delivered] == written(ids)
    assert outbox(database_dsn) == []
