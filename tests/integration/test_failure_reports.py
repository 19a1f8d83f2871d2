"""`relay run` telling why an event fails, and keeping its secrets from user code."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from ..conftest import pending_count

GUARD = 60.0

FAILING_SINK = """
from relay import PartialDelivery

async def handler(events):
    raise PartialDelivery(
        {e.id: "HTTP 500: \\x1b[31mdb password=hunter2 is down\\x1b[0m\\nsee logs" for e in events}
    )
"""

SPY_SINK = """
import json, os, pathlib

NAMES = ("RELAY_DSN", "DATABASE_URL", "PGPASSWORD", "RELAY_WEBHOOK_SECRET")
pathlib.Path(os.environ["SPY_OUT"]).write_text(json.dumps({n: os.environ.get(n) for n in NAMES}))

async def handler(events):
    pass
"""


def run_relay(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with (tmp_path / "relay.err").open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "run", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(tmp_path), **env},
        )


def wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dead_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM relay.outbox_dead").fetchone()
    assert row is not None
    return int(row[0])


def test_json_logs_carry_each_failed_events_fields(database_dsn: str, tmp_path: Path) -> None:
    """Before: only `sink failed 1 of 1 events`, no id, attempt, next try or reason."""
    (tmp_path / "failing_sink.py").write_text(FAILING_SINK)
    with psycopg.connect(database_dsn) as conn:
        conn.execute("INSERT INTO relay.outbox (topic, key, payload) VALUES ('orders', 'k1', '{}')")
    process = run_relay(
        tmp_path,
        {},
        *("--dsn", database_dsn, "--sink", "python:failing_sink:handler"),
        *("--log-level", "debug", "--log-format", "json", "--max-attempts", "2"),
        *("--retry-backoff-base", "0.1", "--retry-backoff-cap", "0.1"),
    )
    try:
        wait_for(lambda: dead_count(database_dsn) == 1, "the event to die")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0
    lines = [json.loads(line) for line in (tmp_path / "relay.err").read_text().splitlines()]
    failed = [line for line in lines if "event_id" in line]
    reason = "HTTP 500: \\x1b[31mdb password=*** is down\\x1b[0m\\nsee logs"
    assert [
        (line["event_id"], line["topic"], line["key"], line["attempt"], line["max_attempts"])
        for line in failed
    ] == [(1, "orders", "k1", 1, 2), (1, "orders", "k1", 2, 2)]
    assert [(line["dead"], line["reason"], line["level"]) for line in failed] == [
        (False, reason, "warning"),
        (True, reason, "error"),
    ]
    next_try = datetime.datetime.fromisoformat(failed[0]["next_try_at"])
    logged_at = datetime.datetime.fromisoformat(failed[0]["time"])
    assert datetime.timedelta(0) < next_try - logged_at < datetime.timedelta(seconds=1)
    assert failed[1]["next_try_at"] is None
    with psycopg.connect(database_dsn) as conn:
        row = conn.execute("SELECT last_error FROM relay.outbox_dead").fetchone()
    assert row == (reason,)  # the same text as the log: one cleaning for both


def test_a_python_sink_finds_none_of_relays_secrets_in_the_environment(
    database_dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "spy_sink.py").write_text(SPY_SINK)
    spied = tmp_path / "spied.json"
    with psycopg.connect(database_dsn) as conn:
        conn.execute("INSERT INTO relay.outbox (topic, payload) VALUES ('t', '{}')")
    env = {
        "RELAY_DSN": database_dsn,
        "DATABASE_URL": database_dsn,
        "PGPASSWORD": "not-needed-here",
        "RELAY_WEBHOOK_SECRET": "s3cret",
        "RELAY_SINK": "python:spy_sink:handler",
        "SPY_OUT": str(spied),
    }
    process = run_relay(tmp_path, env)
    try:
        wait_for(lambda: pending_count(database_dsn) == 0, "the event to be delivered")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GUARD) == 0, (tmp_path / "relay.err").read_text()
    assert json.loads(spied.read_text()) == {
        "RELAY_DSN": None,
        "DATABASE_URL": None,
        "PGPASSWORD": None,
        "RELAY_WEBHOOK_SECRET": None,
    }
