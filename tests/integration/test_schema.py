"""Migrations and the claim's query plan, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg
import trio
from psycopg import sql

from relay import Config
from relay.postgres import LATEST_VERSION, migrate, open_postgres_outbox
from relay.postgres.queries import Queries

GUARD = 120


def relay_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=GUARD
    )


def test_migrate_twice_is_a_no_op_the_second_time(empty_database_dsn: str) -> None:
    first = relay_command("migrate", "--dsn", empty_database_dsn)
    second = relay_command("migrate", "--dsn", empty_database_dsn)
    assert first.returncode == 0, first.stderr
    assert "applied migration 1" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert "applied" not in second.stdout
    with psycopg.connect(empty_database_dsn) as conn:
        assert conn.execute("SELECT max(version) FROM relay.schema_version").fetchone() == (
            LATEST_VERSION,
        )


def test_two_migrations_at_once_both_succeed(empty_database_dsn: str) -> None:
    command = [sys.executable, "-m", "relay.cli", "migrate", "--dsn", empty_database_dsn]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [run.communicate(timeout=GUARD) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outcomes
    applied = [out for out, _ in outcomes if "applied migration 1" in out]
    assert len(applied) == 1  # the other waited on the lock, then found nothing to do


def test_a_version_1_outbox_upgrades_with_its_pending_events(database_dsn: str) -> None:
    """Migration 2 adds the partition index to an outbox already in use."""
    _make_version_1(database_dsn)
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO relay.outbox (topic, key, payload) VALUES ('t', 'k', '1')")
    assert [m.version for m in migrate(Config(dsn=database_dsn))] == [2, 3]
    with psycopg.connect(database_dsn) as conn:
        row = conn.execute(
            "SELECT pg_get_indexdef('relay.outbox_partition_idx'::regclass)"
        ).fetchone()
        assert row is not None and "hashtext(key) & 63" in row[0] and "id)" in row[0], row
        assert conn.execute("SELECT count(*) FROM relay.outbox").fetchone() == (1,)


def _make_version_2(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX relay.outbox_waiting_key_idx, relay.outbox_waiting_due_idx")
        conn.execute(
            "CREATE INDEX outbox_retrying_key_idx ON relay.outbox (key, id) WHERE attempts > 0"
        )
        conn.execute(
            "CREATE INDEX outbox_retrying_due_idx ON relay.outbox (available_at) WHERE attempts > 0"
        )
        conn.execute("DELETE FROM relay.schema_version WHERE version = 3")


def _make_version_1(dsn: str) -> None:
    _make_version_2(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX relay.outbox_partition_idx")
        conn.execute("DELETE FROM relay.schema_version WHERE version = 2")


def test_migration_3_indexes_every_row_put_back_with_a_reason(database_dsn: str) -> None:
    """Deferred events (attempts 0, a last_error) must hold their key: the claim's hold check
    reads these partial indexes."""
    _make_version_2(database_dsn)
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO relay.outbox (topic, key, payload) VALUES ('t', 'k', '1')")
    assert [m.version for m in migrate(Config(dsn=database_dsn))] == [3]
    with psycopg.connect(database_dsn) as conn:
        found = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'relay'"
            " AND indexname LIKE 'outbox_%ing_%' ORDER BY indexname"
        ).fetchall()
        assert [name for name, _ in found] == ["outbox_waiting_due_idx", "outbox_waiting_key_idx"]
        assert all(
            "WHERE ((attempts > 0) OR (last_error IS NOT NULL))" in definition
            for _, definition in found
        )
        assert conn.execute("SELECT count(*) FROM relay.outbox").fetchone() == (1,)


def test_migration_2_refuses_to_run_beside_a_connected_relay(database_dsn: str) -> None:
    """Relays of before it lock keys, those after it partitions: never both at once."""
    _make_version_1(database_dsn)
    with psycopg.connect(database_dsn, application_name="relay"):  # a relay still running
        line = relay_command("migrate", "--dsn", database_dsn)
    assert line.returncode == 2
    assert "stop every relay" in line.stderr and len(line.stderr.splitlines()) == 1
    with psycopg.connect(database_dsn) as conn:
        assert conn.execute("SELECT max(version) FROM relay.schema_version").fetchone() == (1,)
    done = relay_command("migrate", "--dsn", database_dsn)
    assert done.returncode == 0 and "applied migration 2" in done.stdout, done.stderr
    assert "applied migration 3" in done.stdout


def test_the_schema_name_is_configurable_and_quoted(empty_database_dsn: str) -> None:
    config = Config(dsn=empty_database_dsn, schema="Events_2")
    assert [m.version for m in migrate(config)] == list(range(1, LATEST_VERSION + 1))
    with psycopg.connect(empty_database_dsn, autocommit=True) as conn:
        conn.execute('LISTEN "Events_2_outbox"')
        conn.execute("INSERT INTO \"Events_2\".outbox (topic, payload) VALUES ('t', '1')")
        assert [n.channel for n in conn.notifies(timeout=5, stop_after=1)] == ["Events_2_outbox"]


def test_a_foreign_writers_plain_insert_notifies_a_listening_connection(database_dsn: str) -> None:
    """No relay code on either side: one NOTIFY per statement, with an empty payload."""
    with (
        psycopg.connect(database_dsn, autocommit=True) as listener,
        psycopg.connect(database_dsn) as writer,
    ):
        listener.execute("LISTEN relay_outbox")
        writer.execute(
            "INSERT INTO relay.outbox (topic, key, payload) VALUES"
            " ('orders', 'o-1', '{\"n\": 1}'), ('orders', 'o-1', '{\"n\": 2}')"
        )
        writer.commit()
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notes] == [("relay_outbox", "")]


def _node_types(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    found = [(plan["Node Type"], plan.get("Relation Name"), plan.get("Alias"))]
    for child in plan.get("Plans", []):
        found += _node_types(child)
    return found


async def test_claiming_stays_an_index_scan_on_a_large_table(database_dsn: str) -> None:
    """With a fresh all-pending backlog (no statistics yet) and after ANALYZE, planned for the
    parameters given or for any (a prepared statement's generic plan)."""
    with trio.fail_after(GUARD):
        await trio.to_thread.run_sync(_check_claim_plans, database_dsn)


def _check_claim_plans(dsn: str) -> None:
    queries = Queries("relay")
    statements = {
        "lock_partitions": "EXECUTE relay_lock_partitions(0, 1000, 0)",
        "claim": "EXECUTE relay_claim(500, 16777216)",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 't', 'k' || mod(g, 1000),"
            " '{}' FROM generate_series(1, 300000) g"
        )
        psycopg.ClientCursor(conn).execute(queries.prepare_claim)
        # What lock_partitions leaves for the claim, when it locked every partition.
        conn.execute(
            "SELECT set_config('relay.claim_partitions', array_agg(p)::text, false),"
            " set_config('relay.claim_quotas', array_agg(8)::text, false)"
            " FROM generate_series(0, 63) p"
        )
        for analyzed, plan_mode in (
            (False, "force_custom_plan"),
            (False, "force_generic_plan"),
            (True, "force_custom_plan"),
            (True, "force_generic_plan"),
        ):
            if analyzed:
                conn.execute("ANALYZE relay.outbox")
            conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Identifier(plan_mode)))
            for name, statement in statements.items():
                row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) " + statement)).fetchone()
                assert row is not None
                nodes = _node_types(row[0][0]["Plan"])
                outbox_scans = [
                    kind
                    for kind, relation, alias in nodes
                    if relation == "outbox" and alias in ("o", "outbox")
                ]
                context = (name, analyzed, plan_mode)
                assert "Index Scan" in outbox_scans, (context, json.dumps(row[0], indent=1))
                if name == "claim":  # each partition read in id order through its index
                    assert '"Index Name": "outbox_partition_idx"' in json.dumps(row[0]), context
                # (the catalogs it reads, pg_database say, are one page: a Seq Scan is right there)
                assert not any(
                    kind == "Seq Scan" and relation == "outbox" for kind, relation, _ in nodes
                ), (context, nodes)


