"""The demo's producer: orders written at a steady rate, one transaction each, as an application
would write them (through the adapter's `Producer`, which holds the psycopg calls)."""

from __future__ import annotations

import functools

import trio

from ..config import Config
from ..postgres.producer import Producer

_KEYS = 16  # orders spread over a few keys, so key order shows in the output


async def produce(config: Config, rate: float, counter: list[int]) -> None:
    """Write `rate` orders a second until cancelled, counting them in `counter[0]`."""
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
