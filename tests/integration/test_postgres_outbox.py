"""The PostgreSQL adapter's claim, settle and next-due semantics, against a real server."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest
import trio

from relay import Config, OutboxUnavailable, SchemaMissing
from relay.backoff import Backoff
from relay.ports import Retry
from relay.postgres import enqueue, open_postgres_outbox
from relay.postgres import outbox as outbox_module
from relay.postgres.queries import Queries

GUARD = 30  # seconds: a hang fails the test instead of stalling CI


def insert(dsn: str, *rows: tuple[str, str | None, str]) -> list[int]:
    """Insert rows by plain SQL, as a foreign writer would."""
    with psycopg.connect(dsn) as conn:
        return [
            conn.execute(
                "INSERT INTO relay.outbox (topic, key, payload) VALUES (%s, %s, %s) RETURNING id",
                row,
            ).fetchone()[0]  # type: ignore[index]
            for row in rows
        ]


def outbox_rows(dsn: str, table: str = "outbox") -> list[dict[str, object]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT *, now() AS now FROM relay.{table} ORDER BY id").fetchall()


async def test_claims_come_oldest_first_and_skip_rows_not_yet_available(
    relay_config: Config,
) -> None:
    dsn = relay_config.dsn
    first, later, second = insert(dsn, ("t", None, "1"), ("t", None, "2"), ("t", None, "3"))
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE relay.outbox SET available_at = now() + interval '1 hour' WHERE id = %s",
            [later],
        )
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                assert [e.id for e in batch.events] == [first, second]
                assert [e.payload for e in batch.events] == [1, 3]
                await batch.settle(retry={}, bury={})
    assert [row["id"] for row in outbox_rows(dsn)] == [later]


async def test_two_concurrent_claimers_never_get_the_same_row(relay_config: Config) -> None:
    ids = insert(relay_config.dsn, *[("t", None, str(n)) for n in range(40)])
    claimed: list[list[int]] = []
    both_claimed = trio.Event()
    arrivals = 0

    async def claimer(outbox: object, limit: int) -> None:
        nonlocal arrivals
        async with outbox.claim(limit) as batch:  # type: ignore[attr-defined]
            claimed.append([e.id for e in batch.events])
            arrivals += 1
            if arrivals == 2:
                both_claimed.set()
            await both_claimed.wait()  # both transactions are open at once
            await batch.settle(retry={}, bury={})

    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer, outbox, 25)
                nursery.start_soon(claimer, outbox, 25)
            assert len(claimed) == 2
            assert set(claimed[0]).isdisjoint(claimed[1])
            # Racing for the same partitions, the two may leave some of the 40 to a later claim.
            async with outbox.claim(40) as rest:
                claimed.append([e.id for e in rest.events])
                await rest.settle(retry={}, bury={})
    assert sorted(claimed[0] + claimed[1] + claimed[2]) == ids


async def test_a_retried_row_gets_attempts_available_at_and_last_error(
    relay_config: Config,
) -> None:
    (id,) = insert(relay_config.dsn, ("t", "k", '{"a": 1}'))
    delay = Backoff(base=2.0, cap=60.0, jitter=0.0).delay(0)
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                await batch.settle(retry={id: Retry(delay, "boom")}, bury={})
            async with outbox.claim(10) as batch:
                assert batch.events == []  # not due yet
                due = batch.next_due
    (row,) = outbox_rows(relay_config.dsn)
    assert row["id"] == id
    assert row["attempts"] == 1
    assert row["last_error"] == "boom"
    scheduled = row["available_at"] - row["now"]  # type: ignore[operator]
    assert datetime.timedelta(seconds=1.5) < scheduled <= datetime.timedelta(seconds=2)
    assert due is not None and 0 < due <= 2.0


async def test_a_retried_row_holds_back_its_key_but_not_other_keys(relay_config: Config) -> None:
    a1, a2, b1 = insert(relay_config.dsn, ("t", "A", "1"), ("t", "A", "2"), ("t", "B", "3"))
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                await batch.settle(retry={a1: Retry(3600, "boom")}, bury={}, hold=[a2, b1])
            async with outbox.claim(10) as batch:
                assert [e.id for e in batch.events] == [b1]


async def test_an_exhausted_row_moves_to_outbox_dead_intact(relay_config: Config) -> None:
    with psycopg.connect(relay_config.dsn) as conn:
        id = enqueue(conn, "orders", {"n": 1}, key="k", headers={"trace": "x"})
    before = outbox_rows(relay_config.dsn)[0]
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                await batch.settle(retry={}, bury={id: "gave up"})
    assert outbox_rows(relay_config.dsn) == []
    (dead,) = outbox_rows(relay_config.dsn, "outbox_dead")
    for column in ("id", "topic", "key", "payload", "headers", "created_at"):
        assert dead[column] == before[column]
    assert dead["attempts"] == 1
    assert dead["last_error"] == "gave up"
    assert dead["failed_at"] is not None


async def test_leaving_a_claim_without_settling_puts_every_row_back(relay_config: Config) -> None:
    ids = insert(relay_config.dsn, ("t", None, "1"), ("t", None, "2"))
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            with pytest.raises(RuntimeError):
                async with outbox.claim(10) as batch:
                    assert len(batch.events) == 2
                    raise RuntimeError("the sink crashed")
    assert [(r["id"], r["attempts"]) for r in outbox_rows(relay_config.dsn)] == [
        (ids[0], 0),
        (ids[1], 0),
    ]


async def test_a_plain_sql_insert_notifies_a_listener(relay_config: Config) -> None:
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox, outbox.listen() as notifications:
            await trio.to_thread.run_sync(insert, relay_config.dsn, ("t", None, "1"))
            await notifications.__anext__()


async def test_relay_connections_carry_their_name_and_timeouts(relay_config: Config) -> None:
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox, outbox.listen():
            with psycopg.connect(relay_config.dsn) as conn:
                rows = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'relay'"
                    " AND datname = current_database()"
                ).fetchone()
            assert rows is not None and rows[0] >= 2  # the pool and the listener
            async with outbox.claim(1) as batch:
                conn = batch.conn  # type: ignore[attr-defined]
                settings = await _settings(conn)
    assert settings == ("1min", "30s", "off", "force_generic_plan")


async def _settings(conn: psycopg.AsyncConnection[Any]) -> tuple[Any, ...]:
    rows = await _fetch(
        conn,
        "SELECT current_setting('idle_in_transaction_session_timeout'),"
        " current_setting('statement_timeout'), current_setting('jit'),"
        " current_setting('plan_cache_mode')",
    )
    return rows[0]


async def test_claims_run_the_generic_plans_of_their_prepared_statements(
    relay_config: Config,
) -> None:
    """Never a custom plan: planning a claim afresh costs more than running it."""
    insert(relay_config.dsn, *[("t", f"k{n % 3}", str(n)) for n in range(8)])
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            for _ in range(8):  # the server tries 5 custom plans before it may choose
                async with outbox.claim(1) as batch:
                    plans = await _fetch(
                        batch.conn,  # type: ignore[attr-defined]
                        "SELECT name, generic_plans > 0, custom_plans FROM pg_prepared_statements"
                        " ORDER BY name",
                    )
                    await batch.settle(retry={}, bury={})
    assert plans == [("relay_claim", True, 0), ("relay_lock_partitions", True, 0)]


async def _fetch(conn: psycopg.AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:
    import trio_asyncio

    async def read() -> list[tuple[Any, ...]]:
        cur = await conn.execute(query)
        return await cur.fetchall()

    result: list[tuple[Any, ...]] = await trio_asyncio.aio_as_trio(read)()
    return result


async def test_opening_an_unmigrated_database_says_run_migrate(empty_database_dsn: str) -> None:
    with trio.fail_after(GUARD), pytest.raises(SchemaMissing, match="relay migrate"):
        async with open_postgres_outbox(Config(dsn=empty_database_dsn)):
            pass


async def test_opening_an_unreachable_database_raises_outbox_unavailable() -> None:
    config = Config(dsn="postgresql://relay:hunter2@127.0.0.1:1/nowhere")
    with trio.fail_after(GUARD), pytest.raises(OutboxUnavailable) as caught:
        async with open_postgres_outbox(config):
            pass
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1/nowhere" in str(caught.value)


async def test_opening_an_outdated_schema_says_run_migrate(relay_config: Config) -> None:
    with psycopg.connect(relay_config.dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX relay.outbox_partition_idx")
        conn.execute("DELETE FROM relay.schema_version WHERE version > 1")
    with trio.fail_after(GUARD), pytest.raises(SchemaMissing) as caught:
        async with open_postgres_outbox(relay_config):
            pass
    assert "out of date" in str(caught.value)
    assert "relay migrate" in str(caught.value)


def _scalar(dsn: str, query: str) -> Any:
    """The one value `query` returns, on a connection of its own."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
    assert row is not None
    return row[0]


