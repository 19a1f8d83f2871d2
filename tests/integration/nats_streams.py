"""Streams of a test's own on the NATS server on 127.0.0.1:4222, and what the JetStream sink tests
share: events to publish or insert, waiting, reading a stream back, checking key order.

Each test publishes into a stream of its own (a unique name and subject prefix), deleted at the end:
the server is shared with other tests and sessions.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import nats
import psycopg
import trio
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from relay import OutboxEvent
from relay.aio import aio_as_trio, asyncio_loop

from ..conftest import pending_count

NATS_PORT = 4222
GUARD = 60


def nats_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", NATS_PORT), timeout=1) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


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


@asynccontextmanager
async def a_stream(**config: Any) -> AsyncIterator[Stream]:
    """A stream of the test's own, deleted on leaving."""
    created = await create_stream(**config)
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
