"""Where the admin commands and the relay say they are, what admin sessions may hold."""

from __future__ import annotations

import logging

import psycopg
import pytest
import trio
from psycopg import conninfo

from relay import Config, open_relay
from relay.postgres import admin
from relay.postgres.connect import admin_connection_kwargs
from relay.testing import RecordingSink


def test_dead_list_reads_the_dead_table_in_chunks(database_dsn: str) -> None:
    """A server-side cursor: `--limit 2000000` on a million rows must not hold them all."""
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox_dead (id, topic, payload, created_at, attempts, available_at,"
            " last_error, failed_at)"
            " SELECT n, 't', '{}', now(), 1, now(), 'boom', now() FROM generate_series(1, 1200) n"
        )
    config = Config(dsn=database_dsn, application_name="relay-admin-test")
    with admin.list_dead(config, admin.DeadFilter(), limit=2_000_000) as listing:
        assert next(listing.rows)["id"] == 1
        with psycopg.connect(database_dsn) as other:
            row = other.execute(
                "SELECT query FROM pg_stat_activity WHERE application_name = %s",
                [config.application_name],
            ).fetchone()
        assert row is not None
        assert row[0].startswith('FETCH FORWARD 500 FROM "relay_dead_list"')
        assert sum(1 for _ in listing.rows) == 1199


def test_admin_sessions_run_without_the_relays_statement_timeout(database_dsn: str) -> None:
    config = Config(dsn=database_dsn, statement_timeout=30.0)
    with psycopg.connect(database_dsn, **admin_connection_kwargs(config)) as conn:
        settings = conn.execute(
            "SELECT current_setting('statement_timeout'),"
            " current_setting('idle_in_transaction_session_timeout')"
        ).fetchone()
    assert settings == ("0", "0")


async def test_the_relays_start_up_line_names_the_server_and_database_it_reached(
    database_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    params = conninfo.conninfo_to_dict(database_dsn)
    # No host, port or database in the DSN: libpq's variables choose them, as for many users.
    variables = {"PGHOST": params["host"], "PGPORT": params.get("port") or "5432"}
    variables["PGDATABASE"] = params["dbname"]
    dsn = conninfo.make_conninfo(user=params.get("user"), password=params.get("password"))
    reached = f"{variables['PGHOST']}:{variables['PGPORT']}/{variables['PGDATABASE']}"
    caplog.set_level(logging.INFO, logger="relay")
    with pytest.MonkeyPatch.context() as patch, trio.fail_after(30):
        for name, value in variables.items():
            patch.setenv(name, str(value))
        async with open_relay(Config(dsn=dsn), RecordingSink()):
            pass
    assert f"relay running on {reached}, schema relay" in caplog.text