def _terminate_relay_connections(dsn: str) -> int:
    # With a timeout: returns once the backends are gone, not when they were signalled.
    return int(
        _scalar(
            dsn,
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE application_name = 'relay' AND pid <> pg_backend_pid()",
        )
    )


@pytest.mark.parametrize("pool_size", [1, 2])  # 2: the drainer keeps one between claims
async def test_a_pooled_connection_killed_while_idle_costs_the_claim_nothing(
    relay_config: Config, pool_size: int
) -> None:
    """The claim does not ping before use: it finds the dead connection and claims on a new one."""
    (first,) = insert(relay_config.dsn, ("t", "k", "1"))
    config = Config(dsn=relay_config.dsn, pool_size=pool_size)
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(config) as outbox:
            async with outbox.claim(10) as batch:
                assert [e.id for e in batch.events] == [first]
                await batch.settle(retry={}, bury={})
            (second,) = insert(relay_config.dsn, ("t", "k", "2"))
            assert await trio.to_thread.run_sync(_terminate_relay_connections, config.dsn) >= 1
            async with outbox.claim(10) as batch:
                assert [e.id for e in batch.events] == [second]
                await batch.settle(retry={}, bury={})
    assert outbox_rows(relay_config.dsn) == []


async def test_a_claim_cancelled_in_flight_loses_nothing_and_the_next_claim_works(
    relay_config: Config,
) -> None:
    """Cancelled while the server works on the claim: the connection is dropped, not reused."""
    ids = insert(relay_config.dsn, ("t", "k", "1"), ("t", None, "2"))
    config = Config(dsn=relay_config.dsn, pool_size=1)
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(config) as outbox:
            async with outbox.claim(10):
                pass  # the claim statements are prepared: the next claim goes straight to them
            with psycopg.connect(config.dsn) as blocker:
                # The claim's statements wait for this lock on the server until cancelled.
                blocker.execute("LOCK TABLE relay.outbox IN ACCESS EXCLUSIVE MODE")
                with trio.move_on_after(0.5) as scope:
                    async with outbox.claim(10):
                        pytest.fail("the claim cannot get past the table lock")
                blocker.rollback()
            assert scope.cancelled_caught
            async with outbox.claim(10) as batch:
                assert [e.id for e in batch.events] == ids
                await batch.settle(retry={}, bury={})
    assert outbox_rows(relay_config.dsn) == []


