"""Kafka: `relay run --sink kafka://...` against confluent-kafka producing alone, same run.

Both write to librdkafka's mock cluster (3 brokers, in memory, in a process of its own), so the
figures compare relay with its own client, not with a real cluster's disks and replication. Each
repetition uses a fresh topic; arrivals are counted from the partitions' high watermarks.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .report import Table
from .server import KEYS, Bench, start_relay, wait_empty

_CLUSTER = """
import sys
from confluent_kafka import Producer
holder = Producer({"test.mock.num.brokers": 3, "log_level": 0})
brokers = holder.list_topics(timeout=10).brokers.values()
print(",".join(f"{b.host}:{b.port}" for b in brokers), flush=True)
sys.stdin.read()
"""
# The payload relay sends: the bench's fill, about 110 bytes of JSON.
_PAYLOAD = (
    b'{"items": ["sku-1", "sku-2"], "amount_cents": 12345, "currency": "EUR", '
    b'"customer": "customer-123", "order_id": 123456}'
)
# The client's best settings for throughput with relay's guarantees (acks=all, idempotence).
_ALONE = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 1_000_000,
    "log_level": 0,
}


@contextmanager
def mock_cluster() -> Iterator[str]:
    """A 3-broker mock cluster in a subprocess; yields its bootstrap servers."""
    process = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.stdout.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()


def count(bootstrap: str, topic: str) -> int:
    """Messages ever written to `topic` (a fresh one), from its partitions' high watermarks.

    Not high - low: the mock cluster drops a partition's oldest messages as it grows.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "relaybench", "log_level": 0})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def alone(bootstrap: str, n: int) -> float:
    """Events/s of one confluent-kafka producer sending `n` messages over KEYS keys, acked."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **_ALONE})
    topic = f"relaybench-alone-{uuid.uuid4().hex[:12]}"
    producer.list_topics(timeout=10)
    keys = [f"k{i}".encode() for i in range(KEYS)]
    failed = 0

    def report(error: Any, message: Any) -> None:
        nonlocal failed
        failed += error is not None

    started = time.monotonic()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, _PAYLOAD, keys[i % KEYS], on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    left = producer.flush(60)
    elapsed = time.monotonic() - started
    if left or failed or count(bootstrap, topic) != n:
        raise RuntimeError(f"the client alone lost messages: {left} left, {failed} failed")
    return n / elapsed


async def discard(events: Any) -> None:
    """A sink that takes every event and does nothing: relay's own ceiling."""


def through_relay(
    bench: Bench, bootstrap: str | None, n: int, batch: int
) -> tuple[float, int, int]:
    """Events/s of `relay run` draining `n` events into the cluster (into `discard` when
    `bootstrap` is None); also how many arrived, and how many died."""
    topic = f"relaybench-relay-{uuid.uuid4().hex[:12]}"
    bench.fill(0)
    with tempfile.TemporaryDirectory() as folder:
        url = (
            f"python:{__name__}:discard"
            if bootstrap is None
            else f"kafka://{bootstrap}?topic={topic}"
        )
        options = ("--sink", url, "--batch-size", str(batch))
        relay = start_relay(bench, Path(folder), "relay", None, *options)
        try:
            committed = bench.insert(n)
            emptied = wait_empty(bench, timeout=1800)
        finally:
            bench.processes.stop(relay)
    arrived = n if bootstrap is None else count(bootstrap, topic)
    return n / (emptied - committed), arrived, bench.dead()


_BATCHES = (500, 2000)  # relay's default, and a larger one


def run(bench: Bench, n: int, log: Any, repeat: int = 3) -> Table:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        log("  kafka: skipped, confluent-kafka is not installed")
        return Table("kafka: skipped (pip install 'relay-outbox[kafka]')", ["who"], [])
    relay_rates: dict[int, list[float]] = {batch: [] for batch in _BATCHES}
    ceiling: list[float] = []
    alone_rates: list[float] = []
    notes: list[str] = []
    with mock_cluster() as bootstrap:
        for round_ in range(repeat):
            for batch in _BATCHES:
                rate, arrived, dead = through_relay(bench, bootstrap, n, batch)
                relay_rates[batch].append(rate)
                if arrived != n or dead:
                    notes.append(f"batch {batch}: {arrived - n:+,} vs sent, {dead} dead")
            alone_rates.append(alone(bootstrap, n))
            ceiling.append(through_relay(bench, None, n, _BATCHES[0])[0])
            figures = ", ".join(f"batch {b} {r[-1]:,.0f}/s" for b, r in relay_rates.items())
            log(f"  kafka round {round_ + 1}: relay {figures}; alone {alone_rates[-1]:,.0f}/s")
    alone_median = statistics.median(alone_rates)

    def row(who: str, rates: list[float]) -> list[str]:
        median = statistics.median(rates)
        return [
            who,
            f"{median:,.0f}",
            f"{median / alone_median:.2f}x",
            ", ".join(f"{r:,.0f}" for r in rates),
        ]

    return Table(
        f"kafka: {n:,} events over {KEYS:,} keys into librdkafka's mock cluster (3 brokers), "
        f"medians of {repeat}",
        ["who", "events/s", "vs alone", "runs"],
        [
            *(row(f"relay run --sink kafka://, batch {b}", r) for b, r in relay_rates.items()),
            row("confluent-kafka alone", alone_rates),
            row(f"relay run, a sink that discards, batch {_BATCHES[0]}", ceiling),
        ],
        notes=[
            "relay: committed to the outbox in one statement, timed until the outbox is empty "
            "(linger.ms 1, its default); alone: one producer, acks=all, idempotence, linger.ms=5, "
            "timed until flush() returns; both counted in the topic afterwards; the discarding "
            "sink (python:benchmarks.kafka:discard) is relay's own ceiling on this machine",
            *notes,
        ],
        left=(0, 3),
    )
