"""The Redis Streams sink against the Redis server on 127.0.0.1:6379, on the real clock.

The server is shared: every test writes under its own `relaytest:<uuid>:` prefix (streams and
dedup keys alike) and deletes what it finds there at the end, nothing else.
"""

from __future__ import annotations

import functools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import redis
import trio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, SinkUnavailable, open_relay
from relay.sinks import SinkOptions
from relay.sinks.redis_streams import RedisStreamSink

from ..conftest import pending_count
from ..redis_server import REDIS_PORT, redis_answers
from ..tcp_proxy import open_tcp_proxy

GUARD = 60  # seconds any one test may take before it counts as hung


if not redis_answers():
    pytest.skip(f"no Redis answers on 127.0.0.1:{REDIS_PORT}", allow_module_level=True)


@attrs.frozen
class Entry:
    """One stream entry as a consumer reads it."""

    stream: str
    fields: dict[bytes, bytes]

    @property
    def id(self) -> int:
        return int(self.fields[b"id"])

    @property
    def key(self) -> str | None:
        key = self.fields.get(b"key")
        return None if key is None else key.decode()


@attrs.frozen
class Namespace:
    """This test's corner of the shared server."""

    prefix: str
    client: redis.Redis

    def url(self, port: int = REDIS_PORT, query: str = "") -> str:
        return (
            f"redis://127.0.0.1:{port}/0?stream={self.prefix}{{topic}}"
            f"&dedup_prefix={self.prefix}dedup:{query}"
        )

    def stream(self, topic: str) -> str:
        return f"{self.prefix}{topic}"

    def read(self, *topics: str) -> list[Entry]:
        """Every entry of the topics' streams, each stream in its own order."""
        return [
            Entry(self.stream(topic), fields)
            for topic in topics
            for _, fields in self.client.xrange(self.stream(topic))
        ]

    def length(self, *topics: str) -> int:
        return sum(self.client.xlen(self.stream(topic)) for topic in topics)


@pytest.fixture
def space() -> Iterator[Namespace]:
    client = redis.Redis(port=REDIS_PORT)
    space = Namespace(f"relaytest:{uuid.uuid4().hex}:", client)
    try:
        yield space
    finally:
        mine = list(client.scan_iter(match=f"{space.prefix}*", count=1000))
        for start in range(0, len(mine), 1000):
            client.delete(*mine[start : start + 1000])
        client.close()


def ev(id: int, key: str | None = None, topic: str = "orders", size: int = 0) -> OutboxEvent:
    return OutboxEvent(
        id=id,
        topic=topic,
        key=key,
        payload_json=b'{"n": %d, "pad": "%s"}' % (id, b"x" * size),
        headers={"trace": f"t-{id}"},
    )


def insert(dsn: str, count: int) -> dict[int, tuple[str, str | None, bytes, dict[str, Any]]]:
    """`count` events over 50 keys (every tenth without a key) on two topics, a key on one topic.

    Returns each event's topic, key, payload bytes as PostgreSQL sends them, and headers.
    """
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers)"
            " SELECT CASE WHEN mod(g, 2) = 0 THEN 'orders' ELSE 'payments' END,"
            "  CASE WHEN mod(g, 10) = 0 THEN NULL ELSE 'k' || mod(g, 50) END,"
            "  jsonb_build_object('n', g, 'text', 'é ✓ \"q\"', 'list', jsonb_build_array(g, 1.50)),"
            "  jsonb_build_object('trace', 't-' || g)"
            " FROM generate_series(1, %s) g",
            [count],
        )
        rows = conn.execute(
            "SELECT id, topic, key, payload::text, headers FROM relay.outbox ORDER BY id"
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3].encode(), row[4]) for row in rows}


def check_once_in_key_order(
    entries: list[Entry], expected: dict[int, tuple[str, str | None, bytes, dict[str, Any]]]
) -> None:
    counts = Counter(entry.id for entry in entries)
    assert set(counts) == set(expected), "lost or foreign events"
    assert [id for id, n in counts.items() if n > 1] == [], "duplicates"
    by_key: defaultdict[str, list[int]] = defaultdict(list)
    for entry in entries:
        topic, key, payload, headers = expected[entry.id]
        assert entry.stream.endswith(f":{topic}")
        assert entry.key == key
        assert entry.fields[b"topic"] == topic.encode()
        assert entry.fields[b"payload"] == payload
        assert json.loads(entry.fields[b"headers"]) == headers
        if key is not None:
            by_key[key].append(entry.id)
    assert len(by_key) == 45
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"key {key} out of order"


