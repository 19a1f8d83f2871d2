"""OpenTelemetry for relay: a span per settled batch, and `trace_headers` for producers.

This is the one module that imports OpenTelemetry, and only when it is asked to: `import relay`
never does, and without `opentelemetry-api` installed (the `otel` extra) nothing here costs
anything. With it, `run_relay` adds a `BatchTracer` to the drainer (unless `Config.tracing` is
`off`): each settled batch becomes one span, `relay deliver`, of kind PRODUCER and a root of its
own trace, with a link to the producer's span of every event whose headers carry a valid
`traceparent` (as OpenTelemetry's messaging conventions do for a batch). The events themselves
carry the producer's context on to the consumers unchanged (see `relay.trace_context`), so a
consumer continues the producer's trace, and the link leads from it to relay's delivery.

Spans go to the global tracer provider: the application sets one up (the SDK and an exporter),
or `opentelemetry-instrument relay run ...` does for the daemon. With the API alone every span
is a no-op.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .config import Config
from .drainer_reports import BatchObserver, BatchReport
from .ports import CallableSink, OutboxEvent, Sink
from .trace_context import TRACE_HEADERS, TraceContext, find_trace_context

if TYPE_CHECKING:
    from opentelemetry.trace import Link, SpanContext, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SPAN_NAME = "relay deliver"
INSTRUMENTATION_NAME = "relay"

# Attribute names: OpenTelemetry's messaging conventions where one fits, relay's own otherwise.
BATCH_SIZE = "messaging.batch.message_count"
OPERATION = "messaging.operation.type"
SINK = "relay.sink"
OUTCOME = "relay.outcome"
DELIVERED = "relay.delivered"
FAILED = "relay.failed"
PUT_BACK = "relay.put_back"
EVENT_IDS = "relay.event_ids"  # on a link: the events written under that producer span

_SINK_MODULES = {  # relay's own sinks, by module, named as their URL scheme
    "webhook": "webhook",
    "nats_jetstream": "nats",
    "redis_streams": "redis",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "stdout": "stdout",
}


def trace_headers(headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `headers` with the current OpenTelemetry span's context added, for the outbox.

    Pass the result as `headers=` to `relay.enqueue` inside the span that writes the event: the
    context becomes `traceparent` (and `tracestate`, when there is one), which relay carries to
    every sink. Baggage and other propagators' headers are not added.

    Returns:
        The copy, with a `traceparent` or `tracestate` in `headers` (in any case) replaced by the
        current span's. Outside a valid span, or without `opentelemetry-api` installed, the copy
        alone.
    """
    carried = dict(headers or {})
    propagator = _propagator()
    if propagator is None:
        return carried
    context: dict[str, str] = {}
    propagator.inject(context)
    if context:
        for name in [n for n in carried if isinstance(n, str) and n.lower() in TRACE_HEADERS]:
            del carried[name]
        carried.update(context)
    return carried


@functools.cache
def _propagator() -> TraceContextTextMapPropagator | None:
    """W3C trace context only, whatever `OTEL_PROPAGATORS` says: it is what relay carries."""
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return TraceContextTextMapPropagator()


def sink_kind(sink: Sink) -> str:
    """A short name for the kind of `sink`: relay's own by their URL scheme (`webhook`, `nats`,
    `redis`, `rabbitmq`, `kafka`, `stdout`), `handler` for an async callable, else the class's
    qualified name."""
    if isinstance(sink, CallableSink):
        return "handler"
    module = type(sink).__module__
    package, _, name = module.rpartition(".")
    if package == "relay.sinks" and name in _SINK_MODULES:
        return _SINK_MODULES[name]
    return f"{module}.{type(sink).__qualname__}"


def batch_tracer(config: Config, sink: Sink) -> BatchObserver | None:
    """The observer recording a span per batch delivered to `sink`, or None when
    `config.tracing` is `off` or `opentelemetry-api` is not installed (nothing is imported then).
    """
    if config.tracing == "off":
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    from . import __version__

    return BatchTracer(sink_kind(sink), trace.get_tracer(INSTRUMENTATION_NAME, __version__))


@attrs.define(eq=False)
class BatchTracer:
    """A batch observer (`Drainer.add_observer`) that records each settled batch as a span.

    The span's attributes: `messaging.batch.message_count` (events claimed),
    `messaging.operation.type` (`send`), `relay.sink` (see `sink_kind`), `relay.outcome`
    (`delivered`: all of them, `partial`, `failed`: none, with the span's status an error, or
    `put back`: none, and none failed either: their destination was down), `relay.delivered`,
    `relay.failed` (retried or buried: an attempt counted) and `relay.put_back` (deferred while
    a destination is down, or held behind their key: no attempt counted, no error). It starts
    when the claim began and ends when the outcome was committed.

    Attributes:
        sink: the sink's kind, for `relay.sink`.
        tracer: where spans are made.
    """

    sink: str
    tracer: Tracer

    def __call__(self, report: BatchReport) -> None:
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, Status, StatusCode

        # OpenTelemetry wants wall-clock nanoseconds; the report measured trio's clock.
        end = time.time_ns()
        start = end - round(report.duration * 1e9)
        delivered = len(report.delivered)
        failed = report.claimed - delivered - report.put_back  # attempts counted
        if failed == report.put_back == 0:
            outcome = "delivered"
        elif delivered == 0:
            # None taken: the events' failure, or only their destination down (put back).
            outcome = "failed" if failed else "put back"
        else:
            outcome = "partial"
        span = self.tracer.start_span(
            SPAN_NAME,
            context=Context(),  # a root: not a child of whatever span started the relay
            kind=SpanKind.PRODUCER,
            attributes={
                BATCH_SIZE: report.claimed,
                OPERATION: "send",
                SINK: self.sink,
                OUTCOME: outcome,
                DELIVERED: delivered,
                FAILED: failed,
                PUT_BACK: report.put_back,
            },
            links=producer_links(report.events or report.delivered),
            start_time=start,
        )
        if outcome == "failed":
            span.set_status(Status(StatusCode.ERROR, f"none of {report.claimed} events delivered"))
        span.end(end_time=end)


def producer_links(events: Iterable[OutboxEvent]) -> list[Link]:
    """One link per producer span found in the events' headers, in the order first seen, naming
    the events written under it (`relay.event_ids`); events without a valid context add none."""
    from opentelemetry.trace import Link

    found: dict[TraceContext, list[int]] = {}
    for event in events:
        context = find_trace_context(event.headers)
        if context is not None:
            found.setdefault(context, []).append(event.id)
    return [Link(_span_context(context), {EVENT_IDS: ids}) for context, ids in found.items()]


def _span_context(context: TraceContext) -> SpanContext:
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    state = TraceState.from_header([context.tracestate]) if context.tracestate else None
    return SpanContext(
        trace_id=int(context.trace_id, 16),
        span_id=int(context.parent_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(context.flags),
        trace_state=state,
    )
