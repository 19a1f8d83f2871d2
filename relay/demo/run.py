"""`relay demo`: an embedded PostgreSQL, a producer and the relay, with no set-up at all.

Events flow to stdout as JSON lines; a live line on stderr shows what the relay is doing.
"""

from __future__ import annotations

import functools
import logging
import signal
import statistics
import sys
import time
from collections.abc import Sequence

import attrs
import trio

from ..config import Config
from ..daemon.logs import configure
from ..ports import OutboxEvent, Sink
from ..runtime import RelayHandle, run_relay
from ..sinks import StdoutSink
from .embedded import embedded_postgres_server

log = logging.getLogger("relay.demo")

_KEYS = 16  # orders spread over a few keys, so key order shows in the output


@attrs.define(eq=False)
class LagRecorder:
    """Passes batches on to a sink and records each event's end-to-end lag, in seconds."""

    inner: Sink
    lags: list[float] = attrs.field(factory=list)
    delivered: int = 0
    _progress: trio.Event = attrs.field(factory=trio.Event, repr=False)

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        await self.inner.deliver(events)
        now = time.time()
        self.lags += [now - event.created_at.timestamp() for event in events]
        self.delivered += len(events)
        self._progress.set()

    async def wait_for(self, count: int) -> None:
        """Return once `count` events have been delivered."""
        while self.delivered < count:
            self._progress = trio.Event()
            await self._progress.wait()


def _live_line(recorder: LagRecorder, produced: int, previous: int, interval: float) -> str:
    lags = sorted(recorder.lags)
    recorder.lags.clear()
    if lags:
        p50 = statistics.median(lags) * 1000
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000
        lag = f"lag p50 {p50:.1f} ms p99 {p99:.1f} ms"
    else:
        lag = "lag -"
    rate = (recorder.delivered - previous) / interval
    return (
        f"delivered {recorder.delivered}  rate {rate:.0f}/s  {lag}  "
        f"pending {max(0, produced - recorder.delivered)}"
    )


_DRAIN_GRACE = 5.0  # seconds the relay gets, once the producer stops, to catch up


async def _produce(config: Config, rate: float, counter: list[int]) -> None:
    from ..postgres.producer import Producer

    producer = await trio.to_thread.run_sync(Producer.connect, config)
    try:
        step = 1.0 / rate
        next_at = trio.current_time()
        n = 0
        while True:
            n += 1
            await trio.to_thread.run_sync(
                functools.partial(
                    producer.write, "orders.created", {"order": n}, key=f"order-{n % _KEYS}"
                )
            )
            counter[0] += 1
            next_at += step
            await trio.sleep_until(next_at)
    finally:
        producer.close()


async def _show(recorder: LagRecorder, counter: list[int], handle: RelayHandle) -> None:
    interval, previous = 1.0, 0
    while True:
        await trio.sleep(interval)
        print(_live_line(recorder, counter[0], previous, interval), file=sys.stderr, flush=True)
        previous = recorder.delivered


async def _demo(config: Config, rate: float, duration: float | None) -> None:
    recorder = LagRecorder(StdoutSink())
    counter = [0]
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_relay, config, recorder)
        nursery.start_soon(_show, recorder, counter, handle)
        with trio.move_on_after(duration if duration is not None else float("inf")):
            async with trio.open_nursery() as producing:
                producing.start_soon(_produce, config, rate, counter)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                producing.cancel_scope.cancel()
        # The producer has stopped: give the relay a moment to deliver what it wrote last, and
        # to commit it (a claim cancelled halfway would hand those events out again next time).
        with trio.move_on_after(_DRAIN_GRACE):
            await recorder.wait_for(counter[0])
            await handle.stop_claiming()
        nursery.cancel_scope.cancel()
    log.info("demo done: %d events produced, %d delivered", counter[0], recorder.delivered)


def run_demo(*, rate: float = 50.0, duration: float | None = None) -> None:
    """Run the demo until `duration` seconds pass or Ctrl-C (`ConfigError` if either is <= 0)."""
    from ..errors import ConfigError
    from ..postgres import migrate

    if not rate > 0:
        raise ConfigError("rate", f"must be > 0, got {rate}")
    if duration is not None and not duration > 0:
        raise ConfigError("duration", f"must be > 0, got {duration}")
    configure("info")
    log.info("starting an embedded PostgreSQL server")
    with embedded_postgres_server() as server:
        config = Config(dsn=server.dsn(), poll_interval=1.0)
        for migration in migrate(config):
            log.info("migrated: %s", migration.description)
        log.info("relay running on %s: %s events/s; Ctrl-C to stop", server.dsn(), rate)
        trio.run(_demo, config, rate, duration)
    log.info("embedded server stopped and removed")