async def test_a_claim_after_a_retry_and_an_empty_claim_still_finds_its_statements(
    relay_config: Config,
) -> None:
    """A settle that put an event back, then claims that rolled back: psycopg must not have
    deallocated relay's prepared claim (it does after statements of its own)."""
    (id,) = insert(relay_config.dsn, ("t", "k", "1"))
    config = Config(dsn=relay_config.dsn, pool_size=1)
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(config) as outbox:
            for _ in range(3):
                async with outbox.claim(10) as batch:
                    assert [e.id for e in batch.events] == [id]
                    await batch.settle(retry={id: Retry(0.0, "again")}, bury={})
                for _ in range(6):
                    await outbox.backlog()  # the metrics' query, on the same connection
                    async with outbox.claim(10):
                        pass  # left without settling: rolled back
    assert [row["attempts"] for row in outbox_rows(relay_config.dsn)] == [3]


def _relay_connections(dsn: str) -> Any:
    return _scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'relay'")


async def test_closing_the_outbox_closes_every_connection_it_opened(relay_config: Config) -> None:
    """The connection kept between claims too."""
    insert(relay_config.dsn, ("t", "k", "1"))
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(10) as batch:
                await batch.settle(retry={}, bury={})
            assert outbox._spare is not None
    with trio.fail_after(GUARD):
        # Polls the server: no trio task can tell when its backends are gone.
        while await trio.to_thread.run_sync(_relay_connections, relay_config.dsn):  # noqa: ASYNC110
            await trio.sleep(0.05)


def _claim_after_a_late_put_back(dsn: str, queries: Queries) -> tuple[list[int], list[int]]:
    first, second = insert(dsn, ("t", "k", "1"), ("t", "k", "2"))
    with psycopg.connect(dsn, autocommit=True) as relay, psycopg.connect(dsn) as other:
        psycopg.ClientCursor(relay).execute(queries.prepare_claim)
        relay.execute("BEGIN")
        relay.execute("SELECT now()")  # this claim transaction's time is now fixed
        # Meanwhile the key's previous holder puts `first` back as held: available at once,
        # but from a time later than the claim transaction's start.
        other.execute(
            "UPDATE relay.outbox SET available_at = clock_timestamp() WHERE id = %s", [first]
        )
        other.commit()
        relay.execute("EXECUTE relay_lock_partitions(0, 10, 0)")
        rows = relay.execute("EXECUTE relay_claim(10, 16777216)").fetchall()
        relay.execute("ROLLBACK")
    return [first, second], sorted(row[0] for row in rows)