async def wait_until(condition: Callable[[], bool], interval: float = 0.02) -> None:
    """Poll `condition`: what it watches (the database, the broker) cannot signal us."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


async def test_5000_events_through_the_relay_arrive_once_each_in_key_order(
    database_dsn: str, space: Namespace
) -> None:
    expected = insert(database_dsn, 5000)
    sink = RedisStreamSink(space.url(), SinkOptions())
    with trio.fail_after(GUARD):
        async with open_relay(Config(dsn=database_dsn), sink) as handle:
            await wait_until(lambda: pending_count(database_dsn) == 0, interval=0.1)
            # The last commit is visible a moment before the drainer counts its batch.
            await wait_until(lambda: handle.statistics().delivered == 5000)
    check_once_in_key_order(space.read("orders", "payments"), expected)
    assert sink.statistics().added == 5000
    [(_, first)] = space.client.xrange(space.stream("orders"), count=1)
    assert set(first) == {b"id", b"topic", b"key", b"headers", b"payload", b"created_at"}


async def test_a_redelivered_batch_adds_nothing_twice(space: Namespace) -> None:
    events = [ev(id, key=f"k{id % 3}" if id % 4 else None) for id in range(1, 41)]
    sink = RedisStreamSink(space.url(), SinkOptions())
    with trio.fail_after(GUARD):
        async with sink:
            await sink.deliver(events[:25])  # say the commit after this was lost
            await sink.deliver(events)
        async with sink:  # a new connection, as after a restart
            await sink.deliver(events)
    assert [entry.id for entry in space.read("orders")] == list(range(1, 41))
    assert sink.statistics().added == 40
    assert sink.statistics().duplicates == 25 + 40


def broker_loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "relay-broker-loop"]


async def test_the_client_runs_in_a_thread_of_the_sinks_own_while_entered_and_only_then(
    space: Namespace,
) -> None:
    before = broker_loop_threads()
    sink = RedisStreamSink(space.url(), SinkOptions())
    with trio.fail_after(GUARD):
        async with sink:
            assert len(broker_loop_threads()) == len(before) + 1
            await sink.deliver([ev(1)])
        assert broker_loop_threads() == before
        with socket.socket() as closed:  # a port just freed: nothing listens there
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        with pytest.raises(SinkUnavailable):
            async with RedisStreamSink(f"redis://127.0.0.1:{port}", SinkOptions()):
                pass
        assert broker_loop_threads() == before
    assert [entry.id for entry in space.read("orders")] == [1]


async def test_without_dedup_a_redelivery_adds_again(space: Namespace) -> None:
    sink = RedisStreamSink(space.url(query="&dedup_ttl=0&maxlen=1000"), SinkOptions())
    with trio.fail_after(GUARD):
        async with sink:
            await sink.deliver([ev(1), ev(2)])
            await sink.deliver([ev(1), ev(2)])
    assert [entry.id for entry in space.read("orders")] == [1, 2, 1, 2]
    assert list(space.client.scan_iter(match=f"{space.prefix}dedup:*")) == []


async def test_a_wrong_type_at_the_stream_is_retryable_and_holds_back_its_key(
    space: Namespace,
) -> None:
    space.client.set(space.stream("broken"), "not a stream")
    sink = RedisStreamSink(space.url(), SinkOptions())
    events = [ev(1, "a", "broken"), ev(2, "b"), ev(3, "a"), ev(4, None, "broken"), ev(5, "b")]
    with trio.fail_after(GUARD), pytest.raises(PartialDelivery) as caught:
        async with sink:
            await sink.deliver(events)
    wrongtype = "Redis: WRONGTYPE Operation against a key holding the wrong kind of value"
    assert caught.value.failures == {1: wrongtype, 3: "held behind event 1", 4: wrongtype}
    assert caught.value.permanent == frozenset()
    assert [entry.id for entry in space.read("orders")] == [2, 5]

    space.client.delete(space.stream("broken"))  # fixed: the retry adds the rest, in order
    with trio.fail_after(GUARD):
        async with sink:
            await sink.deliver(events)
    assert [entry.id for entry in space.read("broken", "orders")] == [1, 4, 2, 5, 3]


async def test_a_failure_in_the_middle_of_a_key_in_a_large_batch_keeps_the_key_in_order(
    space: Namespace,
) -> None:
    """A batch split into groups by key: key k5 moves to a stream whose key holds a string from
    event 55 on; the later events of k5 are held, not added, and the retry adds them in order."""
    space.client.set(space.stream("broken"), "not a stream")
    events = [
        ev(id, f"k{id % 10}", "broken" if id % 10 == 5 and id >= 55 else "orders")
        for id in range(1, 401)
    ]
    sink = RedisStreamSink(space.url(), SinkOptions())
    with trio.fail_after(GUARD):
        async with sink:
            with pytest.raises(PartialDelivery) as caught:
                await sink.deliver(events)
            held = list(range(65, 401, 10))
            assert caught.value.failures.keys() == {55, *held}
            assert caught.value.failures[55].startswith("Redis: WRONGTYPE")
            assert {caught.value.failures[id] for id in held} == {"held behind event 55"}
            space.client.delete(space.stream("broken"))
            await sink.deliver(events)  # the retry, the stream fixed
    assert sink.statistics().added == 400
    assert sink.statistics().duplicates == 400 - 35
    assert [entry.id for entry in space.read("broken")] == list(range(55, 401, 10))
    by_key: defaultdict[str, list[int]] = defaultdict(list)
    for entry in space.read("orders"):
        assert entry.key is not None
        by_key[entry.key].append(entry.id)
    assert by_key["k5"] == [5, 15, 25, 35, 45]
    for key, ids in by_key.items():
        assert ids == sorted(ids), f"key {key} out of order"


async def test_a_payload_too_large_for_redis_is_buried_and_its_key_goes_on(
    database_dsn: str, space: Namespace
) -> None:
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) VALUES"
            " ('orders', 'k', jsonb_build_object('big', repeat('x', 100))),"
            " ('orders', 'k', '{\"small\": 1}'), ('orders', 'j', '{\"small\": 2}')"
        )
    sink = RedisStreamSink(space.url(), SinkOptions(), max_payload=64)
    # A poll far away: the event held behind the buried one is claimed again at once.
    config = Config(dsn=database_dsn, poll_interval=3600.0)
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            await wait_until(lambda: pending_count(database_dsn) == 0)
            assert handle.statistics().dead == 1
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT id, last_error FROM relay.outbox_dead").fetchall()
    assert dead == [(1, "too large for Redis: 111 bytes, the limit is 64")]
    # Event 2 waited behind event 1's burial; event 3, of another key, did not.
    assert sorted(entry.id for entry in space.read("orders")) == [2, 3]


async def test_a_server_not_there_makes_entering_raise_sink_unavailable() -> None:
    with socket.socket() as closed:  # a port just freed: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with trio.fail_after(GUARD), pytest.raises(SinkUnavailable, match=f"127.0.0.1:{port}"):
        async with RedisStreamSink(f"redis://app:hunter2@127.0.0.1:{port}", SinkOptions()):
            pass


async def _silent_after_config(stream: trio.SocketStream) -> None:
    """A Redis that answers the handshake and CONFIG GET as a real server does, in the protocol the
    client chose (RESP3 after `HELLO 3`, RESP2 otherwise), then never answers again."""
    buffer = b""
    resp3 = False
    async with stream:
        while data := await stream.receive_some(65536):
            buffer += data
            while buffer.startswith(b"*") and b"\r\n" in buffer:
                command, buffer = _split_command(buffer)
                if command is None:
                    break
                name = command[0].upper()
                if name == b"HELLO":
                    resp3 = command[1:2] == [b"3"]
                    await stream.send_all(_hello_reply(resp3))
                elif name == b"CONFIG":
                    pair = b"$18\r\nproto-max-bulk-len\r\n$3\r\n512\r\n"
                    await stream.send_all((b"%1\r\n" if resp3 else b"*2\r\n") + pair)
                elif name == b"EVALSHA":
                    await trio.sleep_forever()
                else:
                    await stream.send_all(b"+OK\r\n")


def _hello_reply(resp3: bool) -> bytes:
    """What Redis 7 answers to HELLO: a map in RESP3, a flat array of pairs in RESP2."""
    fields = [
        (b"server", b"$5\r\nredis\r\n"),
        (b"version", b"$5\r\n7.2.4\r\n"),
        (b"proto", b":3\r\n" if resp3 else b":2\r\n"),
        (b"id", b":7\r\n"),
        (b"mode", b"$10\r\nstandalone\r\n"),
        (b"role", b"$6\r\nmaster\r\n"),
        (b"modules", b"*0\r\n"),
    ]
    head = b"%%%d\r\n" % len(fields) if resp3 else b"*%d\r\n" % (2 * len(fields))
    return head + b"".join(b"$%d\r\n%s\r\n%s" % (len(k), k, v) for k, v in fields)


def _split_command(buffer: bytes) -> tuple[list[bytes] | None, bytes]:
    header, _, rest = buffer.partition(b"\r\n")
    parts: list[bytes] = []
    for _ in range(int(header[1:])):
        length_line, sep, rest = rest.partition(b"\r\n")
        length = int(length_line[1:]) if sep else -1
        if length < 0 or len(rest) < length + 2:
            return None, buffer  # not all here yet
        parts.append(rest[:length])
        rest = rest[length + 2 :]
    return parts, rest


async def test_no_answer_within_the_timeout_is_a_retryable_failure(
    nursery: trio.Nursery,
) -> None:
    [listener] = await nursery.start(
        functools.partial(trio.serve_tcp, _silent_after_config, 0, host="127.0.0.1")
    )
    port = listener.socket.getsockname()[1]
    sink = RedisStreamSink(f"redis://127.0.0.1:{port}", SinkOptions(timeout=0.3))
    with trio.fail_after(GUARD), pytest.raises(PartialDelivery) as caught:
        async with sink:
            await sink.deliver([ev(1, "a"), ev(2, "b"), ev(3, size=600)])
    timeout = "no answer from Redis within 0.3s"
    assert caught.value.failures == {
        1: timeout,
        2: timeout,
        3: "too large for Redis: 619 bytes, the limit is 512",
    }
    assert caught.value.permanent == {3}


async def test_cutting_the_connection_mid_run_loses_nothing_and_duplicates_nothing(
    database_dsn: str, space: Namespace
) -> None:
    expected = insert(database_dsn, 2000)
    config = Config(
        dsn=database_dsn,
        batch_size=20,
        max_attempts=1000,
        retry_backoff=Backoff(base=0.05, cap=0.2),
        restart_backoff=Backoff(base=0.05, cap=0.2),
        restart_intensity=1000,
    )
    with trio.fail_after(GUARD):
        async with open_tcp_proxy(REDIS_PORT) as proxy:
            sink = RedisStreamSink(space.url(proxy.port), SinkOptions(timeout=2))
            async with open_relay(config, sink) as handle:
                await wait_until(lambda: handle.statistics().delivered >= 200, interval=0.005)
                proxy.go_down()
                # More work while the broker is away, in case the first 2000 were all through.
                expected |= insert(database_dsn, 500)
                await trio.sleep(1.5)
                down = handle.statistics()
                assert (down.restarts, "sink" in down.outages) == (0, True)  # waited, not a crash
                assert pending_count(database_dsn) > 0
                proxy.come_back()
                await wait_until(lambda: pending_count(database_dsn) == 0, interval=0.1)
    check_once_in_key_order(space.read("orders", "payments"), expected)


def test_relay_run_with_a_redis_sink_url_delivers(
    database_dsn: str, space: Namespace, tmp_path: Path
) -> None:
    expected = insert(database_dsn, 100)
    err = tmp_path / "relay.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay.cli",
                "run",
                "--dsn",
                database_dsn,
                "--sink",
                space.url(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + GUARD
        while space.length("orders", "payments") < 100 or pending_count(database_dsn) > 0:
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "timed out waiting for the events"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0, err.read_text()
    assert "Traceback" not in err.read_text()
    entries = space.read("orders", "payments")
    assert sorted(entry.id for entry in entries) == sorted(expected)
