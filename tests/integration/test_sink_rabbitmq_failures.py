"""The RabbitMQ sink's failure paths against the RabbitMQ server on 127.0.0.1:5672, on the real
clock: unroutable and unsendable events, a missing or deleted exchange, a wrong password, a broken
connection, and key order kept in the queue through each."""

from __future__ import annotations

import uuid
from collections import Counter

import psycopg
import pytest
import trio

from relay import (
    Backoff,
    Config,
    OutboxEvent,
    PartialDelivery,
    SinkUnavailable,
    open_relay,
)
from relay.aio import aio_as_trio
from relay.ports import JsonObject
from relay.sinks import SinkOptions
from relay.sinks.rabbitmq import RabbitMQSink

from ..conftest import pending_count
from ..tcp_proxy import open_tcp_proxy
from .rabbitmq_broker import (
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
)

if not broker_answers():
    pytest.skip(f"no RabbitMQ server on 127.0.0.1:{BROKER_PORT}", allow_module_level=True)


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
