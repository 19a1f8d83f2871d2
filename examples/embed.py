"""relay embedded in a trio program: write events in a transaction, handle them in-process.

python examples/embed.py            # starts a throwaway PostgreSQL from the embedded wheel
python examples/embed.py DSN        # or uses yours (the relay schema is migrated first)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence

import psycopg
import trio

import relay
from relay.demo.embedded import embedded_postgres_server
from relay.postgres import migrate

ORDERS = 5


async def main(dsn: str) -> None:
    config = relay.Config(dsn=dsn)
    handled: list[relay.OutboxEvent] = []
    all_handled = trio.Event()

    async def handler(events: Sequence[relay.OutboxEvent]) -> None:
        for event in events:
            print(f"handled event {event.id}: {event.topic} {event.payload}")
        handled.extend(events)
        if len(handled) >= ORDERS:
            all_handled.set()

    def place_orders() -> None:
        with psycopg.connect(dsn) as conn:  # one transaction: the orders and their events
            for n in range(1, ORDERS + 1):
                relay.enqueue(conn, "orders.created", {"order": n}, key=f"customer-{n % 2}")

    with trio.fail_after(30):
        async with relay.open_relay(config, handler):
            await trio.to_thread.run_sync(place_orders)
            await all_handled.wait()
    print(f"done: {len(handled)} events handled")


@contextlib.contextmanager
def database(argv: list[str]) -> Iterator[str]:
    if len(argv) > 1:
        yield argv[1]
        return
    with embedded_postgres_server() as server:
        yield server.dsn()


if __name__ == "__main__":
    with database(sys.argv) as dsn:
        migrate(relay.Config(dsn=dsn))
        trio.run(main, dsn)
