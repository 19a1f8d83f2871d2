"""`relay status` and `relay dead` against a real outbox."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import psycopg
import pytest
from psycopg import conninfo

from .cli_runs import relay as run


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def seed(dsn: str) -> None:
    """Two pending orders (one retrying), one pending mail, two dead orders and one dead mail."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload, created_at) VALUES"
            " ('orders', 'a', '1', now() - interval '30 seconds'), ('orders', 'b', '2', now()),"
            " ('mail', null, '3', now())"
        )
        conn.execute(
            "UPDATE relay.outbox SET attempts = 1, available_at = now() + interval '1 hour'"
            " WHERE key = 'b'"
        )
        conn.execute(
            "INSERT INTO relay.outbox_dead (id, topic, key, payload, created_at, attempts,"
            " available_at, last_error, failed_at) VALUES"
            " (101, 'orders', 'x', '{\"n\": 1}', now(), 10, now(), 'boom',"
            "  now() - interval '3 days'),"
            " (102, 'orders', 'y', '{\"n\": 2}', now(), 10, now(), 'boom', now()),"
            " (103, 'mail', null, '{\"n\": 3}', now(), 10, now(), 'bad address', now())"
        )


def test_status_counts_pending_retrying_dead_and_per_topic(database_dsn: str) -> None:
    seed(database_dsn)
    found = json.loads(relay("status", "--dsn", database_dsn, "--json").stdout)
    assert found["pending"] == 3
    assert found["retrying"] == 1
    assert found["dead"] == 3
    assert 29 <= found["oldest_pending_age_seconds"] < 60
    assert found["topics"] == {
        "mail": {"pending": 1, "retrying": 0, "dead": 1},
        "orders": {"pending": 2, "retrying": 1, "dead": 2},
    }
    text = relay("status", "--dsn", database_dsn).stdout
    assert text.splitlines()[1].startswith("pending 3  oldest pending age 3")


def test_dead_list_filters_by_topic_id_and_age(database_dsn: str) -> None:
    seed(database_dsn)

    def ids(*args: str) -> list[int]:
        out = relay("dead", "list", "--dsn", database_dsn, *args).stdout
        return [json.loads(line)["id"] for line in out.splitlines()]

    assert ids() == [101, 102, 103]
    assert ids("--topic", "orders") == [101, 102]
    assert ids("--id", "103", "--id", "101") == [101, 103]
    assert ids("--older-than", "2d") == [101]
    first = json.loads(relay("dead", "list", "--dsn", database_dsn, "--limit", "1").stdout)
    assert first["payload"] == {"n": 1}
    assert first["last_error"] == "boom"


def test_dead_retry_moves_events_back_with_their_ids_and_notifies(database_dsn: str) -> None:
    seed(database_dsn)
    with psycopg.connect(database_dsn, autocommit=True) as listener:
        listener.execute("LISTEN relay_outbox")
        out = relay("dead", "retry", "--dsn", database_dsn, "--topic", "orders").stdout
        assert out.startswith("moved 2 dead event(s) (ids 101..102) back into the outbox at ")
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1
    with psycopg.connect(database_dsn) as conn:
        back = conn.execute(
            "SELECT id, attempts, available_at <= now() FROM relay.outbox WHERE id > 100"
            " ORDER BY id"
        ).fetchall()
        left = conn.execute("SELECT id FROM relay.outbox_dead").fetchall()
    assert back == [(101, 0, True), (102, 0, True)]
    assert left == [(103,)]


def test_dead_purge_deletes_only_what_the_filter_names(database_dsn: str) -> None:
    seed(database_dsn)
    out = relay("dead", "purge", "--dsn", database_dsn, "--older-than", "1d").stdout
    assert out.startswith("purged 1 dead event(s) (id 101) at ")
    with psycopg.connect(database_dsn) as conn:
        assert conn.execute("SELECT id FROM relay.outbox_dead ORDER BY id").fetchall() == [
            (102,),
            (103,),
        ]


