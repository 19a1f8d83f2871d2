"""The RabbitMQ sink delivering to the RabbitMQ server on 127.0.0.1:5672, on the real clock: each
event once, in key order, with its payload bytes and properties. The failure paths are in
test_sink_rabbitmq_failures."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
import pytest
import trio

from relay import (
    Config,
    OutboxEvent,
    open_relay,
)
from relay.sinks.rabbitmq import RabbitMQSink

from ..conftest import pending_count
from .rabbitmq_broker import (
    BIG_GUARD,
    BROKER_PORT,
    GUARD,
    broker_answers,
    deliver,
    ev,
    insert,
    open_broker,
    per_key_first_seen,
    wait_drained,
    wait_until,
    written,
)

if not broker_answers():
    pytest.skip(f"no RabbitMQ server on 127.0.0.1:{BROKER_PORT}", allow_module_level=True)


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
