"""Key order while several relays drain one outbox, with failures and retries."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

import psycopg
import trio
import trio_asyncio

from relay import Backoff, Config, OutboxEvent, PartialDelivery, run_relay

GUARD = 120
EVENTS, KEYS, RELAYS = 3000, 60, 3


def first_deliveries_in_order(log: list[tuple[str | None, int]]) -> dict[str, list[int]]:
    """Per key, the ids in the order they were first delivered (duplicates ignored)."""
    seen: set[int] = set()
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, id in log:
        if id not in seen and key is not None:
            seen.add(id)
            per_key[key].append(id)
    return per_key


async def test_three_relays_keep_key_order_through_failures(database_dsn: str) -> None:
    log: list[tuple[str | None, int]] = []
    rng = random.Random(7)
    holders: dict[str, int] = {}  # key -> relay currently delivering it
    overlaps = 0

    def sink_for(relay_number: int):  # type: ignore[no-untyped-def]
        async def deliver(events: Sequence[OutboxEvent]) -> None:
            nonlocal overlaps
            keys = {event.key for event in events if event.key is not None}
            overlaps += sum(1 for key in keys if holders.get(key, relay_number) != relay_number)
            holders.update(dict.fromkeys(keys, relay_number))
            try:
                await trio.sleep(rng.random() * 0.005)  # let the relays' batches overlap
                failed: dict[int, str] = {}
                for event in events:
                    if event.key in {e.key for e in events if e.id in failed}:
                        continue  # a sink must not deliver past a failure of the same key
                    if rng.random() < 0.05:
                        failed[event.id] = "flaky"
                    else:
                        log.append((event.key, event.id))
                if failed:
                    raise PartialDelivery(failed)
            finally:
                for key in keys:
                    holders.pop(key, None)

        return deliver

    config = Config(
        dsn=database_dsn,
        batch_size=50,
        poll_interval=0.5,
        max_attempts=100,
        retry_backoff=Backoff(base=0.01, cap=0.05),
    )
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 't', 'k' || mod(g, %s),"
            " '{}' FROM generate_series(1, %s) g",
            [KEYS, EVENTS],
        )
    with trio.fail_after(GUARD):
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            for number in range(RELAYS):
                await nursery.start(run_relay, config, sink_for(number))
            while len({id for _, id in log}) < EVENTS:  # noqa: ASYNC110 (a simple bounded poll)
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert {id for _, id in log} == set(range(1, EVENTS + 1))
    assert overlaps == 0, "two relays held events of one key at once"
    for key, ids in first_deliveries_in_order(log).items():
        assert ids == sorted(ids), key