def libpq_variables(dsn: str) -> dict[str, str]:
    """`dsn` as libpq's PG* variables: what a user relying on them would set."""
    params = conninfo.conninfo_to_dict(dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER"}
    names |= {"password": "PGPASSWORD"}
    return {names[k]: str(v) for k, v in params.items() if k in names and v is not None}


def test_every_command_names_the_server_and_database_it_reached(database_dsn: str) -> None:
    """Not from the DSN (here none): from the connection, libpq's variables included."""
    env = libpq_variables(database_dsn)
    reached = f"{env['PGHOST']}:{env.get('PGPORT', '5432')}/{env['PGDATABASE']}"
    seed(database_dsn)
    outputs = {
        "migrate": run("migrate", env=env).stdout,
        "status": run("status", env=env).stdout,
        "status --json": json.loads(run("status", "--json", env=env).stdout)["server"],
        "dead list": run("dead", "list", env=env).stderr,
        "dead retry": run("dead", "retry", "--id", "101", env=env).stdout,
        "dead purge": run("dead", "purge", "--all", "--dry-run", env=env).stdout,
    }
    for command, output in outputs.items():
        assert reached in output, (command, output)


@pytest.mark.parametrize("dsn", [None, ""])
@pytest.mark.parametrize(
    "command", [["migrate"], ["dead", "retry", "--all"], ["dead", "purge", "--all"]]
)
def test_commands_that_change_data_refuse_to_run_without_any_dsn_source(
    command: list[str], dsn: str | None
) -> None:
    result = run(*command, *([] if dsn is None else ["--dsn", dsn]), env={"HOME": "/nonexistent"})
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "no database given: pass --dsn, or set RELAY_DSN" in result.stderr


@pytest.mark.parametrize("action", ["retry", "purge"])
def test_retry_and_purge_need_a_scope(database_dsn: str, action: str) -> None:
    seed(database_dsn)
    result = run("dead", action, "--dsn", database_dsn)
    assert result.returncode == 2
    assert result.stderr == (
        f"relay: dead {action}: needs a scope: --all, or --topic, --id or --older-than"
        " (and --dry-run to see what it would do)\n"
    )
    both = run("dead", action, "--dsn", database_dsn, "--all", "--topic", "orders")
    assert both.returncode == 2
    assert "--all cannot be combined" in both.stderr
    assert dead_ids(database_dsn) == [101, 102, 103]


def dead_ids(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM relay.outbox_dead ORDER BY id")]


@pytest.mark.parametrize(
    ("action", "said"),
    [
        ("retry", "would move 2 dead event(s) (ids 101..102) back into the outbox at "),
        ("purge", "would purge 2 dead event(s) (ids 101..102) at "),
    ],
)
def test_a_dry_run_says_what_it_would_do_and_changes_nothing(
    database_dsn: str, action: str, said: str
) -> None:
    seed(database_dsn)
    out = relay("dead", action, "--dsn", database_dsn, "--topic", "orders", "--dry-run").stdout
    assert out.startswith(said)
    assert out.rstrip().endswith("; nothing changed (--dry-run)")
    assert dead_ids(database_dsn) == [101, 102, 103]


@pytest.mark.parametrize("action", ["list", "retry", "purge"])
def test_ids_that_are_not_there_are_reported_and_exit_1(database_dsn: str, action: str) -> None:
    seed(database_dsn)
    result = run("dead", action, "--dsn", database_dsn, "--id", "9999", "--id", "101")
    assert result.returncode == 1, result
    assert result.stderr.splitlines()[-1] == "relay: no dead event with id 9999"
    assert "Traceback" not in result.stderr
    assert (101 in dead_ids(database_dsn)) == (action == "list")  # the rest was done


def test_durations_need_a_unit(database_dsn: str) -> None:
    result = run("dead", "purge", "--dsn", database_dsn, "--older-than", "7")
    assert result.returncode == 2
    assert "7 needs a unit: 7s, 7m, 7h or 7d" in result.stderr


def test_status_lists_the_oldest_retrying_events_with_their_reasons(database_dsn: str) -> None:
    seed(database_dsn)
    with psycopg.connect(database_dsn) as conn:
        conn.execute(
            "UPDATE relay.outbox SET topic = E'ord\\x1b[31mers', last_error = E'HTTP 503\\nbody'"
            " WHERE key = 'b'"
        )
    found = json.loads(relay("status", "--dsn", database_dsn, "--json").stdout)
    [event] = found["retrying_events"]
    assert event["topic"] == "ord\x1b[31mers"
    assert (event["key"], event["attempts"], event["last_error"]) == ("b", 1, "HTTP 503\nbody")
    assert event["next_try_at"] > datetime.datetime.now(datetime.UTC).isoformat()
    text = relay("status", "--dsn", database_dsn).stdout
    assert "\x1b" not in text  # shown, never run by the terminal
    [line] = [line for line in text.splitlines() if line.startswith("  id ")]
    assert "topic ord\\x1b[31mers  key b  attempts 1" in line
    assert line.endswith("error: HTTP 503\\nbody")
