"""The whole relay, embedded in a trio program, against a real PostgreSQL server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import psycopg
import pytest
import trio
from psycopg import conninfo, sql

from relay import (
    Backoff,
    Config,
    OutboxEvent,
    PartialDelivery,
    RestartIntensityExceeded,
    open_relay,
)
from relay.testing import RecordingSink

from ..conftest import PostgresServer, pending_count

GUARD = 60
NEVER = 3600.0  # a poll interval no test waits for: delivery must come from NOTIFY or a reconnect


def insert(dsn: str, count: int, key: str | None = None) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload)"
            " SELECT 'orders', %s, jsonb_build_object('n', g) FROM generate_series(1, %s) g",
            [key, count],
        )


def backend_pids(server: PostgresServer, dsn: str, where: str) -> list[int]:
    """The relay's backends on `dsn`'s database, asked through the admin database."""
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s"
            " AND application_name = 'relay' AND " + where,
            [conninfo.conninfo_to_dict(dsn)["dbname"]],
        ).fetchall()
    return [row[0] for row in rows]


def terminate(server: PostgresServer, pids: list[int]) -> None:
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


async def wait_until(condition: Callable[[], bool], interval: float = 0.05) -> None:
    """Poll `condition`: what it watches (another process, the database) cannot signal us."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


async def test_events_written_by_plain_sql_reach_an_embedded_callback(database_dsn: str) -> None:
    received: list[OutboxEvent] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        received.extend(events)

    config = Config(dsn=database_dsn, poll_interval=NEVER, batch_size=50)
    with trio.fail_after(GUARD):
        async with open_relay(config, handler):
            await trio.to_thread.run_sync(insert, database_dsn, 120, "order-1")
            await wait_until(lambda: len(received) == 120)
    assert [event.payload["n"] for event in received] == list(range(1, 121))
    assert pending_count(database_dsn) == 0


async def test_after_the_listener_is_killed_events_written_meanwhile_arrive_without_polling(
    database_dsn: str, postgres_server: PostgresServer
) -> None:
    sink = RecordingSink()
    name = conninfo.conninfo_to_dict(database_dsn)["dbname"]
    allow = sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}")
    config = Config(dsn=database_dsn, poll_interval=NEVER)
    with trio.fail_after(GUARD):
        async with open_relay(config, sink) as handle:
            with (
                psycopg.connect(database_dsn) as writer,
                psycopg.connect(postgres_server.admin_dsn, autocommit=True) as admin,
            ):
                # Keep the listener from coming back until the events are in.
                admin.execute(allow.format(sql.Identifier(name), sql.SQL("false")))
                try:
                    (listener,) = backend_pids(
                        postgres_server, database_dsn, "query ILIKE 'LISTEN%%'"
                    )
                    terminate(postgres_server, [listener])
                    await wait_until(lambda: not handle.statistics().listener_connected)
                    writer.execute("INSERT INTO relay.outbox (topic, payload) VALUES ('t', '1')")
                    writer.commit()  # its NOTIFY reaches nobody
                    await trio.sleep(0.3)
                    assert sink.ids == []
                finally:
                    admin.execute(allow.format(sql.Identifier(name), sql.SQL("true")))
            await sink.wait_for(1)  # the reconnect's catch-up wakeup, not the poll
            assert handle.statistics().listener_connected
            assert handle.statistics().restarts == 0  # an outage waited out, not a crash


async def test_killing_the_drainers_connection_mid_batch_loses_nothing(
    database_dsn: str, postgres_server: PostgresServer
) -> None:
    in_sink = trio.Event()
    release = trio.Event()
    delivered: list[int] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        if not release.is_set():
            in_sink.set()
            await release.wait()
        delivered.extend(event.id for event in events)

    await trio.to_thread.run_sync(insert, database_dsn, 300, None)
    config = Config(dsn=database_dsn, poll_interval=NEVER, batch_size=100)
    with trio.fail_after(GUARD):
        async with open_relay(config, handler) as handle:
            await in_sink.wait()
            drainer = backend_pids(postgres_server, database_dsn, "state = 'idle in transaction'")
            assert len(drainer) == 1
            terminate(postgres_server, drainer)
            release.set()
            await wait_until(lambda: pending_count(database_dsn) == 0, interval=0.1)
            assert handle.statistics().restarts == 0  # an outage waited out, not a crash
    with psycopg.connect(database_dsn) as conn:
        ids = [row[0] for row in conn.execute("SELECT g FROM generate_series(1, 300) g")]
    assert set(delivered) == set(ids)  # every id at least once
    duplicates = len(delivered) - len(set(delivered))
    assert duplicates <= 100  # at most the batch whose commit was cut off


