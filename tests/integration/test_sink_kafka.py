"""The Kafka sink against librdkafka's mock cluster (3 brokers in a process of their own).

The mock cluster speaks the Kafka protocol over TCP (produce, fetch, metadata, consumer groups,
the idempotent producer) but keeps everything in memory with no replication: these tests cover
relay's side of the protocol, not a real cluster's durability. `RELAY_TEST_KAFKA=host:port` adds
a run against a real Kafka.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psycopg
import pytest
import trio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, SinkUnavailable, open_relay
from relay.sinks import SinkOptions

from ..conftest import pending_count

confluent_kafka = pytest.importorskip(
    "confluent_kafka", reason="the Kafka sink needs confluent-kafka: pip install '.[kafka]'"
)
from relay.sinks.kafka import KafkaSink  # noqa: E402 (after the skip)

GUARD = 90  # seconds any one test may take before it counts as hung
_CLUSTER = """
import sys
from confluent_kafka import Producer
holder = Producer({"test.mock.num.brokers": 3, "log_level": 0})
brokers = holder.list_topics(timeout=10).brokers.values()
print(",".join(f"{b.host}:{b.port}" for b in brokers), flush=True)
sys.stdin.read()  # the cluster lives until the test closes our stdin
"""


@attrs.frozen
class Cluster:
    """A mock cluster in its own process, so it can be paused and outlive a killed relay."""

    process: subprocess.Popen[str]
    bootstrap: str

    def url(self, topic: str, query: str = "") -> str:
        return f"kafka://{self.bootstrap}?topic={topic}{query}"

    def pause(self) -> None:
        """Every broker stops answering (connections stay open; nothing is lost)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with open_cluster() as started:
        yield started


@contextlib.contextmanager
def open_cluster() -> Iterator[Cluster]:
    """A mock cluster of 3 brokers for the block (the tracing tests use it too)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        yield Cluster(process, process.stdout.readline().strip())
    finally:
        process.send_signal(signal.SIGCONT)
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@attrs.frozen
class Record:
    id: int
    key: str | None
    partition: int
    offset: int
    headers: dict[str, bytes]
    value: bytes


def read_back(bootstrap: str, topic: str, count: int, timeout: float = 60) -> list[Record]:
    """What a new consumer group reads from `topic` once it has `count` records or `timeout` passed
    (then a little longer, to catch duplicates)."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"relaytest-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []

    def take(batch: list[confluent_kafka.Message]) -> None:
        for message in batch:
            assert message.error() is None, message.error()
            headers = dict(message.headers() or [])
            key = message.key()
            records.append(
                Record(
                    int(headers["Relay-Id"]),
                    None if key is None else key.decode(),
                    message.partition(),
                    message.offset(),
                    headers,
                    message.value(),
                )
            )

    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            take(consumer.consume(1000, timeout=0.5))
        take(consumer.consume(1000, timeout=1.0))
    finally:
        consumer.close()
    return records


def insert(dsn: str, count: int, keys: int = 50, topic: str = "orders") -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers)"
            " SELECT %s, 'k' || mod(g, %s), jsonb_build_object('n', g), '{\"trace\": \"t\"}'"
            " FROM generate_series(1, %s) g RETURNING id",
            [topic, keys, count],
        ).fetchall()
    return [row[0] for row in rows]


