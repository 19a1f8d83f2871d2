"""`python -m benchmarks.client_limit BROKER URL DSN WINDOW`: a broker client's own limit.

The contender relay's broker sinks are measured against: the same client library on plain asyncio
(uvloop), publishing the events pending in the outbox with the payloads and headers relay would
send, acknowledgements pipelined (`WINDOW` unacknowledged at once; for Redis, script calls of 500
events in flight at once, with relay's own deduplicating script). Reading the rows is not timed.
Prints the seconds publishing took; the caller counts what arrived in the broker.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import uvloop

from relay.ports import OutboxEvent
from relay.sinks.encoding import headers_json
from relay.sinks.nats_jetstream import _headers as nats_headers
from relay.sinks.redis_streams import _SCRIPT
from relay.sinks.redis_url import RedisTarget

_CHUNK = 500  # events per Redis script call, as relay's batch


def _events(dsn: str) -> list[OutboxEvent]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id, topic, key, payload::text, created_at FROM relay.outbox ORDER BY id"
        ).fetchall()
    return [OutboxEvent(i, t, k, p.encode(), {}, c) for i, t, k, p, c in rows]


async def _nats(url: str, events: Sequence[OutboxEvent], window: int) -> None:
    import nats

    subject = url.split("subject=", 1)[1].replace("{topic}", "")
    client = await nats.connect(url.split("?", 1)[0])
    js = client.jetstream(publish_async_max_pending=window)
    futures = []
    for event in events:
        futures.append(
            await js.publish_async(
                f"{subject}{event.topic}", event.payload_json, headers=nats_headers(event, "")
            )
        )
    await asyncio.gather(*futures)
    await client.close()


async def _redis(url: str, events: Sequence[OutboxEvent], window: int) -> None:
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

    await asyncio.gather(*(call(events[i : i + _CHUNK]) for i in range(0, len(events), _CHUNK)))
    await client.aclose()


async def _rabbitmq(url: str, events: Sequence[OutboxEvent], window: int) -> None:
    import aio_pika

    exchange_name = url.split("exchange=", 1)[1]
    connection = await aio_pika.connect(url.split("?", 1)[0])
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(exchange_name, ensure=True)
    slots = asyncio.Semaphore(window)

    async def publish(event: OutboxEvent) -> None:
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

    tasks = []
    for event in events:
        await slots.acquire()
        tasks.append(asyncio.ensure_future(publish(event)))
    await asyncio.gather(*tasks)
    await connection.close()


CLIENTS = {"nats": _nats, "redis": _redis, "rabbitmq": _rabbitmq}


def main(argv: Sequence[str]) -> None:
    broker, url, dsn, window = argv
    events = _events(dsn)
    started = time.perf_counter()
    uvloop.run(CLIENTS[broker](url, events, int(window)))
    print(f"{time.perf_counter() - started:.6f} {len(events)}")


if __name__ == "__main__":
    main(sys.argv[1:])
