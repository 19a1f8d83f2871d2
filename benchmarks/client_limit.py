"""A broker client on its own, the contender relay's broker sinks are measured against.

    python -m benchmarks.client_limit limit BROKER URL DSN WINDOW
    python -m benchmarks.client_limit paced BROKER URL RATE SECONDS

The same client library on plain asyncio (uvloop), publishing with the payloads and headers relay
would send, acknowledgements pipelined (`WINDOW` unacknowledged at once; for Redis, script calls
of 500 events in flight at once, with relay's own deduplicating script).

`limit` publishes the events pending in the outbox (reading them is not timed) and prints the
seconds publishing took; the caller counts what arrived in the broker. `paced` publishes RATE
events a second for SECONDS, each as its own publish the moment it is due, and prints the p50 and
p99 of due-to-acknowledgement in milliseconds: the broker's own latency at that rate, beside
relay's commit-to-acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import psycopg
import uvloop

from relay.ports import OutboxEvent
from relay.sinks.encoding import headers_json
from relay.sinks.nats_jetstream import _headers as nats_headers
from relay.sinks.redis_streams import _SCRIPT
from relay.sinks.redis_url import RedisTarget

from ._producer import latency_event
from .report import percentile

_CHUNK = 500  # events per Redis script call, as relay's batch

# Publishes the events; returns once the broker acknowledged every one.
Publish = Callable[[Sequence[OutboxEvent]], Awaitable[None]]


def _events(dsn: str) -> list[OutboxEvent]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, topic, key, payload::text, created_at FROM relay.outbox ORDER BY id"
        ).fetchall()
    return [OutboxEvent(i, t, k, p.encode(), {}, c) for i, t, k, p, c in rows]


@contextlib.asynccontextmanager
async def _nats(url: str, window: int) -> AsyncIterator[Publish]:
    import nats

    subject = url.split("subject=", 1)[1].replace("{topic}", "")
    client = await nats.connect(url.split("?", 1)[0])
    js = client.jetstream(publish_async_max_pending=window)

    async def publish(events: Sequence[OutboxEvent]) -> None:
        futures = []
        for event in events:
            futures.append(
                await js.publish_async(
                    f"{subject}{event.topic}", event.payload_json, headers=nats_headers(event, "")
                )
            )
        await asyncio.gather(*futures)

    try:
        yield publish
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _redis(url: str, window: int) -> AsyncIterator[Publish]:
    import redis.asyncio

    target = RedisTarget.from_url(url)
    client = redis.asyncio.Redis(host=target.host, port=target.port, db=target.db)
    script = client.register_script(_SCRIPT)
    slots = asyncio.Semaphore(window)

    async def call(chunk: Sequence[OutboxEvent]) -> None:
        keys: list[str] = []
        # The same arguments as relay's sink (relay.sinks.redis_streams._SCRIPT): the payload's
        # field name, and per event an empty trace context (these events carry none).
        args: list[Any] = [target.dedup_ttl, target.maxlen or "", "payload"]
        for event in chunk:
            stream = target.stream_for(event.topic)
            keys += [stream, f"{target.dedup_prefix}{stream}:{event.id}"]
            args += [event.id, event.topic, event.key or "", "0" if event.key is None else "1"]
            args += [headers_json(event), event.payload_json, event.created_at.isoformat()]
            args += ["", ""]
        async with slots:
            await script(keys=keys, args=args)

    async def publish(events: Sequence[OutboxEvent]) -> None:
        chunks = (events[i : i + _CHUNK] for i in range(0, len(events), _CHUNK))
        await asyncio.gather(*(call(chunk) for chunk in chunks))

    try:
        yield publish
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def _rabbitmq(url: str, window: int) -> AsyncIterator[Publish]:
    import aio_pika

    exchange_name = url.split("exchange=", 1)[1]
    connection = await aio_pika.connect(url.split("?", 1)[0])
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(exchange_name, ensure=True)
    slots = asyncio.Semaphore(window)

    async def publish_one(event: OutboxEvent) -> None:
        message = aio_pika.Message(
            event.payload_json,
            headers={"relay-topic": event.topic, "relay-key": event.key, "relay-attempts": 0},
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(event.id),
            timestamp=event.created_at,
            app_id="relay",
        )
        try:
            await exchange.publish(message, event.topic, mandatory=True)
        finally:
            slots.release()

    async def publish(events: Sequence[OutboxEvent]) -> None:
        tasks = []
        for event in events:
            await slots.acquire()
            tasks.append(asyncio.ensure_future(publish_one(event)))
        await asyncio.gather(*tasks)

    try:
        yield publish
    finally:
        await connection.close()


CLIENTS: dict[str, Callable[[str, int], contextlib.AbstractAsyncContextManager[Publish]]] = {
    "nats": _nats,
    "redis": _redis,
    "rabbitmq": _rabbitmq,
}
_PACED_WINDOW = 1024  # far above what a paced run has in flight


async def _limit(broker: str, url: str, events: Sequence[OutboxEvent], window: int) -> float:
    async with CLIENTS[broker](url, window) as publish:
        started = time.perf_counter()
        await publish(events)
        return time.perf_counter() - started


async def _paced(broker: str, url: str, rate: float, seconds: float) -> list[float]:
    """Acknowledgement time in ms of each event, one event due every 1/rate s.

    Timed from when the event was due, not from when its task ran: a late loop counts, as it
    does in relay's commit-to-acknowledgement.
    """
    delays: list[float] = []

    async def timed(publish: Publish, event: OutboxEvent, due: float) -> None:
        await publish([event])
        delays.append((time.perf_counter() - due) * 1000)

    async with CLIENTS[broker](url, _PACED_WINDOW) as publish:
        tasks = []
        started = time.perf_counter()
        for n in range(int(rate * seconds)):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            topic, payload, key = latency_event(n)
            now = datetime.datetime.now(datetime.UTC)
            event = OutboxEvent(n + 1, topic, key, json.dumps(payload).encode(), {}, now)
            tasks.append(asyncio.ensure_future(timed(publish, event, due)))
        await asyncio.gather(*tasks)
    return sorted(delays)


def main(argv: Sequence[str]) -> None:
    mode, broker, url, *rest = argv
    if mode == "limit":
        dsn, window = rest
        events = _events(dsn)
        print(f"{uvloop.run(_limit(broker, url, events, int(window))):.6f} {len(events)}")
    elif mode == "paced":
        rate, seconds = rest
        delays = uvloop.run(_paced(broker, url, float(rate), float(seconds)))
        print(f"{percentile(delays, 50):.3f} {percentile(delays, 99):.3f} {len(delays)}")
    else:
        sys.exit(f"unknown mode {mode!r}: limit or paced")


if __name__ == "__main__":
    main(sys.argv[1:])
