"""The JetStream sink delivering to the NATS server on 127.0.0.1:4222, on the real clock: each
event stored once, in key order, with relay's headers. The failure paths are in
test_sink_nats_failures."""

from __future__ import annotations

import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from relay import Config, PartialDelivery, open_relay
from relay.sinks.nats_jetstream import JetStreamSink

from ..conftest import pending_count
from .nats_streams import (
    GUARD,
    NATS_PORT,
    Stream,
    a_stream,
    assert_in_key_order,
    ev,
    insert,
    nats_answers,
    wait_for_drain,
    wait_until,
)

if not nats_answers():
    pytest.skip(f"no NATS server answers on 127.0.0.1:{NATS_PORT}", allow_module_level=True)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    async with a_stream() as created:
        yield created


async def test_5000_events_through_the_relay_are_stored_once_each_in_key_order(
    database_dsn: str, stream: Stream
) -> None:
    written = await trio.to_thread.run_sync(insert, database_dsn, 5000)
    sink = JetStreamSink(stream.url())
    with trio.fail_after(GUARD):
        async with open_relay(Config(dsn=database_dsn), sink) as handle:
            await wait_until(lambda: handle.statistics().delivered >= 5000)
        stored = await stream.read()
    assert pending_count(database_dsn) == 0
    assert Counter(m.id for m in stored) == Counter(written.keys())  # each id once
    assert_in_key_order(stored, written)
    for message in stored:
        key, payload, headers = written[message.id]
        assert message.subject == f"{stream.prefix}.orders"
        assert message.data == payload  # the bytes PostgreSQL sent, not re-encoded
        assert message.headers["trace"] == headers["trace"]
        assert message.headers["n"] == str(headers["n"])
        assert message.headers["Relay-Topic"] == "orders"
        assert message.headers.get("Relay-Key") == key
        assert "Relay-Created-At" in message.headers
    assert sink.statistics().stored == 5000


async def test_a_batch_delivered_again_is_stored_once(stream: Stream) -> None:
    events = [ev(id, key=f"k{id % 3}" if id % 4 else None) for id in range(1, 41)]
    with trio.fail_after(GUARD):
        first = JetStreamSink(stream.url())
        async with first:
            await first.deliver(events)
            await first.deliver(events)
        second = JetStreamSink(stream.url())  # another connection: the dedup is the server's
        async with second:
            await second.deliver(events[10:30])
        stored = await stream.read()
    assert sorted(m.id for m in stored) == [e.id for e in events]
    assert first.statistics().stored == 40
    assert first.statistics().duplicates == 40
    assert second.statistics().duplicates == 20


async def test_two_outboxes_with_their_own_msg_id_prefix_share_a_stream(stream: Stream) -> None:
    """Both have an event 1: with a prefix each, neither is taken for the other's duplicate."""
    with trio.fail_after(GUARD):
        for prefix in ("billing-", "shipping-"):
            sink = JetStreamSink(stream.url(msg_id_prefix=prefix))
            async with sink:
                await sink.deliver([ev(1, "a"), ev(2, "a")])
        stored = await stream.read()
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [
        "billing-1",
        "billing-2",
        "shipping-1",
        "shipping-2",
    ]


async def test_after_a_partial_delivery_the_retry_adds_only_what_failed(stream: Stream) -> None:
    """Event 2's topic is unroutable: event 4 of its key is held; the retry stores 2 and 4 once."""
    events = [ev(1, "a"), ev(2, "b", topic="no routes"), ev(3, "a"), ev(4, "b")]
    sink = JetStreamSink(stream.url())
    with trio.fail_after(GUARD):
        async with sink:
            with pytest.raises(PartialDelivery) as caught:
                await sink.deliver(events)
            assert caught.value.failures == {
                2: f"not a valid NATS subject: '{stream.prefix}.no routes'",
                4: "held behind event 2",
            }
            await sink.deliver([events[0], ev(2, "b"), events[2], events[3]])
        stored = await stream.read()
    assert [m.id for m in stored] == [1, 3, 2, 4]
    assert sink.statistics().duplicates == 2


async def test_relay_run_publishes_to_the_stream_named_in_its_sink_url(
    database_dsn: str, stream: Stream, tmp_path: Path
) -> None:
    written = await trio.to_thread.run_sync(insert, database_dsn, 20)
    with (tmp_path / "relay.err").open("wb") as stderr:
        command = [sys.executable, "-m", "relay.cli", "run", "--dsn", database_dsn]
        process = await trio.lowlevel.open_process(
            [*command, "--sink", stream.url()],
            stdout=stderr,
            stderr=stderr,
        )
    try:
        with trio.fail_after(GUARD):
            await wait_for_drain(database_dsn)
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(GUARD):
            code = await process.wait()
    log = (tmp_path / "relay.err").read_text()
    assert code == 0, log
    assert "Traceback" not in log
    stored = await stream.read()
    assert sorted(m.id for m in stored) == sorted(written)
