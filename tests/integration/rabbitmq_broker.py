"""An exchange and a queue of a test's own on the RabbitMQ server on 127.0.0.1:5672, and what the
RabbitMQ sink tests share: events to publish or insert, waiting, reading the queue back.

The server is shared: each test declares an exchange and an exclusive queue of its own (unique
names), reads back what reached the queue, and deletes both.
"""

from __future__ import annotations

import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import aio_pika
import attrs
import psycopg
import trio
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

from relay import (
    OutboxEvent,
)
from relay.aio import aio_as_trio, asyncio_loop
from relay.sinks.rabbitmq import RabbitMQSink

from ..conftest import pending_count

BROKER_PORT = 5672
GUARD = 60  # seconds any one test may take before it counts as hung
BIG_GUARD = 120  # for 5,000 events on a shared 2-core machine


def broker_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", BROKER_PORT), timeout=1):
            return True
    except OSError:
        return False


@attrs.frozen
class Received:
    """One message read back from the test's queue."""

    id: int
    key: str | None
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    message: aio_pika.abc.AbstractIncomingMessage = attrs.field(repr=False)


@attrs.define(eq=False)
class Broker:
    """An exchange and an exclusive queue bound to it, on a connection of the test's own."""

    name: str
    connection: AbstractConnection
    channel: AbstractChannel
    exchange: AbstractExchange
    queue: AbstractQueue

    def url(self, port: int = BROKER_PORT, **params: str) -> str:
        query = urlencode({"exchange": self.name, **params}, safe="{}")
        return f"amqp://guest:guest@127.0.0.1:{port}/?{query}"

    async def messages(self) -> list[Received]:
        """Every message in the queue, in the queue's order, taken off it."""
        return await aio_as_trio(self._drain)()

    async def _drain(self) -> list[Received]:
        received: list[Received] = []
        # Every confirmed message is in the queue by now: count them, then consume that many
        # (a consumer, not basic.get: thousands of round trips are slow on the bridge).
        declared = await self.queue.declare()
        if not declared.message_count:
            return received
        async with self.queue.iterator(no_ack=True) as messages:
            async for message in messages:
                received.append(_received(message))
                if len(received) == declared.message_count:
                    break
        return received

    async def exchange_exists(self, name: str) -> bool:
        return await aio_as_trio(self._exchange_exists)(name)

    async def _exchange_exists(self, name: str) -> bool:
        channel = await self.connection.channel()  # a failed passive declare closes it
        try:
            await channel.get_exchange(name, ensure=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        await channel.close()
        return True

    async def delete_exchange(self, name: str) -> None:
        await aio_as_trio(self.channel.exchange_delete)(name)


def _received(message: aio_pika.abc.AbstractIncomingMessage) -> Received:
    assert message.message_id is not None
    headers = dict(message.headers)
    key = headers.get("relay-key")
    assert key is None or isinstance(key, str)
    return Received(
        id=int(message.message_id),
        key=key,
        routing_key=message.routing_key or "",
        body=message.body,
        headers=headers,
        message=message,
    )


async def _set_up(name: str, binding: str, durable: bool, source: str | None) -> Broker:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}/")
    channel = await connection.channel()
    if source is not None:
        exchange = await channel.get_exchange(source)
    else:
        # auto_delete: should a test die before its clean-up, the broker drops the exchange with
        # the exclusive queue. The durable one matches what `declare=topic` asks for.
        exchange = await channel.declare_exchange(
            name, "topic", durable=durable, auto_delete=not durable
        )
    queue = await channel.declare_queue(name, exclusive=True)
    await queue.bind(exchange, binding)
    return Broker(name, connection, channel, exchange, queue)


async def _tear_down(broker: Broker) -> None:
    try:
        if broker.exchange.name == broker.name:  # ours, not a `source` we only bound to
            await broker.channel.exchange_delete(broker.name)
        await broker.queue.delete(if_unused=False, if_empty=False)
    finally:
        await broker.connection.close()


@asynccontextmanager
async def open_broker(
    binding: str = "#", *, durable: bool = False, source: str | None = None
) -> AsyncIterator[Broker]:
    """A fresh exchange (or the existing `source`) and a fresh queue bound to it, for this test;
    what was created is deleted on the way out."""
    name = f"relay-test-{uuid.uuid4().hex}"
    async with asyncio_loop():
        broker = await aio_as_trio(_set_up)(name, binding, durable, source)
        try:
            yield broker
        finally:
            with trio.move_on_after(5, shield=True):
                await aio_as_trio(_tear_down)(broker)


def insert(dsn: str, count: int, first: int = 1) -> None:
    """`count` events over 50 keys, every 23rd without a key, each with a header of its own."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers)"
            " SELECT 'orders.created', CASE WHEN g %% 23 = 0 THEN NULL ELSE 'k' || g %% 50 END,"
            " jsonb_build_object('n', g, 'note', 'café ' || g, 'total', g * 1.50),"
            " jsonb_build_object('trace', 't-' || g, 'n', g)"
            " FROM generate_series(%s::int, %s::int) g",
            [first, first + count - 1],
        )


def written(dsn: str) -> dict[int, tuple[str | None, bytes, dict[str, Any]]]:
    """Every pending event: its key, its payload's bytes as PostgreSQL sends them, its headers."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, key, payload::text, headers FROM relay.outbox").fetchall()
    return {id: (key, payload.encode(), headers) for id, key, payload, headers in rows}


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll `condition`: the relay's counters and the database cannot signal us."""
    while not condition():  # noqa: ASYNC110 (bounded by each test's guard)
        await trio.sleep(0.02)


async def wait_drained(dsn: str) -> None:
    """Poll the outbox (in a thread: psycopg's sync API blocks) until it is empty."""
    while await trio.to_thread.run_sync(pending_count, dsn):  # noqa: ASYNC110 (the guard)
        await trio.sleep(0.05)


def per_key_first_seen(received: list[Received]) -> dict[str, list[int]]:
    """Per key, the ids in the queue's order, each at its first occurrence."""
    seen: set[int] = set()
    per_key: dict[str, list[int]] = defaultdict(list)
    for message in received:
        if message.id not in seen and message.key is not None:
            seen.add(message.id)
            per_key[message.key].append(message.id)
    return per_key


def ev(
    id: int, topic: str = "orders.created", key: str | None = "k", **headers: Any
) -> OutboxEvent:
    return OutboxEvent(id=id, topic=topic, key=key, payload_json=b'{"n": %d}' % id, headers=headers)


async def deliver(sink: RabbitMQSink, *events: OutboxEvent) -> None:
    async with sink:
        await sink.deliver(events)
