"""A producer's trace crosses the outbox: the same trace id on what each sink delivers, and relay's
batch span linked to the producer's span (real PostgreSQL, the real brokers, a local HTTP server).

Each broker test borrows that broker's own test module for its set-up, and is skipped with that
module's reason when the broker does not answer.
"""

from __future__ import annotations

import functools
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import psycopg
import pytest
import redis
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

import relay
from relay import Config, open_relay
from relay.sinks import StdoutSink, WebhookSink
from relay.sinks.cloudevents import FORMATS
from relay.sinks.options import SinkOptions

from ..conftest import pending_count
from ..otel import PRODUCER, recording, relay_spans
from ..redis_server import REDIS_PORT, redis_answers
from .test_webhook import Server

GUARD = 60  # seconds any one test may take before it counts as hung
# The producer's caller: a remote parent with a vendor's trace state, as an HTTP request has.
CALLER = trace.SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    trace_state=trace.TraceState([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]),
)


@attrs.frozen
class Produced:
    """An event a traced producer wrote, and the span it wrote it in."""

    id: int
    span: trace.SpanContext
    headers: dict[str, Any]

    @property
    def traceparent(self) -> str:
        value: str = self.headers["traceparent"]
        return value


def produce(dsn: str, topic: str = "orders", key: str | None = "order-1") -> Produced:
    """What an application does: inside its span, write the event with the span's context."""
    parent = trace.set_span_in_context(trace.NonRecordingSpan(CALLER))
    with (
        PRODUCER.start_as_current_span("place order", context=parent) as span,
        psycopg.connect(dsn) as conn,
    ):
        headers = relay.trace_headers({"tenant": "acme"})
        event_id = relay.enqueue(conn, topic, {"order": 1}, key=key, headers=headers)
    return Produced(event_id, span.get_span_context(), headers)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recording() as exporter:
        yield exporter


async def wait_until(condition: Callable[[], object]) -> None:
    """Poll `condition`: the database, a broker and the exporter cannot signal us."""
    while not condition():  # noqa: ASYNC110 (bounded by each test's guard)
        await trio.sleep(0.02)


def delivered_in_spans(spans: InMemorySpanExporter) -> int:
    """Events delivered, as relay's batch spans count them (claims overlap: a batch or more)."""
    return sum(int((span.attributes or {})["relay.delivered"]) for span in relay_spans(spans))


async def relay_until_traced(dsn: str, sink: relay.Sink, spans: InMemorySpanExporter) -> None:
    """Run the relay until the outbox is empty and every event's batch span is recorded."""
    written = pending_count(dsn)
    async with open_relay(Config(dsn=dsn), sink):
        await wait_until(lambda: pending_count(dsn) == 0 and delivered_in_spans(spans) == written)


def links(spans: InMemorySpanExporter) -> list[Link]:
    """Every link of relay's batch spans, by the events they name."""
    found = [link for span in relay_spans(spans) for link in span.links]
    return sorted(found, key=lambda link: tuple(link.attributes["relay.event_ids"]))


def assert_linked(spans: InMemorySpanExporter, produced: Produced, sink: str) -> None:
    """relay's batch span for `sink` that delivered the event links to the producer's span."""
    (span,) = [
        span
        for span in relay_spans(spans)
        if any(produced.id in link.attributes["relay.event_ids"] for link in span.links)
    ]
    assert dict(span.attributes or {})["relay.sink"] == sink
    assert dict(span.attributes or {})["relay.outcome"] == "delivered"
    (link,) = span.links
    assert (link.context.trace_id, link.context.span_id) == (
        produced.span.trace_id,
        produced.span.span_id,
    )
    assert link.context.trace_state == CALLER.trace_state
    assert link.attributes == {"relay.event_ids": (produced.id,)}


def test_the_producer_writes_its_span_context_and_its_callers_trace_state(
    database_dsn: str,
) -> None:
    produced = produce(database_dsn)
    assert produced.span.trace_id == CALLER.trace_id
    assert produced.headers == {
        "tenant": "acme",
        "traceparent": f"00-{CALLER.trace_id:032x}-{produced.span.span_id:016x}-01",
        "tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    }


# --- webhook ---------------------------------------------------------------------------------


@pytest.fixture
async def server(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Server]:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    server = Server()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
    )
    server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/hooks"
    yield server