async def test_an_event_put_back_after_the_claim_began_is_not_skipped_for_a_later_one(
    relay_config: Config,
) -> None:
    """Else the claim would hand out the key's second event before its first."""
    with trio.fail_after(GUARD):
        written, claimed = await trio.to_thread.run_sync(
            _claim_after_a_late_put_back, relay_config.dsn, Queries(relay_config.schema)
        )
    assert claimed == written


def _vacuumed(dsn: str) -> Any:
    return _scalar(
        dsn,
        "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables"
        " WHERE schemaname = 'relay' AND relname = 'outbox'",
    )


async def test_the_outbox_is_vacuumed_as_a_long_drain_goes(
    relay_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else every claim walks past all the entries of the rows removed before it.

    The VACUUM leaves the emptied pages in place: truncating them waits (up to 5 s, holding up
    the drainer) for an exclusive lock that writers inserting at that moment do not give up.
    """
    monkeypatch.setattr(outbox_module, "_VACUUM_EVERY", 20)
    with psycopg.connect(relay_config.dsn) as conn:
        conn.execute("ALTER TABLE relay.outbox SET (autovacuum_enabled = false)")
    insert(relay_config.dsn, *[("t", f"k{n}", '"' + "x" * 500 + '"') for n in range(30)])
    size = _scalar(relay_config.dsn, "SELECT pg_relation_size('relay.outbox')")
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            async with outbox.claim(30) as batch:
                await batch.settle(retry={}, bury={})
        # The statistics reach other sessions a little later.
        while not await trio.to_thread.run_sync(_vacuumed, relay_config.dsn):  # noqa: ASYNC110
            await trio.sleep(0.1)
    assert size > 0
    assert _scalar(relay_config.dsn, "SELECT pg_relation_size('relay.outbox')") == size


async def test_a_claim_is_bounded_by_bytes_compressed_payloads_counted_as_their_text(
    relay_config: Config,
) -> None:
    """Three 1 MB payloads that PostgreSQL compresses to a few kB, 1.5 MB allowed: one per claim
    (an oversize one still goes alone), and a cut batch says it left events behind."""
    dsn = relay_config.dsn
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, payload) SELECT 't', to_jsonb(repeat('x', 1000000))"
            " FROM generate_series(1, 3)"
        )
        conn.execute("INSERT INTO relay.outbox (topic, payload) VALUES ('t', '{}')")
        stored = conn.execute("SELECT max(pg_column_size(payload)) FROM relay.outbox").fetchone()
    assert stored is not None and stored[0] < 100_000  # compressed: its stored size would mislead
    sizes: list[list[int]] = []
    cut: list[bool] = []
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(relay_config) as outbox:
            for max_bytes in (1_500_000, 1_500_000, 500_000, 1_500_000):
                async with outbox.claim(10, max_bytes) as batch:
                    sizes.append([len(event.payload_json) for event in batch.events])
                    cut.append(batch.contended)
                    await batch.settle(retry={}, bury={})
    assert sizes == [[1_000_002], [1_000_002], [1_000_002], [2]]
    assert cut == [True, True, True, False]


def _outbox_rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan's nodes read from the outbox table, over all their loops."""
    own = plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
    read = own if plan.get("Relation Name") == "outbox" else 0
    return read + sum(_outbox_rows_read(child) for child in plan.get("Plans", []))


def test_the_backlog_reads_a_bounded_part_of_a_large_outbox(relay_config: Config) -> None:
    """A metrics scrape on 30,000 pending events reads at most 10,001 of them; the figure past
    that is the statistics collector's estimate, not a count."""
    queries = Queries(relay_config.schema)
    with psycopg.connect(relay_config.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, payload)"
            " SELECT 't', '{}' FROM generate_series(1, 30000)"
        )
        conn.execute("ANALYZE relay.outbox")
        [[[explained]]] = conn.execute(
            psycopg.sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(queries.backlog)
        ).fetchall()
        pending = conn.execute(queries.backlog).fetchone()
    assert _outbox_rows_read(explained["Plan"]) <= 10_001
    assert pending is not None and 10_000 < pending[0] <= 30_000