async def test_a_table_altered_under_the_relay_stops_it_and_loses_nothing(
    database_dsn: str,
) -> None:
    """The claim fails on every restart until the relay gives up; every row stays pending."""
    await trio.to_thread.run_sync(insert, database_dsn, 10, None)
    sink = RecordingSink()
    config = Config(dsn=database_dsn, poll_interval=NEVER, restart_intensity=2)
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE relay.outbox RENAME COLUMN headers TO extra")
    with trio.fail_after(GUARD), pytest.raises(RestartIntensityExceeded) as caught:
        async with open_relay(config, sink):
            await trio.sleep_forever()
    assert "headers" in str(caught.value.__cause__)
    assert sink.ids == []
    assert pending_count(database_dsn) == 10


async def test_a_poison_event_dies_after_max_attempts_without_blocking_other_keys(
    database_dsn: str,
) -> None:
    """And `relay dead retry` brings it back, to be delivered once the sink accepts it."""
    poison_fixed = False
    delivered: list[tuple[str | None, int]] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        failed = {e.id: "cannot handle" for e in events if e.key == "A" and not poison_fixed}
        delivered.extend((e.key, e.id) for e in events if e.id not in failed and e.key != "A")
        delivered.extend((e.key, e.id) for e in events if e.key == "A" and poison_fixed)
        if failed:
            raise PartialDelivery(failed)

    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) VALUES"
            " ('t', 'A', '1'), ('t', 'B', '2'), ('t', 'B', '3')"
        )
    config = Config(dsn=database_dsn, max_attempts=3, retry_backoff=Backoff(base=0.05, cap=0.1))
    with trio.fail_after(GUARD):
        async with open_relay(config, handler) as handle:
            await wait_until(lambda: handle.statistics().dead == 1)
            assert delivered == [("B", 2), ("B", 3)]  # B never waited for A
            with psycopg.connect(database_dsn) as conn:
                dead = conn.execute("SELECT id, attempts, last_error FROM relay.outbox_dead")
                assert dead.fetchall() == [(1, 3, "cannot handle")]
            poison_fixed = True
            command = ["dead", "retry", "--all", "--dsn", database_dsn]
            retried = await trio.run_process(
                [sys.executable, "-m", "relay.cli", *command], capture_stdout=True
            )
            assert b"moved 1" in retried.stdout
            await wait_until(lambda: ("A", 1) in delivered)
    assert pending_count(database_dsn) == 0


async def test_headers_that_are_not_an_object_fail_their_event_not_the_relay(
    database_dsn: str,
) -> None:
    """A foreign writer's `headers = '[]'`: the handler cannot read them, the event dies alone."""
    delivered: list[int] = []

    async def handler(events: Sequence[OutboxEvent]) -> None:
        failed = {}
        for event in events:
            try:
                dict(event.headers)
            except TypeError as exc:
                failed[event.id] = str(exc)
            else:
                delivered.append(event.id)
        if failed:
            raise PartialDelivery(failed)

    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, headers) VALUES"
            " ('t', 'A', '1', '[1, 2]'), ('t', 'B', '2', '{\"h\": 1}')"
        )
    config = Config(dsn=database_dsn, max_attempts=2, retry_backoff=Backoff(base=0.05, cap=0.1))
    with trio.fail_after(GUARD):
        async with open_relay(config, handler) as handle:
            await wait_until(lambda: handle.statistics().dead == 1)
            assert handle.statistics().restarts == 0
    assert delivered == [2]
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT id, headers, last_error FROM relay.outbox_dead").fetchall()
    assert dead == [(1, [1, 2], "not a JSON object: b'[1, 2]'")]
