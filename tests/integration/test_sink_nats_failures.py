"""The JetStream sink's failure paths against the NATS server on 127.0.0.1:4222, on the real
clock: no stream, a refusal, an event too big, no ack, a lost connection, a cancelled batch, and
key order kept in the stream through each."""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import psycopg
import pytest
import trio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, SinkUnavailable, open_relay
from relay.aio import aio_as_trio
from relay.sinks import SinkOptions
from relay.sinks.nats_jetstream import JetStreamSink

from ..tcp_proxy import open_tcp_proxy
from .nats_streams import (
    GUARD,
    NATS_PORT,
    Stream,
    a_stream,
    assert_in_key_order,
    create_stream,
    delete_stream,
    ev,
    insert,
    nats_answers,
    nats_client,
    wait_for_drain,
    wait_until,
)

if not nats_answers():
    pytest.skip(f"no NATS server answers on 127.0.0.1:{NATS_PORT}", allow_module_level=True)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    async with a_stream() as created:
        yield created


async def test_breaking_the_connection_mid_run_loses_nothing_and_duplicates_nothing(
    database_dsn: str, stream: Stream
) -> None:
    written = await trio.to_thread.run_sync(insert, database_dsn, 2000)
    config = Config(
        dsn=database_dsn,
        batch_size=50,
        max_attempts=1000,
        retry_backoff=Backoff(base=0.05, cap=0.2, jitter=0),
        restart_backoff=Backoff(base=0.05, cap=0.2, jitter=0),
        restart_intensity=1000,
    )
    with trio.fail_after(GUARD):
        async with open_tcp_proxy(NATS_PORT) as proxy:
            sink = JetStreamSink(stream.url(port=proxy.port), SinkOptions(timeout=2))
            async with open_relay(config, sink) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 300)
                proxy.go_down()
                # More work while the broker is away, in case the first 2000 were all through.
                written |= await trio.to_thread.run_sync(insert, database_dsn, 200)
                await trio.sleep(1.5)
                during = handle.statistics()
                assert (during.restarts, "sink" in during.outages) == (
                    0,
                    True,
                )  # waited, not a crash
                assert during.delivered < len(written)
                proxy.come_back()
                await wait_for_drain(database_dsn)
        stored = await stream.read()
    assert Counter(m.id for m in stored) == Counter(written.keys())  # none lost, none twice
    assert_in_key_order(stored, written)
    assert sink.statistics().connects > 1


async def test_a_subject_no_stream_captures_is_sink_unavailable_naming_it(stream: Stream) -> None:
    """The destination's configuration, not the event's fault: no attempt may be spent on it."""
    sink = JetStreamSink(f"nats://127.0.0.1:{NATS_PORT}?subject=relaytest.nowhere.{{topic}}")
    with trio.fail_after(GUARD):
        async with sink:
            with pytest.raises(SinkUnavailable) as caught:
                await sink.deliver([ev(1, key="a"), ev(2, key="b"), ev(3)])
    message = str(caught.value)
    assert message.startswith("no JetStream stream captures subject 'relaytest.nowhere.orders'")
    assert "nats stream add" in message


async def test_through_the_relay_no_stream_holds_the_events_untouched_until_one_exists(
    database_dsn: str,
) -> None:
    """Before: every attempt burnt and the events buried; now they wait, attempts 0."""
    unique = uuid.uuid4().hex[:12]
    prefix = f"relaytest.{unique}"
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload)"
            " SELECT 'orders', 'k' || g, '{}' FROM generate_series(1, 3) g"
        )
    sink = JetStreamSink(f"nats://127.0.0.1:{NATS_PORT}?subject={prefix}.{{topic}}")
    fast = Backoff(base=0.05, cap=0.05, jitter=0.0)
    config = Config(
        dsn=database_dsn,
        max_attempts=2,
        retry_backoff=fast,
        restart_backoff=fast,
        restart_intensity=1000,
        poll_interval=0.2,
    )
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            await trio.sleep(1.5)  # time enough, before, to bury them all (max_attempts=2)
            assert (handle.statistics().retried, handle.statistics().dead) == (0, 0)
            with psycopg.connect(database_dsn) as conn:
                rows = conn.execute("SELECT attempts FROM relay.outbox").fetchall()
            assert rows == [(0,), (0,), (0,)]
            created = Stream(name=f"relaytest_{unique}", prefix=prefix)
            async with nats_client() as client:
                await aio_as_trio(client.jetstream().add_stream)(
                    name=created.name, subjects=[f"{prefix}.>"]
                )
            try:
                await wait_for_drain(database_dsn)
                stored = await created.read()
            finally:
                await delete_stream(created)
    assert len(stored) == 3
    assert handle.statistics().dead == 0


