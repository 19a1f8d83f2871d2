"""Spans per batch (relay.tracing) and the producers' `trace_headers`, on MockClock."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import relay
from relay import OutboxEvent, PartialDelivery, open_relay
from relay.daemon.settings import add_run_options, load_settings
from relay.ports import CallableSink
from relay.sinks import StdoutSink, WebhookSink, open_sink
from relay.testing import MemoryOutbox, RecordingSink
from relay.tracing import _propagator, batch_tracer, sink_kind, trace_headers

from ..otel import PRODUCER, recording, relay_spans, trace_id_of
from .conftest import make_config

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with recording() as exporter:
        yield exporter


def test_trace_headers_outside_a_span_is_a_copy_of_the_headers() -> None:
    given = {"tenant": "a"}
    headers = trace_headers(given)
    assert headers == {"tenant": "a"} and headers is not given
    assert trace_headers() == {}


def test_trace_headers_inside_a_span_adds_its_context_as_traceparent() -> None:
    with PRODUCER.start_as_current_span("write order") as span:
        headers = relay.trace_headers({"tenant": "a", "TraceParent": PARENT})
    context = span.get_span_context()
    assert headers == {
        "tenant": "a",
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}"
        f"-{context.trace_flags:02x}",
    }


def test_trace_headers_carries_the_current_tracestate() -> None:
    state = trace.TraceState([("rojo", "00f067aa0ba902b7")])
    parent = trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_state=state)
    with PRODUCER.start_as_current_span(
        "write", context=trace.set_span_in_context(trace.NonRecordingSpan(parent))
    ):
        headers = trace_headers()
    assert headers["tracestate"] == "rojo=00f067aa0ba902b7"
    assert trace_id_of(headers["traceparent"]) == 0xABC


async def test_a_batch_is_one_span_linked_to_the_producer_span_of_each_event(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    outbox = MemoryOutbox()
    with PRODUCER.start_as_current_span("first request") as first:
        ids = [outbox.enqueue("orders", n, headers=trace_headers()) for n in range(2)]
    with PRODUCER.start_as_current_span("second request") as second:
        ids.append(outbox.enqueue("orders", 2, key="k", headers=trace_headers({"n": 2})))
    ids.append(outbox.enqueue("orders", 3))  # no context
    ids.append(outbox.enqueue("orders", 4, headers={"traceparent": "garbage"}))
    sink = RecordingSink()
    async with open_relay(make_config(), sink, outbox=outbox):
        await sink.wait_for(5)
        await trio.sleep(0.1)
    (span,) = relay_spans(spans)
    assert span.kind is SpanKind.PRODUCER
    assert span.parent is None
    assert dict(span.attributes or {}) == {
        "messaging.batch.message_count": 5,
        "messaging.operation.type": "send",
        "relay.sink": "relay.testing.sinks.RecordingSink",
        "relay.outcome": "delivered",
        "relay.delivered": 5,
        "relay.failed": 0,
        "relay.put_back": 0,
    }
    assert [
        (link.context.trace_id, link.context.span_id, link.context.is_remote, link.attributes)
        for link in span.links
    ] == [
        (
            first.get_span_context().trace_id,
            first.get_span_context().span_id,
            True,
            {"relay.event_ids": tuple(ids[:2])},
        ),
        (
            second.get_span_context().trace_id,
            second.get_span_context().span_id,
            True,
            {"relay.event_ids": (ids[2],)},
        ),
    ]
    assert span.status.status_code is StatusCode.UNSET


async def test_the_span_lasts_from_the_claim_until_the_outcome_is_committed(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    async def slow(events: Sequence[OutboxEvent]) -> None:
        await trio.sleep(1.5)

    outbox = MemoryOutbox()
    outbox.enqueue("orders", 1)
    async with open_relay(make_config(), slow, outbox=outbox):
        await outbox.wait_drained()
    (span,) = relay_spans(spans)
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 1_500_000_000
    assert dict(span.attributes or {})["relay.sink"] == "handler"


async def test_a_batch_where_some_failed_is_partial_and_links_every_claimed_event(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    outbox = MemoryOutbox()
    with PRODUCER.start_as_current_span("request") as producer:
        ok = outbox.enqueue("orders", 1, headers=trace_headers())
        bad = outbox.enqueue("orders", 2, headers=trace_headers())

    async def fail_one(events: Sequence[OutboxEvent]) -> None:
        await trio.lowlevel.checkpoint()
        raise PartialDelivery({bad: "refused"})

    async with open_relay(make_config(max_attempts=1), fail_one, outbox=outbox):
        await outbox.wait_drained()
    (span,) = relay_spans(spans)
    attributes = dict(span.attributes or {})
    assert (
        attributes["relay.outcome"],
        attributes["relay.delivered"],
        attributes["relay.failed"],
    ) == (
        "partial",
        1,
        1,
    )
    (link,) = span.links
    assert link.context.span_id == producer.get_span_context().span_id
    assert link.attributes == {"relay.event_ids": (ok, bad)}


async def test_a_batch_where_all_failed_is_an_error_span(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    async def broken(events: Sequence[OutboxEvent]) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("down")

    outbox = MemoryOutbox()
    outbox.enqueue("orders", 1)
    outbox.enqueue("orders", 2)
    async with open_relay(make_config(max_attempts=1), broken, outbox=outbox):
        await outbox.wait_drained()
    (span,) = relay_spans(spans)
    assert dict(span.attributes or {})["relay.outcome"] == "failed"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "none of 2 events delivered"


async def test_a_batch_whose_destination_is_down_is_put_back_and_no_error(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    """A route down defers its events (no attempt counted): not the events' failure, so a trace
    alert must not fire for it."""
    outbox = MemoryOutbox()
    first = outbox.enqueue("orders", 1, key="k")
    outbox.enqueue("orders", 2, key="k")  # held behind the first

    async def down(events: Sequence[OutboxEvent]) -> None:
        await trio.lowlevel.checkpoint()
        raise PartialDelivery({first: "broker down"}, unavailable={first: 60.0})

    async with open_relay(make_config(), down, outbox=outbox):
        await trio.sleep(1)
    span = relay_spans(spans)[0]
    attributes = dict(span.attributes or {})
    assert (
        attributes["relay.outcome"],
        attributes["relay.delivered"],
        attributes["relay.failed"],
        attributes["relay.put_back"],
    ) == ("put back", 0, 0, 2)
    assert span.status.status_code is not StatusCode.ERROR


async def test_tracing_off_records_no_span(
    autojump_clock: trio.testing.MockClock, spans: InMemorySpanExporter
) -> None:
    outbox = MemoryOutbox()
    outbox.enqueue("orders", 1, headers={"traceparent": PARENT})
    sink = RecordingSink()
    async with open_relay(make_config(tracing="off"), sink, outbox=outbox):
        await sink.wait_for(1)
    assert relay_spans(spans) == []


def test_tracing_accepts_only_auto_or_off() -> None:
    with pytest.raises(relay.ConfigError, match="tracing: must be auto or off, got 'on'"):
        make_config(tracing="on")


def test_the_daemon_turns_tracing_off_by_flag_variable_or_toml(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_run_options(parser)
    file = tmp_path / "relay.toml"
    file.write_text('tracing = "off"\n')
    assert load_settings(parser.parse_args([]), {}).config.tracing == "auto"
    assert load_settings(parser.parse_args(["--tracing", "off"]), {}).config.tracing == "off"
    assert load_settings(parser.parse_args([]), {"RELAY_TRACING": "off"}).config.tracing == "off"
    assert load_settings(parser.parse_args(["--config", str(file)]), {}).config.tracing == "off"
    with pytest.raises(relay.ConfigError, match="tracing: must be one of auto, off, got 'OFF'"):
        load_settings(parser.parse_args([]), {"RELAY_TRACING": "OFF"})


def test_without_opentelemetry_there_is_no_tracer_and_trace_headers_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`None` in `sys.modules` makes an import of the package fail, as if it were missing."""
    for name in [name for name in sys.modules if name.partition(".")[0] == "opentelemetry"]:
        monkeypatch.setitem(sys.modules, name, None)
    _propagator.cache_clear()
    try:
        assert batch_tracer(make_config(), RecordingSink()) is None
        with PRODUCER.start_as_current_span("write"):  # a span the producer could not have made
            assert trace_headers({"a": 1}) == {"a": 1}
    finally:
        _propagator.cache_clear()


def test_importing_relay_imports_no_opentelemetry() -> None:
    """In a fresh interpreter: this one has imported it already."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys, relay, relay.sinks; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "relay" in result.stdout.split()
    assert [name for name in result.stdout.split() if name.startswith("opentelemetry")] == []


def test_each_sink_is_named_by_its_kind() -> None:
    async def handler(events: Sequence[OutboxEvent]) -> None: ...

    assert sink_kind(StdoutSink()) == "stdout"
    assert sink_kind(WebhookSink("http://127.0.0.1:1/x")) == "webhook"
    assert sink_kind(open_sink("nats://127.0.0.1:4222")) == "nats"
    assert sink_kind(open_sink("redis://127.0.0.1:6379")) == "redis"
    assert sink_kind(open_sink("amqp://127.0.0.1:5672")) == "rabbitmq"
    assert sink_kind(open_sink("kafka://127.0.0.1:9092")) == "kafka"
    assert sink_kind(CallableSink(handler)) == "handler"
    assert sink_kind(RecordingSink()) == "relay.testing.sinks.RecordingSink"
