"""The RabbitMQ sink against the RabbitMQ server on 127.0.0.1:5672, on the real clock.

The server is shared: each test declares an exchange and an exclusive queue of its own (unique
names), reads back what reached the queue, and deletes both.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aio_pika
import attrs
import psycopg
import pytest
import trio
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

from relay import (
    Backoff,
    Config,
    OutboxEvent,
    PartialDelivery,
    SinkUnavailable,
    open_relay,
)
from relay.aio import aio_as_trio, asyncio_loop
from relay.ports import JsonObject
from relay.sinks import SinkOptions
from relay.sinks.rabbitmq import RabbitMQSink

from ..conftest import pending_count
from ..tcp_proxy import open_tcp_proxy

BROKER_PORT = 5672
GUARD = 60  # seconds any one test may take before it counts as hung
BIG_GUARD = 120  # for 5,000 events on a shared 2-core machine


def _broker_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", BROKER_PORT), timeout=1):
            return True
    except OSError:
        return False


if not _broker_answers():
    pytest.skip(f"no RabbitMQ server on 127.0.0.1:{BROKER_PORT}", allow_module_level=True)


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


async def test_5000_events_through_the_relay_arrive_once_each_in_key_order(
    database_dsn: str,
) -> None:
    insert(database_dsn, 5000)
    expected = written(database_dsn)
    with trio.fail_after(BIG_GUARD):
        async with open_broker() as broker:
            sink = RabbitMQSink(broker.url())
            async with open_relay(Config(dsn=database_dsn), sink) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 5000)
            received = await broker.messages()
    assert pending_count(database_dsn) == 0
    counts = Counter(message.id for message in received)
    assert counts.keys() == expected.keys()
    assert set(counts.values()) == {1}
    per_key = per_key_first_seen(received)
    assert len(per_key) == 50
    for key, ids in per_key.items():
        assert ids == sorted(ids), f"key {key} out of order"
    for message in received:
        written_key, payload, headers = expected[message.id]
        assert message.key == written_key
        assert message.body == payload
        assert message.headers == {
            **headers,
            "relay-topic": "orders.created",
            "relay-key": written_key,
            "relay-attempts": 0,
        }
        assert message.routing_key == "orders.created"


async def test_each_message_carries_the_payload_bytes_undecoded_and_the_event_properties(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(json, "loads", None)  # any decoding of a payload fails the test
    event = OutboxEvent(
        id=41,
        topic="orders.paid",
        key="o-1",
        payload_json=b'{ "spaced" :  1.50 }',
        headers={"trace": "abc", "tags": ["a", 1], "nested": {"x": None}},
        attempts=3,
    )
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            await deliver(RabbitMQSink(broker.url(routing_key="ev.{topic}.{key}")), event)
            (message,) = await broker.messages()
    assert message.body == b'{ "spaced" :  1.50 }'
    assert message.routing_key == "ev.orders.paid.o-1"
    assert message.headers == {
        "trace": "abc",
        "tags": ["a", 1],
        "nested": {"x": None},
        "relay-topic": "orders.paid",
        "relay-key": "o-1",
        "relay-attempts": 3,
    }
    properties = message.message
    assert properties.message_id == "41"
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert properties.app_id == "relay"
    assert properties.timestamp == event.created_at.replace(microsecond=0)


async def test_a_sink_used_alone_opens_an_asyncio_loop_of_its_own_each_time_it_is_entered() -> None:
    routing_key = f"relay-test-{uuid.uuid4().hex}"  # only our queue is bound for it
    sink = RabbitMQSink(
        f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}/?exchange=amq.topic&routing_key={routing_key}"
    )
    with trio.fail_after(GUARD):
        for id in (1, 2):
            async with sink:  # no asyncio loop runs here: the sink opens one
                async with open_broker(routing_key, source="amq.topic") as broker:
                    await sink.deliver([ev(id)])
                    assert [message.id for message in await broker.messages()] == [id]
        with trio.CancelScope() as cancelled:
            async with sink:
                cancelled.cancel()  # leaving while cancelled closes the connection and the loop
                await trio.sleep_forever()


async def test_the_default_exchange_routes_by_queue_name() -> None:
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            url = broker.url(exchange="", routing_key=broker.name)
            await deliver(RabbitMQSink(url), ev(1), ev(2))
            assert [message.id for message in await broker.messages()] == [1, 2]


async def test_a_batch_delivered_twice_arrives_twice_with_the_same_message_ids() -> None:
    """RabbitMQ does not deduplicate: consumers do, on `message_id`."""
    events = [ev(1, key="a"), ev(2, key="b"), ev(3, key="a")]
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            sink = RabbitMQSink(broker.url())
            async with sink:
                await sink.deliver(events)
                await sink.deliver(events)
            received = await broker.messages()
    assert Counter(message.id for message in received) == {1: 2, 2: 2, 3: 2}


async def test_an_unroutable_event_is_a_retryable_failure_that_holds_back_its_key() -> None:
    with trio.fail_after(GUARD):
        async with open_broker(binding="orders.#") as broker:
            with pytest.raises(PartialDelivery) as caught:
                await deliver(
                    RabbitMQSink(broker.url()),
                    ev(1, topic="billing.due", key="a"),
                    ev(2, key="a"),
                    ev(3, key="b"),
                )
            assert [message.id for message in await broker.messages()] == [3]
    assert caught.value.permanent == frozenset()
    assert caught.value.failures[1].startswith(
        f"unroutable: no queue bound to exchange '{broker.name}' for routing key 'billing.due'"
    )
    assert caught.value.failures[2] == "held behind event 1"
    assert caught.value.failures.keys() == {1, 2}


async def test_an_unroutable_event_in_the_middle_of_a_key_keeps_the_key_in_order_in_the_queue() -> (
    None
):
    """Event 2 is returned unroutable: event 3 of its key is not published before it; once a
    binding routes 2, the retry puts 2 and then 3 behind 1 in the queue."""
    events = [ev(1, key="a"), ev(2, topic="billing.due", key="a"), ev(3, key="a"), ev(4, key="b")]
    with trio.fail_after(GUARD):
        async with open_broker(binding="orders.#") as broker:
            sink = RabbitMQSink(broker.url())
            with pytest.raises(PartialDelivery) as caught:
                await deliver(sink, *events)
            assert caught.value.failures.keys() == {2, 3}
            assert caught.value.failures[3] == "held behind event 2"
            await aio_as_trio(broker.queue.bind)(broker.exchange, "billing.#")
            await deliver(sink, events[1], events[2])  # the retry
            received = await broker.messages()
    assert sorted(m.id for m in received) == [1, 2, 3, 4]
    assert per_key_first_seen(received) == {"a": [1, 2, 3], "b": [4]}


async def test_events_that_can_never_be_sent_are_permanent_failures() -> None:
    too_big = OutboxEvent(id=1, topic="orders.x", key="a", payload_json=b'"' + b"x" * 99 + b'"')
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            with pytest.raises(PartialDelivery) as caught:
                await deliver(
                    RabbitMQSink(broker.url(max_message_size="100")),
                    too_big,
                    ev(2, key="b", big=2**70),
                    ev(3, topic="t" * 256, key="c"),
                    ev(4, key="d"),
                )
            assert [message.id for message in await broker.messages()] == [4]
    assert caught.value.permanent == {1, 2, 3}
    assert "101 bytes, over max_message_size=100" in caught.value.failures[1]
    assert caught.value.failures[2].startswith("the headers cannot be sent as an AMQP table")
    assert "over 255 bytes" in caught.value.failures[3]


async def test_through_the_relay_an_event_amqp_cannot_carry_is_buried_and_the_rest_delivered(
    database_dsn: str,
) -> None:
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers) VALUES"
            " ('orders.created', 'k', '{\"n\": 1}', '{\"big\": 1180591620717411303424}'),"
            " ('orders.created', 'k', '{\"n\": 2}', '{}'),"
            " ('orders.created', 'j', '{\"n\": 3}', '{}')"
        )
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            # A poll far away: the event held behind the buried one is claimed again at once.
            config = Config(dsn=database_dsn, poll_interval=3600.0)
            async with open_relay(config, RabbitMQSink(broker.url())) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 2)
                assert handle.statistics().dead == 1
                assert handle.statistics().retried == 0
            assert sorted(message.id for message in await broker.messages()) == [2, 3]
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT id, last_error FROM relay.outbox_dead").fetchall()
    assert [id for id, _ in dead] == [1]
    assert dead[0][1].startswith("the headers cannot be sent as an AMQP table")


async def test_headers_that_are_a_json_array_fail_only_their_event_permanently() -> None:
    array = OutboxEvent(
        id=1, topic="orders.x", key="a", payload_json=b"{}", headers=JsonObject(b"[1, 2]")
    )
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            with pytest.raises(PartialDelivery) as caught:
                await deliver(
                    RabbitMQSink(broker.url()), array, *(ev(n, key=f"k{n}") for n in range(2, 7))
                )
            assert sorted(message.id for message in await broker.messages()) == [2, 3, 4, 5, 6]
    assert caught.value.failures.keys() == {1}
    assert caught.value.permanent == {1}
    assert caught.value.failures[1].startswith("the headers cannot be sent as an AMQP table")


async def test_through_the_relay_array_headers_bury_their_event_and_no_neighbour(
    database_dsn: str,
) -> None:
    """Before: the batch failed as a whole, good events on other keys went dead with
    `ExceptionGroup: Exceptions from Trio nursery`."""
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers) VALUES"
            " ('orders.created', 'bad', '{}', '[1, 2]')"
        )
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload)"
            " SELECT 'orders.created', 'k' || g, '{}' FROM generate_series(1, 5) g"
        )
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            config = Config(dsn=database_dsn, max_attempts=2, poll_interval=3600.0)
            async with open_relay(config, RabbitMQSink(broker.url())) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 5)
                await wait_until(lambda: handle.statistics().dead >= 1)
                assert (handle.statistics().dead, handle.statistics().retried) == (1, 0)
            assert sorted(message.id for message in await broker.messages()) == [2, 3, 4, 5, 6]
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT id, last_error FROM relay.outbox_dead").fetchall()
    assert [id for id, _ in dead] == [1]
    assert dead[0][1].startswith("the headers cannot be sent as an AMQP table: not a JSON object")


async def test_a_missing_exchange_makes_entering_fail_with_sink_unavailable() -> None:
    name = f"relay-test-missing-{uuid.uuid4().hex}"  # never declared
    sink = RabbitMQSink(f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}/?exchange={name}")
    with trio.fail_after(GUARD), pytest.raises(SinkUnavailable) as caught:
        async with sink:
            pass
    assert str(caught.value) == (
        f"exchange '{name}' does not exist on amqp://127.0.0.1:{BROKER_PORT}/%2F:"
        " create it, or add declare=topic (or direct, fanout, headers) to the sink URL"
    )
    with trio.fail_after(GUARD), pytest.raises(RuntimeError, match="enter it first"):
        await sink.deliver([ev(1)])  # a failed enter leaves the sink closed


async def test_an_exchange_deleted_while_open_makes_the_sink_unavailable() -> None:
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            sink = RabbitMQSink(broker.url())
            async with sink:
                await sink.deliver([ev(1)])
                await broker.delete_exchange(broker.name)
                with pytest.raises(SinkUnavailable, match="the broker closed the channel") as lost:
                    await sink.deliver([ev(2, key="a"), ev(3, key="b")])
                with pytest.raises(SinkUnavailable, match="is closed"):
                    await sink.deliver([ev(4)])
            with pytest.raises(SinkUnavailable, match="does not exist"):
                await deliver(sink, ev(2))
    assert f"NOT_FOUND - no exchange '{broker.name}'" in str(lost.value)


async def test_declare_creates_a_durable_exchange_and_another_type_is_sink_unavailable() -> None:
    name = f"relay-test-{uuid.uuid4().hex}"
    url = f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}/?exchange={name}&declare=topic"
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            try:
                async with RabbitMQSink(url):
                    pass
                assert await broker.exchange_exists(name)
                async with RabbitMQSink(url):  # declaring again is fine
                    pass
                with pytest.raises(SinkUnavailable) as caught:
                    async with RabbitMQSink(url.replace("declare=topic", "declare=fanout")):
                        pass
            finally:
                await broker.delete_exchange(name)
    assert f"cannot use exchange '{name}'" in str(caught.value)
    assert "PRECONDITION_FAILED - inequivalent arg 'type'" in str(caught.value)


async def test_a_wrong_password_is_sink_unavailable_without_the_password() -> None:
    sink = RabbitMQSink(f"amqp://guest:hunter2-wrong@127.0.0.1:{BROKER_PORT}/?exchange=x")
    with trio.fail_after(GUARD), pytest.raises(SinkUnavailable) as caught:
        async with sink:
            pass
    assert "ACCESS_REFUSED" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_broken_broker_connection_loses_nothing_and_keeps_key_order(
    database_dsn: str,
) -> None:
    fast = Backoff(base=0.05, cap=0.2)
    config = Config(
        dsn=database_dsn,
        batch_size=50,
        max_attempts=1000,
        retry_backoff=fast,
        restart_backoff=fast,
        restart_intensity=1000,
    )
    insert(database_dsn, 2000)
    with trio.fail_after(GUARD):
        async with open_broker() as broker, open_tcp_proxy(BROKER_PORT) as proxy:
            sink = RabbitMQSink(broker.url(port=proxy.port), SinkOptions(timeout=2))
            async with open_relay(config, sink) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 200)
                proxy.go_down()
                await trio.to_thread.run_sync(insert, database_dsn, 500, 2001)
                await trio.sleep(1.5)
                during = handle.statistics()
                assert (during.restarts, "sink" in during.outages) == (
                    0,
                    True,
                )  # waited, not a crash
                assert await trio.to_thread.run_sync(pending_count, database_dsn) > 0
                proxy.come_back()
                await wait_drained(database_dsn)
            received = await broker.messages()
    counts = Counter(message.id for message in received)
    assert counts.keys() == set(range(1, 2501)), "lost events"
    duplicates = sum(counts.values()) - len(counts)
    print(f"restarts={during.restarts} retried={during.retried} duplicates={duplicates}")
    for key, ids in per_key_first_seen(received).items():
        assert ids == sorted(ids), f"key {key} out of order"


async def test_relay_run_publishes_to_the_exchange_of_its_sink_url(
    database_dsn: str, tmp_path: Path
) -> None:
    insert(database_dsn, 25)
    with trio.fail_after(GUARD):
        # Durable, as `declare=topic` declares it: the sink's declare then matches ours.
        async with open_broker(durable=True) as broker:
            url = broker.url(declare="topic")
            with (tmp_path / "relay.err").open("wb") as stderr:
                process = await trio.lowlevel.open_process(
                    [
                        sys.executable,
                        "-m",
                        "relay.cli",
                        "run",
                        "--dsn",
                        database_dsn,
                        "--sink",
                        url,
                    ],
                    stdout=stderr,
                    stderr=stderr,
                )
            try:
                await wait_drained(database_dsn)
            finally:
                process.send_signal(signal.SIGTERM)
                code = await process.wait()
            received = await broker.messages()
    log = (tmp_path / "relay.err").read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert "guest:guest" not in log
    assert sorted(message.id for message in received) == list(range(1, 26))