async def test_a_subject_captured_by_another_stream_than_expected_is_refused(
    stream: Stream,
) -> None:
    sink = JetStreamSink(stream.url(stream="SOMEONE_ELSE"))
    with trio.fail_after(GUARD):
        async with sink:
            with pytest.raises(PartialDelivery) as caught:
                await sink.deliver([ev(1)])
        assert await stream.read() == []
    assert "expected stream does not match" in caught.value.failures[1]
    assert caught.value.permanent == frozenset()


async def test_unroutable_and_too_big_events_are_buried_and_their_key_goes_on(
    database_dsn: str,
) -> None:
    small = await create_stream(max_msg_size=200)
    try:
        with psycopg.connect(database_dsn) as conn:
            ids = [
                conn.execute(
                    "INSERT INTO relay.outbox (topic, key, payload) VALUES (%s, %s, %s)"
                    " RETURNING id",
                    [topic, key, payload],
                ).fetchone()[0]  # type: ignore[index]
                for topic, key, payload in [
                    ("orders", "k", '{"pad": "%s"}' % ("x" * 300)),
                    ("orders", "k", '{"n": 2}'),
                    ("orders", None, '{"n": 3}'),  # keyless: cannot fill {key}
                ]
            ]
        sink = JetStreamSink(small.url(subject=f"{small.prefix}.{{topic}}.{{key}}"))
        with trio.fail_after(GUARD):
            # A poll far away: the event held behind the buried one is claimed again at once.
            config = Config(dsn=database_dsn, poll_interval=3600.0)
            async with open_relay(config, sink) as handle:
                await wait_until(lambda: handle.statistics().dead == 2)
                await wait_until(lambda: handle.statistics().delivered == 1)
            stored = await small.read()
    finally:
        await delete_stream(small)
    assert [m.id for m in stored] == [ids[1]]
    with psycopg.connect(database_dsn) as conn:
        rows = conn.execute("SELECT id, last_error FROM relay.outbox_dead").fetchall()
    dead: dict[int, str] = dict(rows)
    assert dead.keys() == {ids[0], ids[2]}
    assert "message size exceeds maximum allowed" in dead[ids[0]]
    assert "needs a key and the event has none" in dead[ids[2]]


async def test_a_connection_lost_mid_batch_is_sink_unavailable_at_once_and_entering_reconnects(
    stream: Stream,
) -> None:
    """The acks in flight are abandoned at once, not waited for until the 30 s timeout."""
    events = [ev(id, key=f"k{id % 50}") for id in range(1, 1001)]
    with trio.fail_after(GUARD):
        async with open_tcp_proxy(NATS_PORT) as proxy:
            sink = JetStreamSink(stream.url(port=proxy.port), SinkOptions(timeout=30))
            async with sink:

                async def cut_after_some_acks() -> None:
                    await wait_until(lambda: sink.statistics().stored >= 100)
                    proxy.break_connections()

                with trio.fail_after(10):  # well before the acks could time out
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(cut_after_some_acks)
                        with pytest.raises(SinkUnavailable, match="lost the connection to NATS"):
                            await sink.deliver(events)
                with pytest.raises(SinkUnavailable, match="lost the connection to NATS"):
                    await sink.deliver(events)  # and stays so until entered again
            async with sink:
                await sink.deliver(events)
        stored = await stream.read()
    assert sorted(m.id for m in stored) == [e.id for e in events]
    assert sink.statistics().connects == 2
    assert sink.statistics().duplicates >= 100  # those acked before the cut, published again