def key_order_violations(records: list[Record]) -> list[str]:
    """Keys whose records, in each partition's offset order, are not in id order (first copies)."""
    seen: set[int] = set()
    by_key: defaultdict[tuple[str | None, int], list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.id not in seen:
            seen.add(record.id)
            by_key[record.key, record.partition].append(record.id)
    return [f"{key}@{p}" for (key, p), ids in by_key.items() if ids != sorted(ids)]


async def wait_until(condition: Callable[[], bool], interval: float = 0.05) -> None:
    """Poll `condition`: the database cannot signal us."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


def ev(id: int, key: str | None = "k", topic: str = "orders", size: int = 0) -> OutboxEvent:
    return OutboxEvent(
        id=id, topic=topic, key=key, payload_json=b'{"pad": "%s"}' % (b"x" * size), headers={}
    )


async def test_5000_events_over_50_keys_are_read_back_once_in_key_order(
    database_dsn: str, cluster: Cluster
) -> None:
    ids = insert(database_dsn, 5000)
    sink = KafkaSink(cluster.url("relay.{topic}"), SinkOptions())
    with trio.fail_after(GUARD):
        async with open_relay(Config(dsn=database_dsn), sink) as handle:
            await wait_until(lambda: pending_count(database_dsn) == 0)
            await wait_until(lambda: handle.statistics().delivered == 5000)
    records = await trio.to_thread.run_sync(read_back, cluster.bootstrap, "relay.orders", 5000)
    counts = Counter(record.id for record in records)
    assert set(counts) == set(ids)
    assert [id for id, n in counts.items() if n > 1] == []
    assert key_order_violations(records) == []
    # One key, one partition.
    assert all(len({r.partition for r in records if r.key == k}) == 1 for k in {"k0", "k1"})
    assert sink.statistics().acknowledged == 5000
    first = records[0]
    assert json.loads(first.value) == {"n": ids.index(first.id) + 1}
    assert first.headers["Relay-Topic"] == b"orders"
    assert first.headers["trace"] == b"t"
    assert b"Relay-Created-At" in {name.encode() for name in first.headers}


async def test_too_large_and_invalid_topics_are_the_events_fault(cluster: Cluster) -> None:
    sink = KafkaSink(cluster.url("{topic}", "&kafka.message.max.bytes=2000"), SinkOptions())
    events = [ev(1), ev(2, size=5000), ev(3, topic="no spaces"), ev(4), ev(5, key=None)]
    with trio.fail_after(GUARD), pytest.raises(PartialDelivery) as caught:
        async with sink:
            await sink.deliver(events)
    assert set(caught.value.failures) == {2, 3} == caught.value.permanent
    assert "too large" in caught.value.failures[2]
    assert "not a valid Kafka topic name" in caught.value.failures[3]
    assert sink.statistics().acknowledged == 3


async def test_brokers_that_do_not_answer_hold_the_batch() -> None:
    with trio.socket.socket() as closed:
        await closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"kafka://127.0.0.1:{port}?kafka.sasl.password=hunter2"
    sink = KafkaSink(url, SinkOptions(timeout=1))
    with trio.fail_after(GUARD), pytest.raises(SinkUnavailable, match="cannot reach Kafka"):
        async with sink:
            pass
    assert "hunter2" not in repr(sink)


async def test_a_paused_cluster_mid_run_loses_nothing(database_dsn: str, cluster: Cluster) -> None:
    ids = insert(database_dsn, 3000)
    config = Config(
        dsn=database_dsn,
        batch_size=50,
        restart_backoff=Backoff(base=0.05, cap=0.5),
        restart_intensity=1000,
    )
    sink = KafkaSink(cluster.url("{topic}"), SinkOptions(timeout=1.5))
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            await wait_until(lambda: handle.statistics().delivered >= 500, interval=0.005)
            cluster.pause()
            ids += insert(database_dsn, 500)
            # SinkUnavailable: the batch held, the outage waited out (not a crash, not a restart)
            await wait_until(lambda: "sink" in handle.statistics().outages, interval=0.05)
            await trio.sleep(2)
            assert handle.statistics().restarts == 0
            assert handle.statistics().dead == 0
            assert pending_count(database_dsn) > 0
            cluster.resume()
            await wait_until(lambda: pending_count(database_dsn) == 0)
            assert handle.statistics().dead == 0
    records = await trio.to_thread.run_sync(read_back, cluster.bootstrap, "orders", len(ids))
    counts = Counter(record.id for record in records)
    assert set(counts) == set(ids)  # nothing lost
    duplicates = sum(n - 1 for n in counts.values())
    print(f"paused cluster: {len(ids)} events, {duplicates} duplicates")
    assert key_order_violations(records) == []


def _start_relay(dsn: str, url: str, err: Path) -> subprocess.Popen[bytes]:
    with err.open("ab") as stderr:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "relay.cli",
                "run",
                "--dsn",
                dsn,
                "--sink",
                url,
                "--batch-size",
                "100",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def test_a_relay_killed_mid_run_and_restarted_loses_nothing(
    database_dsn: str, cluster: Cluster, tmp_path: Path
) -> None:
    ids = insert(database_dsn, 20000)
    err = tmp_path / "relay.err"
    process = _start_relay(database_dsn, cluster.url("{topic}"), err)
    deadline = time.monotonic() + GUARD
    try:
        while pending_count(database_dsn) > 15000:
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "timed out waiting for the first events"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_with = pending_count(database_dsn)
        process = _start_relay(database_dsn, cluster.url("{topic}"), err)
        while pending_count(database_dsn) > 0:
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "timed out waiting for the rest"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0, err.read_text()
    records = read_back(cluster.bootstrap, "orders", len(ids))
    counts = Counter(record.id for record in records)
    assert set(counts) == set(ids)  # nothing lost
    duplicates = sum(n - 1 for n in counts.values())
    print(f"SIGKILL with {killed_with} pending: {duplicates} duplicates of {len(ids)} events")
    assert key_order_violations(records) == []


@pytest.mark.skipif(
    not os.environ.get("RELAY_TEST_KAFKA"), reason="RELAY_TEST_KAFKA names no Kafka (host:port)"
)
async def test_a_real_kafka_gets_every_event_once_in_key_order(database_dsn: str) -> None:
    bootstrap = os.environ["RELAY_TEST_KAFKA"]
    topic = f"relaytest-{uuid.uuid4().hex}"
    ids = insert(database_dsn, 1000, topic=topic)
    sink = KafkaSink(f"kafka://{bootstrap}?topic={{topic}}", SinkOptions())
    with trio.fail_after(GUARD):
        async with open_relay(Config(dsn=database_dsn), sink):
            await wait_until(lambda: pending_count(database_dsn) == 0)
    records = await trio.to_thread.run_sync(read_back, bootstrap, topic, 1000)
    assert sorted(record.id for record in records) == sorted(ids)
    assert key_order_violations(records) == []
