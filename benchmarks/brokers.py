"""Brokers: `relay run --sink <broker URL>` draining a backlog into this machine's brokers.

Each broker gets a destination of its own for the run (a JetStream stream, a Redis stream, a
RabbitMQ exchange and queue), counted afterwards to check that every event arrived once, and
deleted. A broker that does not answer on 127.0.0.1 is reported as skipped.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from .report import Table
from .server import KEYS, TOPIC, Bench, start_relay, wait_empty

# Publishes in flight across keys, for NATS and RabbitMQ (Redis adds a batch per script call).
_CONCURRENCY = "64"


@attrs.frozen
class Destination:
    """Where one broker run writes, how to count what arrived there, and how to remove it."""

    url: str
    count: Callable[[], int]
    remove: Callable[[], None]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _run(coroutine: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coroutine())  # type: ignore[arg-type]


def nats_destination(tag: str) -> Destination:
    import nats

    stream, prefix = f"RELAYBENCH_{tag}", f"relaybench.{tag}"

    async def with_js(action: Callable[[Any], Awaitable[Any]]) -> Any:
        client = await nats.connect("nats://127.0.0.1:4222")
        try:
            return await action(client.jetstream())
        finally:
            await client.close()

    async def create(js: Any) -> None:
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"], duplicate_window=120)

    async def count(js: Any) -> int:
        return int((await js.stream_info(stream)).state.messages)

    async def delete(js: Any) -> None:
        await js.delete_stream(stream)

    _run(lambda: with_js(create))
    return Destination(
        url=f"nats://127.0.0.1:4222?subject={prefix}.{{topic}}",
        count=lambda: int(_run(lambda: with_js(count))),
        remove=lambda: _run(lambda: with_js(delete)),
    )


def redis_destination(tag: str) -> Destination:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    prefix = f"relaybench:{tag}"

    def remove() -> None:
        for name in client.scan_iter(match=f"{prefix}:*", count=10_000):
            client.delete(name)
        for name in client.scan_iter(match=f"relay:dedup:{prefix}:*", count=10_000):
            client.delete(name)
        client.close()

    return Destination(
        url=f"redis://127.0.0.1:6379/0?stream={prefix}:{{topic}}",
        count=lambda: int(client.xlen(f"{prefix}:{TOPIC}")),
        remove=remove,
    )


def rabbitmq_destination(tag: str) -> Destination:
    import aio_pika

    exchange, queue = f"relaybench-{tag}", f"relaybench-{tag}"
    url = "amqp://guest:guest@127.0.0.1:5672/"

    async def with_channel(action: Callable[[Any], Awaitable[Any]]) -> Any:
        connection = await aio_pika.connect(url)
        try:
            return await action(await connection.channel())
        finally:
            await connection.close()

    async def create(channel: Any) -> None:
        declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC)
        bound = await channel.declare_queue(queue, durable=True)
        await bound.bind(declared, routing_key="#")

    async def count(channel: Any) -> int:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count)

    async def delete(channel: Any) -> None:
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)

    _run(lambda: with_channel(create))
    return Destination(
        url=f"amqp://guest:guest@127.0.0.1:5672/?exchange={exchange}",
        count=lambda: int(_run(lambda: with_channel(count))),
        remove=lambda: _run(lambda: with_channel(delete)),
    )


BROKERS: dict[str, tuple[int, Callable[[str], Destination]]] = {
    "NATS JetStream (nats://)": (4222, nats_destination),
    "Redis Streams (redis://)": (6379, redis_destination),
    "RabbitMQ (amqp://)": (5672, rabbitmq_destination),
}


def once(bench: Bench, name: str, n: int, log: Any) -> list[str]:
    port, make = BROKERS[name]
    if not _answers(port):
        log(f"  {name}: skipped, nothing answers on 127.0.0.1:{port}")
        return [name, "skipped", "", f"no server on 127.0.0.1:{port}"]
    destination = make(uuid.uuid4().hex[:12])
    try:
        bench.fill(0)
        with tempfile.TemporaryDirectory() as folder:
            relay = start_relay(
                bench,
                Path(folder),
                "relay",
                None,
                "--sink",
                destination.url,
                "--sink-concurrency",
                _CONCURRENCY,
            )
            try:
                committed = bench.insert(n)
                emptied = wait_empty(bench, timeout=1800)
            finally:
                bench.processes.stop(relay)
        arrived, dead = destination.count(), bench.dead()
    finally:
        destination.remove()
    elapsed = emptied - committed
    log(f"  {name}: {elapsed:.2f} s, {n / elapsed:,.0f} events/s, {arrived:,} arrived, {dead} dead")
    note = (
        "each event once" if arrived == n and not dead else f"{arrived - n:+,} vs sent, {dead} dead"
    )
    return [name, f"{n / elapsed:,.0f}", f"{arrived:,}", note]


def run(bench: Bench, n: int, log: Any) -> Table:
    rows = [once(bench, name, n, log) for name in BROKERS]
    return Table(
        f"brokers: one `relay run` draining {n:,} events over {KEYS:,} keys into each broker",
        ["broker", "events/s", "in the broker", "note"],
        rows,
        notes=[
            f"`--sink-concurrency {_CONCURRENCY}` (NATS, RabbitMQ), batch 500; the broker on "
            "this machine, 127.0.0.1; counted in the broker afterwards (each event once: the "
            "count equals the events sent)"
        ],
        left=(0, 3),
    )