async def test_a_server_that_does_not_answer_is_sink_unavailable_without_the_password() -> None:
    with socket.socket() as closed:  # a port just freed: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sink = JetStreamSink(f"nats://relay:hunter2@127.0.0.1:{port}")
    with trio.fail_after(GUARD):
        with pytest.raises(SinkUnavailable) as caught:
            async with sink:
                pass
    assert f"cannot connect to NATS (nats://127.0.0.1:{port}: " in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_refusal_in_the_middle_of_a_key_keeps_the_key_in_order_in_the_stream(
    stream: Stream,
) -> None:
    """JetStream refuses event 2 (a writer's `Nats-Expected-Last-Sequence` it does not meet):
    event 3 of its key is not stored before it; once 2 goes through, the stream holds 1, 2, 3."""
    refused = OutboxEvent(
        id=2,
        topic="orders",
        key="a",
        payload_json=b'{"n": 2}',
        headers={"Nats-Expected-Last-Sequence": "999999"},
    )
    events = [ev(1, "a"), refused, ev(3, "a"), ev(4, "b"), ev(5, "b")]
    sink = JetStreamSink(stream.url())
    with trio.fail_after(GUARD):
        async with sink:
            with pytest.raises(PartialDelivery) as caught:
                await sink.deliver(events)
            assert caught.value.failures.keys() == {2, 3}
            assert "wrong last sequence" in caught.value.failures[2]
            assert caught.value.failures[3] == "held behind event 2"
            assert caught.value.permanent == frozenset()
            assert sorted(m.id for m in await stream.read()) == [1, 4, 5]
            await sink.deliver([ev(2, "a"), ev(3, "a")])  # the retry, the refusal gone
        stored = await stream.read()
    by_key: dict[str, list[int]] = {}
    for message in stored:
        by_key.setdefault(message.headers["Relay-Key"], []).append(message.id)
    assert by_key == {"a": [1, 2, 3], "b": [4, 5]}


async def test_a_batch_cancelled_by_its_caller_stops_and_the_sink_delivers_it_again_once_each(
    stream: Stream,
) -> None:
    """Cancelling `deliver` cancels the publishes on the client's own loop and waits for them:
    the open connection stays usable, and the batch sent again is stored once per id, in order."""
    events = [ev(id, key=f"k{id % 20}") for id in range(1, 2001)]
    sink = JetStreamSink(stream.url())
    with trio.fail_after(GUARD):
        async with sink:
            with trio.CancelScope() as scope:

                async def cancel_after_some_acks() -> None:
                    await wait_until(lambda: sink.statistics().stored >= 200)
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_after_some_acks)
                    await sink.deliver(events)
                    nursery.cancel_scope.cancel()
            assert scope.cancelled_caught
            assert 200 <= sink.statistics().stored < len(events)
            await sink.deliver(events)
        stored = await stream.read()
    assert sorted(m.id for m in stored) == [e.id for e in events]
    by_key: dict[str, list[int]] = {}
    for message in stored:
        by_key.setdefault(message.headers["Relay-Key"], []).append(message.id)
    assert all(ids == sorted(ids) for ids in by_key.values())


async def test_an_ack_that_never_comes_fails_its_event_when_the_batch_times_out(
    stream: Stream,
) -> None:
    """A plain subscriber, not a stream, takes event 2's subject and never answers: event 2 is
    retried (no ack within the timeout), event 3 of its key is held, the other key is stored."""
    silent = f"{stream.prefix}-silent"  # outside the stream's `{prefix}.>`
    stored_topic = f"{stream.prefix}.orders"
    events = [
        ev(1, "a", topic=stored_topic),
        ev(2, "b", topic=silent),
        ev(3, "b", topic=stored_topic),
        ev(4, "a", topic=stored_topic),
    ]
    sink = JetStreamSink(f"nats://127.0.0.1:{NATS_PORT}?subject={{topic}}", SinkOptions(timeout=1))
    with trio.fail_after(GUARD):
        async with nats_client() as listener:
            await aio_as_trio(listener.subscribe)(silent)  # takes the message, answers nothing
            async with sink:
                with pytest.raises(PartialDelivery) as caught:
                    await sink.deliver(events)
        stored = await stream.read()
    assert caught.value.failures == {
        2: f"no ack for subject {silent!r} within 1s",
        3: "held behind event 2",
    }
    assert caught.value.permanent == frozenset()
    assert [m.id for m in stored] == [1, 4]
