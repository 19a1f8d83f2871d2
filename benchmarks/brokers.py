"""Brokers: `relay run --sink <broker URL>` draining a backlog into this machine's brokers.

Each broker gets a destination of its own for the run (a JetStream stream, a Redis stream, a
RabbitMQ exchange and queue), counted afterwards to check that every event arrived once, and
deleted. A broker that does not answer on 127.0.0.1 is reported as skipped.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from .report import Table, median
from .server import TOPIC, Bench, start_relay, wait_empty

# Publishes in flight across keys, for NATS and RabbitMQ (Redis adds a batch per script call).
_CONCURRENCY = "64"


@attrs.frozen
class Destination:
    """Where one broker run writes, how to count what arrived there, and how to remove it
    (leaving a `with` block does)."""

    url: str
    count: Callable[[], int]
    remove: Callable[[], None]

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


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


def rabbitmq_destination(tag: str, queue_type: str = "quorum") -> Destination:
    """An exchange and a durable queue of `queue_type` bound to it.

    A quorum queue unless said: RabbitMQ's recommended type where messages must not be lost (a
    classic queue's confirms, unconsumed, are slow in the tail: docs/brokers-performance.md).
    """
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
        arguments = {"x-queue-type": queue_type}
        bound = await channel.declare_queue(queue, durable=True, arguments=arguments)
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


BROKERS: dict[str, tuple[int, str, str, Callable[[str], Destination]]] = {
    # name: port, client_limit's name for it, its window (tuned on this machine), destination
    "NATS JetStream (nats://)": (4222, "nats", "1024", nats_destination),
    "Redis Streams (redis://)": (6379, "redis", "4", redis_destination),
    "RabbitMQ (amqp://)": (5672, "rabbitmq", "256", rabbitmq_destination),
}


def _relay_rate(bench: Bench, url: str, n: int, keys: int) -> float:
    bench.fill(0)
    with tempfile.TemporaryDirectory() as folder:
        relay = start_relay(
            bench, Path(folder), "relay", None, "--sink", url, "--sink-concurrency", _CONCURRENCY
        )
        try:
            committed = bench.insert(n, keys=keys)
            emptied = wait_empty(bench, timeout=1800)
        finally:
            bench.processes.stop(relay)
    return n / (emptied - committed)


def client_alone(*args: str) -> list[str]:
    """`python -m benchmarks.client_limit` with `args`, in a process of its own (it imports the
    broker clients, which only a broker run needs); the words it printed."""
    command = [sys.executable, "-m", "benchmarks.client_limit", *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()


def _limit_rate(bench: Bench, broker: str, window: str, url: str, n: int, keys: int) -> float:
    bench.fill(n, keys=keys)
    out = client_alone("limit", broker, url, bench.dsn, window)
    bench.fill(0)
    return n / float(out[0])


def once(bench: Bench, name: str, n: int, keys: int, log: Any) -> tuple[float, float, str]:
    """One run of relay and one of the client limit: their rates, and what arrived."""
    _, broker, window, make = BROKERS[name]
    rates, notes = [], []
    for contender in ("relay", "limit"):
        with _fresh(make) as destination:
            if contender == "relay":
                rates.append(_relay_rate(bench, destination.url, n, keys))
            else:
                rates.append(_limit_rate(bench, broker, window, destination.url, n, keys))
            arrived, dead = destination.count(), bench.dead()
        if arrived != n or dead:
            notes.append(f"{contender}: {arrived - n:+,} vs sent, {dead} dead")
    log(
        f"  {name}, {keys:,} keys: relay {rates[0]:,.0f}/s, limit {rates[1]:,.0f}/s"
        f" ({rates[0] / rates[1]:.2f}x) {'; '.join(notes)}"
    )
    return rates[0], rates[1], "; ".join(notes) or "each event once"


def run(
    bench: Bench, n: int, log: Any, repeat: int = 3, key_counts: tuple[int, ...] = (1_000, 10)
) -> Table:
    rows = []
    for name, (port, *_) in BROKERS.items():
        if not _answers(port):
            log(f"  {name}: skipped, nothing answers on 127.0.0.1:{port}")
            rows.append([name, "", "skipped", "", "", f"no server on 127.0.0.1:{port}"])
            continue
        for keys in key_counts:
            runs = [once(bench, name, n, keys, log) for _ in range(repeat)]
            relay_rate = median([r[0] for r in runs])
            limit_rate = median([r[1] for r in runs])
            notes = sorted({r[2] for r in runs})
            rows.append(
                [
                    name,
                    f"{keys:,}",
                    f"{relay_rate:,.0f}",
                    f"{limit_rate:,.0f}",
                    f"{relay_rate / limit_rate:.2f}x",
                    "; ".join(notes),
                ]
            )
    windows = ", ".join(f"{name.split(' (')[0]} {w}" for name, (_, _, w, _) in BROKERS.items())
    return Table(
        f"brokers: one `relay run` draining {n:,} events into each broker, against the client "
        "limit: the same client on plain asyncio (uvloop)",
        ["broker", "keys", "relay events/s", "client limit events/s", "ratio", "in the broker"],
        rows,
        notes=[
            f"median of {repeat} runs; relay and the limit alternate within each run",
            f"relay: `--sink-concurrency {_CONCURRENCY}` (NATS, RabbitMQ), batch 500, timed from "
            "the commit of the events to an empty outbox",
            "the limit: the same payloads and headers, acks pipelined, timed from the first "
            f"publish to the last ack (window: {windows}; Redis: script calls of 500 events with "
            "relay's deduplicating script, that many calls in flight)",
            "the broker on this machine, 127.0.0.1; every count checked in the broker afterwards; "
            "RabbitMQ: a durable quorum queue bound to a topic exchange, persistent messages",
        ],
        left=(0, 5),
    )


def latency_destinations() -> list[tuple[str, str, Callable[[], Destination]]]:
    """For the latency bench: each answering broker, its client, and how to make a destination.

    RabbitMQ twice: its quorum queue, and a classic queue beside it. The client is its name in
    `benchmarks.client_limit`.
    """
    found: list[tuple[str, str, Callable[[], Destination]]] = []
    for name, (port, client, _, make) in BROKERS.items():
        if not _answers(port):
            continue
        if client != "rabbitmq":
            found.append((name, client, functools.partial(_fresh, make)))
            continue
        for queue_type in ("quorum", "classic"):
            make_queue = functools.partial(rabbitmq_destination, queue_type=queue_type)
            found.append(
                (f"{name}, {queue_type} queue", client, functools.partial(_fresh, make_queue))
            )
    return found


def _fresh(make: Callable[[str], Destination]) -> Destination:
    """A destination of its own for one run."""
    return make(uuid.uuid4().hex[:12])