@pytest.mark.parametrize("format", FORMATS)
async def test_the_webhook_sends_the_producers_trace_as_http_headers(
    database_dsn: str, spans: InMemorySpanExporter, server: Server, format: str
) -> None:
    produced = produce(database_dsn)
    sink = WebhookSink(server.url, SinkOptions(format=format))
    with trio.fail_after(GUARD):
        await relay_until_traced(database_dsn, sink, spans)
    (request,) = server.received
    assert request.headers["traceparent"] == produced.traceparent
    assert request.headers["tracestate"] == produced.headers["tracestate"]
    assert int(request.headers["traceparent"].split("-")[1], 16) == produced.span.trace_id
    if format == "relay":
        assert json.loads(request.body)["headers"] == produced.headers  # and the body as before
    assert_linked(spans, produced, "webhook")


async def test_the_webhook_sends_no_trace_header_for_an_invalid_one(
    database_dsn: str, spans: InMemorySpanExporter, server: Server
) -> None:
    headers = {"Traceparent": "00-not-a-trace-01", "tracestate": "rojo=1"}
    with psycopg.connect(database_dsn) as conn:
        relay.enqueue(conn, "orders", {"order": 1}, headers=headers)
    with trio.fail_after(GUARD):
        await relay_until_traced(database_dsn, WebhookSink(server.url), spans)
    (request,) = server.received
    assert "traceparent" not in request.headers and "tracestate" not in request.headers
    assert json.loads(request.body)["headers"] == headers
    assert links(spans) == []


# --- stdout ----------------------------------------------------------------------------------


async def test_stdout_lines_carry_the_producers_trace_in_their_headers(
    database_dsn: str, spans: InMemorySpanExporter
) -> None:
    produced = produce(database_dsn)
    output = io.BytesIO()
    with trio.fail_after(GUARD):
        await relay_until_traced(database_dsn, StdoutSink(stream=output), spans)
    (line,) = output.getvalue().splitlines()
    assert json.loads(line)["headers"]["traceparent"] == produced.traceparent
    assert_linked(spans, produced, "stdout")


# --- NATS JetStream --------------------------------------------------------------------------


async def test_nats_messages_carry_the_producers_trace_as_headers(
    database_dsn: str, spans: InMemorySpanExporter
) -> None:
    from relay.sinks.nats_jetstream import JetStreamSink

    from .nats_streams import NATS_PORT, create_stream, delete_stream, nats_answers

    if not nats_answers():
        pytest.skip(f"no NATS server answers on 127.0.0.1:{NATS_PORT}")
    produced = produce(database_dsn)
    with psycopg.connect(database_dsn) as conn:  # a writer's own casing is made lowercase
        header = {"TraceParent": produced.traceparent, "tracestate": "rojo=1"}
        relay.enqueue(conn, "orders", {"order": 2}, key="order-1", headers=header)
    stream = await create_stream()
    try:
        with trio.fail_after(GUARD):
            sink = JetStreamSink(stream.url())
            await relay_until_traced(database_dsn, sink, spans)
            first, second = await stream.read()
    finally:
        await delete_stream(stream)
    assert first.headers["traceparent"] == produced.traceparent
    assert first.headers["tracestate"] == produced.headers["tracestate"]
    assert first.headers["tenant"] == "acme"
    assert "TraceParent" not in second.headers
    assert (second.headers["traceparent"], second.headers["tracestate"]) == (
        produced.traceparent,
        "rojo=1",
    )
    assert [link.attributes for link in links(spans)] == [
        {"relay.event_ids": (produced.id,)},
        {"relay.event_ids": (second.id,)},
    ]


# --- RabbitMQ --------------------------------------------------------------------------------


