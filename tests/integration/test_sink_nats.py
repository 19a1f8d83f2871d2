"""The JetStream sink against the NATS server on 127.0.0.1:4222, on the real clock.

Each test publishes into a stream of its own (a unique name and subject prefix), deleted at the end:
the server is shared with other tests and sessions.
"""

from __future__ import annotations

import signal
import socket
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import nats
import psycopg
import pytest
import trio
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from relay import Backoff, Config, OutboxEvent, PartialDelivery, SinkUnavailable, open_relay
from relay.aio import aio_as_trio, asyncio_loop
from relay.sinks import SinkOptions
from relay.sinks.nats_jetstream import JetStreamSink

from ..conftest import pending_count
from ..tcp_proxy import open_tcp_proxy

NATS_PORT = 4222
GUARD = 60


def _nats_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", NATS_PORT), timeout=1) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


if not _nats_answers():
    pytest.skip(f"no NATS server answers on 127.0.0.1:{NATS_PORT}", allow_module_level=True)


@asynccontextmanager
async def nats_client() -> AsyncIterator[Client]:
    """A connection of the test's own, to set up streams and read them back."""
    async with asyncio_loop():
        client = await aio_as_trio(nats.connect)(f"nats://127.0.0.1:{NATS_PORT}")
        try:
            yield client
        finally:
            with trio.move_on_after(5, shield=True):
                await aio_as_trio(client.close)()


@attrs.frozen
class Stored:
    """One message as the stream holds it."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def id(self) -> int:
        return int(self.headers["Nats-Msg-Id"])


@attrs.frozen
class Stream:
    """A stream of this test's own: every subject under `prefix` goes to it."""

    name: str
    prefix: str

    def url(self, port: int = NATS_PORT, **params: str) -> str:
        query = {"subject": f"{self.prefix}.{{topic}}", "stream": self.name, **params}
        return f"nats://127.0.0.1:{port}?" + "&".join(f"{k}={v}" for k, v in query.items() if v)

    async def read(self) -> list[Stored]:
        """Every message in the stream, in stream order."""
        async with nats_client() as client:
            js = client.jetstream()
            info = await aio_as_trio(js.stream_info)(self.name)
            config = ConsumerConfig(ack_policy=AckPolicy.NONE)
            sub = await aio_as_trio(js.pull_subscribe)(
                f"{self.prefix}.>", stream=self.name, config=config
            )
            stored: list[Stored] = []
            while len(stored) < info.state.messages:
                wanted = min(1000, info.state.messages - len(stored))
                for msg in await aio_as_trio(sub.fetch)(batch=wanted, timeout=10):
                    seq = msg.metadata.sequence.stream
                    stored.append(Stored(seq, msg.subject, dict(msg.headers or {}), msg.data))
            await aio_as_trio(sub.unsubscribe)()
        assert [m.seq for m in stored] == sorted(m.seq for m in stored)
        return stored


async def create_stream(**config: Any) -> Stream:
    unique = uuid.uuid4().hex[:12]
    stream = Stream(name=f"relaytest_{unique}", prefix=f"relaytest.{unique}")
    async with nats_client() as client:
        await aio_as_trio(client.jetstream().add_stream)(
            name=stream.name, subjects=[f"{stream.prefix}.>"], duplicate_window=120, **config
        )
    return stream


async def delete_stream(stream: Stream) -> None:
    with trio.move_on_after(10, shield=True):
        async with nats_client() as client:
            await aio_as_trio(client.jetstream().delete_stream)(stream.name)


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    created = await create_stream()
    try:
        yield created
    finally:
        await delete_stream(created)


def ev(id: int, key: str | None = None, topic: str = "orders") -> OutboxEvent:
    return OutboxEvent(id=id, topic=topic, key=key, payload_json=b'{"n": %d}' % id)


def insert(dsn: str, count: int) -> dict[int, tuple[str | None, bytes, dict[str, Any]]]:
    """`count` events over 50 keys, every 25th keyless; their key, payload text and headers."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers)"
            " SELECT 'orders', CASE WHEN mod(g, 25) = 0 THEN NULL ELSE 'k' || mod(g, 50) END,"
            " jsonb_build_object('n', g, 'text', 'é ✓ \"q\"'),"
            " jsonb_build_object('trace', 't-' || g, 'n', g)"
            " FROM generate_series(1, %s) g"
            " RETURNING id, key, payload::text, headers",
            [count],
        ).fetchall()
    return {id: (key, payload.encode(), headers) for id, key, payload, headers in rows}


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (another process or a thread: nothing to signal us)
        await trio.sleep(0.05)


async def wait_for_drain(dsn: str) -> None:
    while await trio.to_thread.run_sync(pending_count, dsn):  # noqa: ASYNC110 (a database)
        await trio.sleep(0.1)


def assert_in_key_order(
    stored: list[Stored], written: dict[int, tuple[str | None, bytes, dict[str, Any]]]
) -> None:
    by_key: dict[str | None, list[int]] = {}
    for message in stored:
        by_key.setdefault(message.headers.get("Relay-Key"), []).append(message.id)
    for key, ids in by_key.items():
        if key is not None:
            assert ids == sorted(ids), f"key {key} out of order"
    assert {key for key, _, _ in written.values()} == set(by_key)


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
