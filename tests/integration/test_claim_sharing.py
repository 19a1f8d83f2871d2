"""How claims share the outbox: the window, the partitions each claim locks, and its share."""

from __future__ import annotations

from typing import Any

import attrs
import psycopg
import trio

from relay import Config
from relay.postgres import open_postgres_outbox
from relay.postgres.queries import Queries

from .test_postgres_outbox import GUARD, insert, outbox_rows


async def test_events_held_behind_a_retry_do_not_crowd_other_keys_out_of_a_claim(
    relay_config: Config,
) -> None:
    """The window skips held rows, so a long-blocked key cannot starve the others."""
    with psycopg.connect(relay_config.dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, attempts, available_at)"
            " VALUES ('t', 'A', '0', 1, now() + interval '1 hour')"
        )
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 't', 'A', '1'"
            " FROM generate_series(1, 50)"
        )
        conn.execute("INSERT INTO relay.outbox (topic, key, payload) VALUES ('t', 'B', '2')")
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox, outbox.claim(10) as batch:
            assert [e.key for e in batch.events] == ["B"]


def _partition_groups(dsn: str) -> list[list[str]]:
    """Keys k1..k1000 split by partition: those of partitions 0-31, then those of 32-63."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT hashtext('k' || g) & 63 < 32, array_agg('k' || g ORDER BY g)"
            " FROM generate_series(1, 1000) g GROUP BY 1 ORDER BY 1 DESC"
        ).fetchall()
    return [list(keys) for _, keys in rows]


async def test_a_claim_whose_window_another_relay_holds_looks_further_down_the_queue(
    relay_config: Config,
) -> None:
    """The window (a batch of rows: 10 here) moves 1, 2, 4 and 8 windows down."""
    low, high = _partition_groups(relay_config.dsn)
    with psycopg.connect(relay_config.dsn) as conn:
        # 30 rows of low-partition keys at the head, then 10 more, then 10 of high-partition keys
        for keys in (low[:10] * 3, low[10:20], high[:10]):
            conn.cursor().executemany(
                "INSERT INTO relay.outbox (topic, key, payload) VALUES ('t', %s, '1')",
                [(key,) for key in keys],
            )
    namespace = Queries(relay_config.schema).lock_namespace
    with psycopg.connect(relay_config.dsn) as other:  # another relay, claiming partitions 0-31
        other.execute(
            "SELECT pg_advisory_xact_lock(%s, p) FROM generate_series(0, 31) p", [namespace]
        )
        with trio.fail_after(GUARD):
            async with open_postgres_outbox(relay_config) as outbox, outbox.claim(10) as batch:
                assert batch.contended
                # the windows start 0, 10, 20 (low keys only) and 40 rows down: the high keys
                assert [event.key for event in batch.events] == high[:10]
        other.rollback()


async def test_relays_claiming_at_once_share_the_head_of_the_queue(relay_config: Config) -> None:
    """Three relays (each a member through its listener), each claim open at once: every one gets
    a full batch, and no key is in two of them."""
    with psycopg.connect(relay_config.dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload)"
            " SELECT 't', 'k' || mod(g, 1000), '1' FROM generate_series(1, 6000) g"
        )
    with trio.fail_after(GUARD):
        async with (
            open_postgres_outbox(relay_config) as a,
            open_postgres_outbox(relay_config) as b,
            open_postgres_outbox(relay_config) as c,
            a.listen(),
            b.listen(),
            c.listen(),
            a.claim(500) as first,
            b.claim(500) as second,
            c.claim(500) as third,
        ):
            batches = [first, second, third]
            assert [len(batch.events) for batch in batches] == [500, 500, 500]
            keys = [{event.key for event in batch.events} for batch in batches]
            assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
            # and each takes the oldest events of its keys: with 1000 keys written round
            # robin, key k's n-th event has id n * 1000 + k (ids count from 1)
            for batch in batches:
                for key in {event.key for event in batch.events}:
                    ids = [event.id for event in batch.events if event.key == key]
                    k = int(key[1:]) or 1000
                    assert ids == [k + 1000 * n for n in range(len(ids))], (key, ids)
            assert all(batch.contended for batch in batches)  # each left partitions to others


async def test_a_lone_relay_takes_every_partition_at_the_head(relay_config: Config) -> None:
    """With one member, the claim's batch is exactly the oldest rows, whatever their keys."""
    await _claims_the_head_alone(relay_config)


async def test_a_relays_claims_in_flight_share_the_head_as_relays_would(
    relay_config: Config,
) -> None:
    """Two claims of one relay, each leaving room for the other (`share_with=1`, as the drainer's
    lanes do on a backlog): each gets a full batch of the oldest events of its keys, and no key
    is in both."""
    rows = [("t", f"k{n % 1000}", "1") for n in range(3000)]
    ids_of: dict[str, list[int]] = {}
    for (_, key, _), id in zip(rows, insert(relay_config.dsn, *rows), strict=True):
        ids_of.setdefault(key, []).append(id)
    config = attrs.evolve(relay_config, claims_in_flight=2)
    with trio.fail_after(GUARD):
        async with (
            open_postgres_outbox(config) as outbox,
            outbox.listen(),
            outbox.claim(500, share_with=1) as first,
            outbox.claim(500, share_with=1) as second,
        ):
            assert [len(first.events), len(second.events)] == [500, 500]
            assert first.contended and second.contended
            assert not {e.key for e in first.events} & {e.key for e in second.events}
            for batch in (first, second):  # each takes the oldest events of its keys
                for key in {event.key for event in batch.events}:
                    ids = [event.id for event in batch.events if event.key == key]
                    oldest = ids_of[key]
                    assert ids == oldest[: len(ids)], (key, ids)


async def _claims_the_head_alone(relay_config: Config) -> None:
    """A listening relay's claim of 200 of 300 events over 100 keys takes the 200 oldest (the
    default `share_with=0`: the drainer's claim below a backlog)."""
    ids = insert(relay_config.dsn, *[("t", f"k{n % 100}", "1") for n in range(300)])
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox, outbox.listen():
            async with outbox.claim(200) as batch:
                assert [event.id for event in batch.events] == ids[:200]
                assert not batch.contended


async def test_relays_on_another_database_do_not_count_as_members(
    relay_config: Config, postgres_server: Any
) -> None:
    """Advisory locks are per database, and so is the count of relays sharing an outbox."""
    join = Queries(relay_config.schema).join
    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as elsewhere:
        elsewhere.execute(join)  # a relay of the same schema name on another database
        await _claims_the_head_alone(relay_config)


async def test_a_claim_of_single_event_keys_fills_its_batch_from_its_window(
    relay_config: Config,
) -> None:
    """30 keys of one event each: a claim of 20 takes the first 20 events."""
    with psycopg.connect(relay_config.dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload)"
            " SELECT 't', 'k' || g, '1' FROM generate_series(1, 30) g"
        )
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(20) as batch:
                assert [e.key for e in batch.events] == [f"k{g}" for g in range(1, 21)]
                await batch.settle(retry={}, bury={})
            async with outbox.claim(20) as batch:
                assert len(batch.events) == 10
                assert not batch.contended  # a short batch from a window the queue ended in
                await batch.settle(retry={}, bury={})
    assert outbox_rows(relay_config.dsn) == []
