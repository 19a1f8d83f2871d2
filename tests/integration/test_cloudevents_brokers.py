"""The NATS, AMQP and Redis sinks in the CloudEvents formats, through the relay from a real
PostgreSQL to the machine's brokers, each message read back with the CloudEvents SDK's parsers.

Each broker's tests skip when it does not answer; each test uses names of its own and deletes
them (the brokers are shared).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import nats
import psycopg
import pytest
import redis
import trio
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import amqp, rabbitmq
from cloudevents.core.formats.json import JSONFormat
from nats.js.api import AckPolicy, ConsumerConfig

from relay import enqueue
from relay.aio import aio_as_trio, asyncio_loop
from relay.sinks import SinkOptions, open_sink

from ..redis_server import REDIS_PORT, redis_answers
from .test_cloudevents_webhook import payload_bytes, run_until_delivered

GUARD = 60
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
AWKWARD = 'a "quoted" key, 100% é ✓'
PAYLOADS: list[Any] = [{"n": 1}, {"n": 2, "s": 'é\n"%'}, [1, 2.5, None], {"n": 4}]


def _answers(port: int, greeting: bytes = b"") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return not greeting or sock.recv(4).startswith(greeting)
    except OSError:
        return False


needs_nats = pytest.mark.skipif(
    not _answers(4222, b"INFO"), reason="no NATS server answers on 127.0.0.1:4222"
)
needs_rabbitmq = pytest.mark.skipif(
    not _answers(5672), reason="no RabbitMQ server on 127.0.0.1:5672"
)
needs_redis = pytest.mark.skipif(
    not redis_answers(), reason=f"no Redis answers on 127.0.0.1:{REDIS_PORT}"
)
FORMATS = pytest.mark.parametrize("format", ["cloudevents", "cloudevents-structured"])


def write_events(dsn: str) -> list[int]:
    """Four events: keyed with a trace header, keyless, an awkward key, another key."""
    keys = ["o-1", None, AWKWARD, "o-2"]
    with psycopg.connect(dsn) as conn:
        return [
            enqueue(conn, "orders", payload, key=key, headers={"traceparent": TRACEPARENT})
            for payload, key in zip(PAYLOADS, keys, strict=True)
        ]


def check(events: list[BaseCloudEvent], ids: list[int], source: str = "/relay") -> None:
    """What every sink must have carried, whatever the binding."""
    assert [e.get_id() for e in events] == [str(i) for i in ids]
    assert {e.get_source() for e in events} == {source}
    assert {e.get_type() for e in events} == {"orders"}
    assert [e.get_subject() for e in events] == ["o-1", None, AWKWARD, "o-2"]
    assert [e.get_data() for e in events] == PAYLOADS
    assert {e.get_extension("traceparent") for e in events} == {TRACEPARENT}
    assert all(e.get_time() is not None for e in events)


# NATS


async def _nats_messages(stream: str, subject: str, count: int) -> list[Any]:
    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = client.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.NONE)
        sub = await js.pull_subscribe(subject, stream=stream, config=config)
        return list(await sub.fetch(batch=count, timeout=10))
    finally:
        await client.close()


async def _nats_stream(name: str, subject: str, delete: bool = False) -> None:
    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        if delete:
            await client.jetstream().delete_stream(name)
        else:
            await client.jetstream().add_stream(name=name, subjects=[subject])
    finally:
        await client.close()


@pytest.fixture
async def nats_stream() -> AsyncIterator[tuple[str, str]]:
    unique = uuid.uuid4().hex[:12]
    name, prefix = f"relaytest_ce_{unique}", f"relaytest.ce.{unique}"
    async with asyncio_loop():
        await aio_as_trio(_nats_stream)(name, f"{prefix}.>")
        try:
            yield name, prefix
        finally:
            with trio.move_on_after(10, shield=True):
                await aio_as_trio(_nats_stream)(name, "", delete=True)


@needs_nats
@FORMATS
async def test_nats_carries_cloudevents(
    database_dsn: str, nats_stream: tuple[str, str], format: str
) -> None:
    name, prefix = nats_stream
    ids = write_events(database_dsn)
    payloads = payload_bytes(database_dsn, ids)
    url = f"nats://127.0.0.1:4222?subject={prefix}.{{topic}}&stream={name}"
    await run_until_delivered(
        database_dsn, open_sink(url, SinkOptions(format=format)), len(ids), GUARD
    )
    async with asyncio_loop():
        messages = await aio_as_trio(_nats_messages)(name, f"{prefix}.>", len(ids))
    # Events of different keys: two batches in flight may publish them in either order.
    messages.sort(key=lambda m: int((m.headers or {})["Nats-Msg-Id"]))
    headers = [dict(m.headers or {}) for m in messages]
    assert [h["Nats-Msg-Id"] for h in headers] == [str(i) for i in ids]  # still deduplicated
    if format == "cloudevents":
        assert [m.data for m in messages] == payloads  # byte for byte, never re-encoded
        # The NATS binding: `ce-` headers as they are, the content type apart, the payload alone.
        events = [
            rabbitmq.from_binary(
                rabbitmq.RabbitMQMessage(h, h.pop("content-type"), m.data), JSONFormat()
            )
            for h, m in zip(headers, messages, strict=True)
        ]
    else:
        assert {h["content-type"] for h in headers} == {
            "application/cloudevents+json; charset=utf-8"
        }
        assert not any(n.startswith("ce-") for h in headers for n in h)
        events = [JSONFormat().read(None, m.data) for m in messages]
    check(events, ids)


# AMQP


async def _amqp_set_up(name: str) -> tuple[Any, Any]:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    exchange = await channel.declare_exchange(name, "topic", auto_delete=True)
    queue = await channel.declare_queue(name, exclusive=True)
    await queue.bind(exchange, "#")
    return connection, queue


async def _amqp_read(queue: Any, count: int) -> list[Any]:
    received = []
    async with queue.iterator(no_ack=True) as messages:
        async for message in messages:
            received.append(message)
            if len(received) == count:
                break
    return received


@needs_rabbitmq
@FORMATS
async def test_amqp_carries_cloudevents(database_dsn: str, format: str) -> None:
    name = f"relay-test-ce-{uuid.uuid4().hex}"
    ids = write_events(database_dsn)
    async with asyncio_loop():
        connection, queue = await aio_as_trio(_amqp_set_up)(name)
        try:
            url = f"amqp://guest:guest@127.0.0.1:5672/?exchange={name}"
            sink = open_sink(url, SinkOptions(format=format, cloudevents_source="urn:relay:shop"))
            await run_until_delivered(database_dsn, sink, len(ids), GUARD)
            with trio.fail_after(GUARD):
                messages = await aio_as_trio(_amqp_read)(queue, len(ids))
        finally:
            with trio.move_on_after(10, shield=True):
                await aio_as_trio(connection.close)()
    messages.sort(key=lambda m: int(m.message_id))  # different keys: in either order
    assert [m.message_id for m in messages] == [str(i) for i in ids]
    if format == "cloudevents":
        # The AMQP binding: `cloudEvents_` application properties, which an AMQP 0-9-1
        # consumer reads as headers; the content type in the message's own property.
        events = [
            amqp.from_binary(
                amqp.AMQPMessage({"content-type": m.content_type}, dict(m.headers), m.body),
                JSONFormat(),
            )
            for m in messages
        ]
        assert {m.content_type for m in messages} == {"application/json"}
    else:
        assert {m.content_type for m in messages} == {"application/cloudevents+json; charset=utf-8"}
        # No attribute in headers; the trace context as the transport's own (relay.trace_context).
        assert all(m.headers == {"traceparent": TRACEPARENT} for m in messages)
        events = [JSONFormat().read(None, m.body) for m in messages]
    check(events, ids, source="urn:relay:shop")


# Redis


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"relaytest:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis(port=REDIS_PORT)
    mine = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if mine:
        client.delete(*mine)
    client.close()


@needs_redis
@FORMATS
async def test_redis_carries_the_structured_cloudevent_in_one_field(
    database_dsn: str, redis_prefix: str, format: str
) -> None:
    ids = write_events(database_dsn)
    url = f"redis://127.0.0.1:{REDIS_PORT}/0?stream={redis_prefix}{{topic}}&dedup_prefix={redis_prefix}d:"
    await run_until_delivered(
        database_dsn, open_sink(url, SinkOptions(format=format)), len(ids), GUARD
    )
    client = redis.Redis(port=REDIS_PORT)
    entries = [fields for _, fields in client.xrange(f"{redis_prefix}orders")]
    client.close()
    entries.sort(key=lambda fields: int(fields[b"id"]))  # different keys: in either order
    assert [int(f[b"id"]) for f in entries] == ids
    assert all(b"payload" not in f for f in entries)
    check([JSONFormat().read(None, f[b"cloudevent"]) for f in entries], ids)
