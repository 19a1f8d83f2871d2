"""Faults while relay processes drain one outbox; each scenario ends in an exact accounting.

Every id delivered at least once, none lost, duplicates counted, per-key order checked on the
delivered stream (the first delivery of each id, in the order the sinks saw them).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from ..conftest import PostgresServer, pending_count
from .harness import (
    account,
    all_ids_delivered,
    produce,
    record,
    relays,
    wait_until,
)

pytestmark = pytest.mark.chaos


def relay_backends(server: PostgresServer, dsn: str) -> list[int]:
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'relay'",
            [conninfo.conninfo_to_dict(dsn)["dbname"]],
        ).fetchall()
    return [row[0] for row in rows]


def check(scenario: str, logs: list[Path], expected: int, started: float, **extra: object) -> None:
    result = account(logs, expected)
    record(scenario, result, seconds=round(time.monotonic() - started, 1), **extra)
    assert result.lost == 0
    assert result.order_violations == 0


def test_three_relays_four_producers_and_connections_killed_every_200ms(
    database_dsn: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    events, started, kills = 20_000, time.monotonic(), 0
    stop = threading.Event()

    def chaos() -> None:
        nonlocal kills
        rng = random.Random(1)
        with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as admin:
            while not stop.wait(0.2):
                pids = relay_backends(postgres_server, database_dsn)
                if pids:
                    admin.execute("SELECT pg_terminate_backend(%s)", [rng.choice(pids)])
                    kills += 1

    with relays(database_dsn, tmp_path, 3) as running:
        # Faults begin once every relay runs: a relay that cannot start exits 2, by design.
        for relay in running:
            wait_until(lambda r=relay: "relay running" in r.stderr.read_text(), "the relays")
        killer = threading.Thread(target=chaos)
        killer.start()
        try:
            produce(database_dsn, producers=4, events=events, keys=200, pause=0.002)
            logs = [relay.log for relay in running]
            wait_until(all_ids_delivered(logs, events), "every event")
        finally:
            stop.set()
            killer.join()
        wait_until(lambda: pending_count(database_dsn) == 0, "an empty outbox")
    check("killed-connections", logs, events, started, relays=3, kills=kills)


def test_the_server_restarted_mid_run(
    database_dsn: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    server = postgres_server.embedded
    if server is None:
        pytest.skip("restarts the server: only the embedded one, never a shared server")
    events, started = 20_000, time.monotonic()
    produce(database_dsn, producers=1, events=events, keys=200, per_statement=1000)
    with relays(database_dsn, tmp_path, 2, "--batch-size", "20") as running:
        logs = [relay.log for relay in running]
        wait_until(lambda: account(logs, events).delivered_ids > 1000, "the first deliveries")
        server.stop("fast")
        try:
            time.sleep(1.0)
        finally:
            server.start()  # the session's other tests need it back, whatever happens here
        wait_until(all_ids_delivered(logs, events), "every event")
    assert pending_count(database_dsn) == 0
    check("server-restart", logs, events, started, relays=2)


def test_a_relay_killed_with_sigkill_mid_batch_then_restarted(
    database_dsn: str, tmp_path: Path
) -> None:
    events, started = 20_000, time.monotonic()
    produce(database_dsn, producers=1, events=events, keys=200, per_statement=1000)
    with relays(database_dsn, tmp_path, 2, "--batch-size", "20") as running:
        logs = [relay.log for relay in running]
        victim = running[0]
        wait_until(lambda: victim.log.stat().st_size > 0, "the victim's first deliveries")
        victim.kill()
        victim.start()  # same log file: its earlier deliveries still count
        # Before the end, which stops it: a SIGTERM before its handler is set would kill it.
        wait_until(lambda: victim.running(starts=2), "the victim running again")
        wait_until(all_ids_delivered(logs, events), "every event")
    assert pending_count(database_dsn) == 0
    check("sigkill", logs, events, started, relays=2)


def test_a_sink_failing_10_percent_of_events_and_hanging_on_1_percent_of_batches(
    database_dsn: str, tmp_path: Path
) -> None:
    events, started = 20_000, time.monotonic()
    env = {"RELAY_CHAOS_FAIL": "0.10", "RELAY_CHAOS_HANG": "0.01"}
    with relays(database_dsn, tmp_path, 3, "--batch-size", "100", env=env) as running:
        produce(database_dsn, producers=4, events=events, keys=200)
        logs = [relay.log for relay in running]
        wait_until(all_ids_delivered(logs, events), "every event", timeout=240)
        wait_until(lambda: pending_count(database_dsn) == 0, "an empty outbox")
    check("flaky-sink", logs, events, started, relays=3)


def test_with_notifications_suppressed_the_ticker_alone_delivers_everything(
    database_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE relay.outbox DISABLE TRIGGER outbox_notify")
    events, started = 5_000, time.monotonic()
    with relays(database_dsn, tmp_path, 1, "--poll-interval", "0.5") as running:
        produce(database_dsn, producers=2, events=events, keys=200, pause=0.002)
        logs = [relay.log for relay in running]
        wait_until(all_ids_delivered(logs, events), "every event")
    check("no-notifications", logs, events, started, relays=1)


def test_a_silently_lost_listen_is_detected_and_recovered(
    database_dsn: str, tmp_path: Path
) -> None:
    # The listener stays connected but hears nothing: the trigger notifies another channel.
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION relay.outbox_notify() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN PERFORM pg_notify('nobody_listens', ''); RETURN NULL; END $$"
        )
    events, started = 3_000, time.monotonic()
    with relays(database_dsn, tmp_path, 1, "--poll-interval", "0.5") as running:
        produce(database_dsn, producers=1, events=events, keys=100, pause=0.003)
        logs = [relay.log for relay in running]
        wait_until(all_ids_delivered(logs, events), "every event")
        wait_until(lambda: "recycl" in running[0].stderr.read_text(), "the recycle")
    recycles = running[0].stderr.read_text().count("recycl")
    check("silent-listener", logs, events, started, relays=1, recycle_log_lines=recycles)