async def test_rabbitmq_messages_carry_the_producers_trace_as_headers(
    database_dsn: str, spans: InMemorySpanExporter
) -> None:
    from relay.sinks.rabbitmq import RabbitMQSink

    from .rabbitmq_broker import BROKER_PORT, broker_answers, open_broker

    if not broker_answers():
        pytest.skip(f"no RabbitMQ server on 127.0.0.1:{BROKER_PORT}")

    produced = produce(database_dsn, topic="orders.created")
    with psycopg.connect(database_dsn) as conn:  # another casing, a bad tracestate
        header = {"TRACEPARENT": produced.traceparent, "tracestate": "Rojo=1"}
        relay.enqueue(conn, "orders.created", {"order": 2}, key="order-1", headers=header)
    with trio.fail_after(GUARD):
        async with open_broker() as broker:
            sink = RabbitMQSink(broker.url())
            await relay_until_traced(database_dsn, sink, spans)
            first, second = sorted(await broker.messages(), key=lambda message: message.id)
    assert first.headers["traceparent"] == produced.traceparent
    assert first.headers["tracestate"] == produced.headers["tracestate"]
    assert second.headers["traceparent"] == produced.traceparent
    assert "TRACEPARENT" not in second.headers and "tracestate" not in second.headers
    assert {dict(span.attributes or {})["relay.sink"] for span in relay_spans(spans)} == {
        "rabbitmq"
    }
    assert [link.attributes for link in links(spans)] == [  # one producer span, two trace states
        {"relay.event_ids": (first.id,)},
        {"relay.event_ids": (second.id,)},
    ]


# --- Redis Streams ---------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """This test's corner of the shared server, emptied at the end."""
    if not redis_answers():
        pytest.skip(f"no Redis answers on 127.0.0.1:{REDIS_PORT}")
    prefix = f"relaytest:{uuid.uuid4().hex}:"
    yield prefix
    with redis.Redis(port=REDIS_PORT) as client:
        mine = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if mine:
            client.delete(*mine)


async def test_redis_entries_carry_the_producers_trace_as_fields(
    database_dsn: str, spans: InMemorySpanExporter, redis_prefix: str
) -> None:
    from relay.sinks.redis_streams import RedisStreamSink

    produced = produce(database_dsn)
    with psycopg.connect(database_dsn) as conn:  # in the same script call: no context, a bad one
        plain = relay.enqueue(conn, "orders", {"order": 2}, key="order-2")
        bad = relay.enqueue(conn, "orders", {"order": 3}, headers={"traceparent": "x"})
    url = f"redis://127.0.0.1:{REDIS_PORT}/0?stream={redis_prefix}{{topic}}"
    url += f"&dedup_prefix={redis_prefix}dedup:"
    with trio.fail_after(GUARD):
        await relay_until_traced(database_dsn, RedisStreamSink(url, SinkOptions()), spans)
    with redis.Redis(port=REDIS_PORT) as client:
        entries = {
            int(fields[b"id"]): fields for _, fields in client.xrange(f"{redis_prefix}orders")
        }
    assert entries.keys() == {produced.id, plain, bad}
    traced = entries[produced.id]
    assert traced[b"traceparent"].decode() == produced.traceparent
    assert traced[b"tracestate"].decode() == produced.headers["tracestate"]
    assert json.loads(traced[b"headers"]) == produced.headers
    assert traced[b"payload"] == b'{"order": 1}'
    for untraced in (plain, bad):
        assert b"traceparent" not in entries[untraced]
        assert b"tracestate" not in entries[untraced]
    assert entries[plain][b"key"] == b"order-2" and b"key" not in entries[bad]
    assert_linked(spans, produced, "redis")


# --- Kafka (librdkafka's mock cluster) -------------------------------------------------------


async def test_kafka_records_carry_the_producers_trace_as_headers(
    database_dsn: str, spans: InMemorySpanExporter
) -> None:
    from . import test_sink_kafka as kafka_tests  # skipped, with its reason, without the client

    produced = produce(database_dsn)
    with psycopg.connect(database_dsn) as conn:  # an invalid one is not passed on
        header = {"traceparent": "00-garbage", "tracestate": "rojo=1", "tenant": "acme"}
        relay.enqueue(conn, "orders", {"order": 2}, key="order-1", headers=header)
    with kafka_tests.open_cluster() as cluster:
        with trio.fail_after(GUARD):
            sink = kafka_tests.KafkaSink(cluster.url("relay.{topic}"), SinkOptions())
            await relay_until_traced(database_dsn, sink, spans)
        first, second = sorted(
            await trio.to_thread.run_sync(
                kafka_tests.read_back, cluster.bootstrap, "relay.orders", 2
            ),
            key=lambda record: record.id,
        )
    assert first.headers["traceparent"] == produced.traceparent.encode()
    assert first.headers["tracestate"] == produced.headers["tracestate"].encode()
    assert second.headers["tenant"] == b"acme"
    assert "traceparent" not in second.headers and "tracestate" not in second.headers
    assert_linked(spans, produced, "kafka")
