"""The OpenTelemetry SDK for the tests: one tracer provider for the session, spans kept in memory.

OpenTelemetry lets a process set its global tracer provider once; relay's spans go there (see
`relay.tracing`), so every test that reads spans shares this one. It keeps spans only while a test
is `recording()`: the relays of later tests record theirs too, and nobody reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay.tracing import SPAN_NAME


class _WhileRecording(SimpleSpanProcessor):
    """Exports a span only while a test is recording."""

    recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_PROCESSOR = _WhileRecording(_EXPORTER)
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(_PROCESSOR)
trace.set_tracer_provider(_PROVIDER)  # once: this module is imported once per session

PRODUCER = trace.get_tracer("tests.producer")
"""The tracer of the tests' producers, the application side."""


@contextlib.contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """The session's in-memory exporter, empty, keeping the spans that end in the block."""
    _EXPORTER.clear()
    _PROCESSOR.recording = True
    try:
        yield _EXPORTER
    finally:
        _PROCESSOR.recording = False
        _EXPORTER.clear()


def relay_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """The batch spans relay recorded, in the order they ended."""
    return [span for span in exporter.get_finished_spans() if span.name == SPAN_NAME]


def trace_id_of(traceparent: str) -> int:
    """The trace id in a `traceparent`, as OpenTelemetry's span contexts hold it."""
    return int(traceparent.split("-")[1], 16)
