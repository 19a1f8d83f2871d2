"""`relay status` and `relay dead` against a real outbox."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg


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
    assert text.splitlines()[0].startswith("pending 3  oldest pending age 3")


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
        assert out.strip() == "moved 2 dead event(s) back into the outbox"
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
    assert out.strip() == "purged 1 dead event(s)"
    with psycopg.connect(database_dsn) as conn:
        assert conn.execute("SELECT id FROM relay.outbox_dead ORDER BY id").fetchall() == [
            (102,),
            (103,),
        ]
