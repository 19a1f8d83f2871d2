"""The stdout sink: one JSON line per event, the payload's bytes never decoded."""

from __future__ import annotations

import datetime
import io
import json
from typing import Any

import pytest
import trio

from relay import Config, OutboxEvent, OutputClosed, open_relay
from relay.ports import JsonObject
from relay.sinks import StdoutSink, encode_event
from relay.testing import MemoryOutbox

CREATED = datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)


def event(
    id: int, payload_json: bytes, *, key: str | None = "order-1", **fields: Any
) -> OutboxEvent:
    return OutboxEvent(
        id=id,
        topic=fields.pop("topic", "orders.created"),
        key=key,
        payload_json=payload_json,
        created_at=CREATED,
        **fields,
    )


@pytest.fixture
def no_json_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any JSON decoding, `OutboxEvent.payload` included, fails the test."""

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("a payload was decoded")

    monkeypatch.setattr(json, "loads", refuse)


class Recorder(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, data: Any, /) -> int:
        self.calls.append("write")
        return super().write(data)

    def flush(self) -> None:
        self.calls.append("flush")


async def test_writes_one_exact_line_per_event_in_order(no_json_decoding: None) -> None:
    stream = io.BytesIO()
    await StdoutSink(stream).deliver(
        [
            event(7, b'{"id": 1, "items": [1, 2]}', headers={"trace": "abc"}, attempts=2),
            event(8, b"[]", key=None, topic="ping"),
        ]
    )
    assert stream.getvalue() == (
        b'{"id":7,"topic":"orders.created","key":"order-1","payload":{"id": 1, "items": [1, 2]},'
        b'"headers":{"trace":"abc"},"created_at":"2024-01-02T03:04:05.678000+00:00","attempts":2}\n'
        b'{"id":8,"topic":"ping","key":null,"payload":[],'
        b'"headers":{},"created_at":"2024-01-02T03:04:05.678000+00:00","attempts":0}\n'
    )


async def test_splices_the_payload_bytes_as_stored(no_json_decoding: None) -> None:
    """Unusual spacing, key order and escapes survive: the bytes are copied, not re-encoded."""
    payload = b'{ "z" :1,"a":  "\\u00e9\\n" , "n": 1.50 }'
    stream = io.BytesIO()
    await StdoutSink(stream).deliver([event(1, payload)])
    assert b'"payload":' + payload + b',"headers"' in stream.getvalue()


async def test_splices_headers_from_postgresql_as_stored(no_json_decoding: None) -> None:
    """Headers the outbox handed over as JSON text are copied too, never decoded."""
    headers = b'{"trace": "abc", "tries": [1, 2]}'
    stream = io.BytesIO()
    await StdoutSink(stream).deliver([event(1, b"{}", headers=JsonObject(headers))])
    assert b'"headers":' + headers + b',"created_at"' in stream.getvalue()


def test_json_headers_decode_on_first_read_and_compare_as_a_dict() -> None:
    headers = JsonObject(b'{"trace": "abc", "n": 2}')
    assert headers == {"trace": "abc", "n": 2}
    assert (headers["trace"], len(headers), list(headers)) == ("abc", 2, ["trace", "n"])
    with pytest.raises(TypeError, match="not a JSON object"):
        len(JsonObject(b"[1]"))


async def test_each_line_is_the_event_as_a_json_object() -> None:
    stream = io.BytesIO()
    await StdoutSink(stream).deliver(
        [event(3, b'{"total": 9.5}', key="k\u00e9y", topic='a "quoted" topic', headers={"n": 1})]
    )
    line = stream.getvalue()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "id": 3,
        "topic": 'a "quoted" topic',
        "key": "k\u00e9y",
        "payload": {"total": 9.5},
        "headers": {"n": 1},
        "created_at": "2024-01-02T03:04:05.678000+00:00",
        "attempts": 0,
    }


async def test_a_payload_with_line_breaks_is_re_encoded_onto_one_line() -> None:
    stream = io.BytesIO()
    await StdoutSink(stream).deliver([event(1, b'{\n  "a": [1,\r\n 2]\n}\n'), event(2, b"{}")])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert b'"payload":{"a":[1,2]},' in lines[0]
    assert json.loads(lines[0])["payload"] == {"a": [1, 2]}


async def test_a_batch_is_one_write_and_one_flush() -> None:
    stream = Recorder()
    await StdoutSink(stream).deliver([event(i, b"{}") for i in range(1, 101)])
    assert stream.calls == ["write", "flush"]
    assert stream.getvalue().count(b"\n") == 100


async def test_an_empty_batch_writes_nothing() -> None:
    stream = Recorder()
    await StdoutSink(stream).deliver([])
    assert stream.calls == []


async def test_writes_to_standard_output_by_default(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    await StdoutSink().deliver([event(1, b"{}")])
    out, err = capsysbinary.readouterr()
    assert json.loads(out)["id"] == 1
    assert err == b""


def test_encode_event_has_no_trailing_line_break() -> None:
    assert not encode_event(event(1, b"{}")).endswith(b"\n")


class ClosedPipe(io.BytesIO):
    """A pipe whose reader went away."""

    def write(self, data: Any, /) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_a_closed_stdout_raises_output_closed() -> None:
    with pytest.raises(OutputClosed, match="stdout is closed"):
        await StdoutSink(ClosedPipe()).deliver([event(1, b"{}")])


async def test_a_closed_stdout_stops_the_relay_and_leaves_every_event_untouched(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Before: each batch counted an attempt per event, and the events went dead."""
    outbox = MemoryOutbox()
    for n in range(25):
        outbox.enqueue("t", n, key=f"k{n % 3}")
    config = Config(batch_size=10, max_attempts=2, poll_interval=1.0)
    with pytest.raises(OutputClosed):
        async with open_relay(config, StdoutSink(ClosedPipe()), outbox=outbox):
            await trio.sleep(60)
    assert [row.event.attempts for row in outbox.pending_rows()] == [0] * 25
    assert {row.last_error for row in outbox.pending_rows()} == {None}
    assert outbox.dead() == []
