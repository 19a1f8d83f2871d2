"""Latency: commit-to-sink time for single-row producer transactions at a steady rate."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from relay import OutboxEvent, open_relay
from relay.sinks import open_sink

from .brokers import Destination, client_alone
from .report import Table, median, percentile
from .server import Bench


class _Receipts:
    """The sink: records the wall-clock time each event id arrived."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        now = time.time()
        for event in events:
            self.received.setdefault(event.id, now)


class _Acked(_Receipts, contextlib.AbstractAsyncContextManager[Any]):
    """The sink: a broker sink; records the wall-clock time its deliver() returned (all acked)."""

    def __init__(self, broker: Any) -> None:
        super().__init__()
        self.broker = broker

    async def __aenter__(self) -> _Acked:
        await self.broker.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.broker.__aexit__(*exc_info)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        await self.broker.deliver(events)
        await super().deliver(events)


async def _measure(
    bench: Bench, rate: int, seconds: float, out: Path, sink_url: str | None = None
) -> dict[int, float]:
    sink = _Receipts() if sink_url is None else _Acked(open_sink(sink_url))
    async with open_relay(bench.config, sink):
        threads = max(1, min(8, rate // 1000 + 1))
        await trio.run_process(
            [
                sys.executable,
                "-m",
                "benchmarks._producer",
                bench.dsn,
                str(rate),
                str(seconds),
                str(threads),
                str(out),
            ],
            check=True,
        )
        committed = json.loads(await trio.Path(out).read_text())
        with trio.move_on_after(30):
            while len(sink.received) < len(committed):  # noqa: ASYNC110 (a deadline, not an event)
                await trio.sleep(0.05)
    return {int(id): sink.received.get(int(id), float("nan")) - t for id, t in committed.items()}


def _once(bench: Bench, rate: int, seconds: float, sink_url: str | None = None) -> list[float]:
    """One run at `rate`: events, achieved/s, p50, p95, p99 and max (ms), missing."""
    bench.fill(0)
    with tempfile.TemporaryDirectory() as folder:
        delays = trio.run(_measure, bench, rate, seconds, Path(folder) / "commits.json", sink_url)
    missing = sum(1 for d in delays.values() if d != d)
    ms = sorted(d * 1000 for d in delays.values() if d == d)
    return [
        len(delays),
        len(delays) / seconds,
        *(percentile(ms, q) for q in (50, 95, 99)),
        ms[-1] if ms else float("nan"),
        missing,
    ]


def run(bench: Bench, rates: Sequence[int], seconds: float, log: Any, repeat: int = 1) -> Table:
    rows = []
    for rate in rates:
        runs = [_once(bench, rate, seconds) for _ in range(repeat)]
        for k, found in enumerate(runs, 1):
            log(
                f"  latency {rate}/s, run {k}: p50 {found[2]:.2f} ms, p99 {found[4]:.2f} ms, "
                f"max {found[5]:.2f} ms"
            )
        events, achieved, p50, p95, p99, worst, missing = (
            median([found[i] for found in runs]) for i in range(7)
        )
        rows.append(
            [
                f"{rate:,}",
                f"{achieved:,.0f}",
                f"{events:,.0f}",
                *(f"{value:.2f}" for value in (p50, p95, p99, worst)),
                f"{missing:g}",
            ]
        )
    return Table(
        f"latency: commit-to-sink, single-row producer transactions for {seconds:g} s",
        [
            "target events/s",
            "achieved/s",
            "events",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "missing",
        ],
        rows,
        [
            f"median of {repeat} runs, each column on its own" if repeat > 1 else "one run",
            "commit time: time.time() when the producer's commit returned (a separate process, "
            "relay.postgres.producer.Producer, one connection per thread); receipt: time.time() "
            "when the sink's deliver() was called; relay in-process with default settings "
            f"(batch {bench.config.batch_size}, LISTEN/NOTIFY wakeups).",
        ],
    )


def _client_alone(client: str, url: str, rate: int, seconds: float) -> tuple[float, float]:
    """The broker client on its own at `rate`: p50 and p99 of due-to-ack, in ms."""
    out = client_alone("paced", client, url, str(rate), str(seconds))
    return float(out[0]), float(out[1])


def brokers(
    bench: Bench,
    destinations: Sequence[tuple[str, str, Callable[[], Destination]]],
    rate: int,
    seconds: float,
    log: Any,
    repeat: int = 1,
) -> Table:
    """Commit-to-broker-ack latency at `rate` for each (name, client, make destination) given.

    Beside it, the client's own due-to-ack latency at that rate, into a destination of its own.
    """
    rows = []
    for name, client, make in destinations:
        runs, alone = [], []
        for _ in range(repeat):
            with make() as destination:
                runs.append(_once(bench, rate, seconds, destination.url))
            with make() as destination:
                alone.append(_client_alone(client, destination.url, rate, seconds))
            log(
                f"  {name} at {rate}/s: p50 {runs[-1][2]:.2f} ms, p99 {runs[-1][4]:.2f} ms; "
                f"the client alone p50 {alone[-1][0]:.2f} ms, p99 {alone[-1][1]:.2f} ms"
            )
        _, achieved, p50, p95, p99, worst, missing = (
            median([found[i] for found in runs]) for i in range(7)
        )
        alone_p50, alone_p99 = (median([found[i] for found in alone]) for i in range(2))
        rows.append(
            [
                name,
                f"{achieved:,.0f}",
                *(f"{value:.2f}" for value in (p50, p95, p99, worst)),
                f"{missing:g}",
                f"{alone_p50:.2f}",
                f"{alone_p99:.2f}",
            ]
        )
    return Table(
        f"broker latency: commit-to-broker-ack at {rate:,} events/s for {seconds:g} s",
        [
            "broker",
            "achieved/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "missing",
            "client alone p50 ms",
            "client alone p99 ms",
        ],
        rows,
        [
            f"median of {repeat} runs, each column on its own" if repeat > 1 else "one run",
            "commit time: as in the latency table; ack: time.time() when the broker sink's "
            "deliver() returned, every event of the batch acknowledged by the broker; relay "
            "in-process with default settings, the broker on 127.0.0.1",
            "client alone: the same client on plain asyncio (uvloop) publishing the same payloads "
            f"at {rate:,}/s, each event its own publish when due, into a destination of its own "
            "(python -m benchmarks.client_limit paced); from when the event was due to its ack, "
            "no database involved",
            "RabbitMQ: a durable queue bound to the exchange, persistent messages; a quorum queue "
            "(the throughput table's), and a classic queue, whose confirms are slow in the tail "
            "as unconsumed messages pile up in it (see the client alone)",
        ],
        left=(0,),
    )