async def test_claims_planned_on_an_empty_outbox_read_a_later_backlog_through_its_indexes(
    database_dsn: str,
) -> None:
    """An outbox is often empty, and its statistics say so when a claim is first planned (or
    planned again after an ANALYZE): the plans made then must not read a backlog that builds
    later with a Seq Scan per claim."""
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        # No ANALYZE behind the test's back: it would plan the claim again, from the backlog.
        conn.execute("ALTER TABLE relay.outbox SET (autovacuum_enabled = false)")
        conn.execute("VACUUM ANALYZE relay.outbox")
    with trio.fail_after(GUARD):
        async with open_postgres_outbox(Config(dsn=database_dsn)) as outbox:
            async with outbox.claim(500) as batch:  # planned now, on an empty table
                await batch.settle(retry={}, bury={})
            await trio.to_thread.run_sync(_fill, database_dsn, 50_000)
            async with outbox.claim(500) as batch:
                conn = batch.conn  # type: ignore[attr-defined]
                cursor = await conn.execute(
                    "SELECT name, generic_plans FROM pg_prepared_statements ORDER BY name"
                )
                plans = await cursor.fetchall()
                scans = {}
                for statement in (
                    "EXECUTE relay_lock_partitions(0, 500, 0)",
                    "EXECUTE relay_claim(500, 16777216)",
                ):
                    cursor = await conn.execute("EXPLAIN (FORMAT JSON) " + statement)
                    row = await cursor.fetchone()
                    scans[statement] = [
                        kind
                        for kind, relation, alias in _node_types(row[0][0]["Plan"])
                        if relation == "outbox" and alias in ("o", "outbox")
                    ]
                await batch.settle(retry={}, bury={})
    # The same connection as the first claim: its plans are the ones made on the empty table.
    assert plans == [("relay_claim", 2), ("relay_lock_partitions", 2)]
    for statement, kinds in scans.items():
        assert kinds, statement
        assert "Seq Scan" not in kinds, (statement, kinds)


def _fill(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 't', 'k' || mod(g, 10), '{}'"
            " FROM generate_series(1, %s) g",
            (n,),
        )
