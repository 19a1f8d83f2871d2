"""`relay run` as an operator runs it: a subprocess, stdout for events, stderr for logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ..conftest import pending_count

GUARD = 60.0


def insert(dsn: str, count: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO relay.outbox (topic, key, payload) SELECT 'orders', 'k' || mod(g, 50),"
            " jsonb_build_object('n', g) FROM generate_series(1, %s) g",
            [count],
        )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_relay(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / f"{name}.out"
    with out.open("wb") as stdout, (tmp_path / f"{name}.err").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "run", *args], stdout=stdout, stderr=stderr
        )
    return process, out


def delivered_ids(*outputs: Path) -> Counter[int]:
    ids: Counter[int] = Counter()
    for out in outputs:
        for line in out.read_text().splitlines():
            ids[json.loads(line)["id"]] += 1
    return ids


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=GUARD)


def test_run_prints_each_of_5000_events_exactly_once(database_dsn: str, tmp_path: Path) -> None:
    process, out = start_relay(tmp_path, "relay", "--dsn", database_dsn, "--sink", "stdout")
    try:
        insert(database_dsn, 5000)
        wait_for(lambda: pending_count(database_dsn) == 0, "the outbox to drain")
    finally:
        assert stop(process) == 0, (tmp_path / "relay.err").read_text()
    ids = delivered_ids(out)
    assert len(ids) == 5000
    assert set(ids.values()) == {1}
    line = json.loads(out.read_text().splitlines()[0])
    assert set(line) == {"id", "topic", "key", "payload", "headers", "created_at", "attempts"}
    assert "Traceback" not in (tmp_path / "relay.err").read_text()


def test_sigterm_mid_stream_exits_0_and_a_second_run_delivers_the_rest(
    database_dsn: str, tmp_path: Path
) -> None:
    insert(database_dsn, 20_000)
    first, first_out = start_relay(tmp_path, "first", "--dsn", database_dsn, "--batch-size", "10")
    wait_for(lambda: first_out.stat().st_size > 0, "the first events")
    assert stop(first) == 0, (tmp_path / "first.err").read_text()
    left = pending_count(database_dsn)
    assert 0 < left < 20_000, "the stop was not mid-stream"
    second, second_out = start_relay(tmp_path, "second", "--dsn", database_dsn)
    try:
        wait_for(lambda: pending_count(database_dsn) == 0, "the rest")
    finally:
        assert stop(second) == 0
    first_ids, second_ids = delivered_ids(first_out), delivered_ids(second_out)
    assert len(first_ids) == 20_000 - left
    assert set(first_ids) | set(second_ids) == set(range(1, 20_001))
    assert first_ids.keys().isdisjoint(second_ids.keys())  # graceful: no duplicates


def test_a_closed_stdout_stops_with_exit_74_and_one_line_counting_no_attempt(
    database_dsn: str,
) -> None:
    """`relay run | head -c 100`: before, every batch cost each event an attempt, a traceback
    each, and with --max-attempts 2 the events went dead."""
    insert(database_dsn, 5000)  # more than a pipe's buffer holds: the relay must meet the close
    process = subprocess.Popen(
        [sys.executable, "-m", "relay.cli", "run", "--dsn", database_dsn, "--max-attempts", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.read(100)  # as `head -c 100` does, then goes away
    process.stdout.close()
    _, stderr = process.communicate(timeout=GUARD)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 74, stderr
    assert "Traceback" not in stderr.decode()
    left = pending_count(database_dsn)
    assert lines[-1] == f"relay: stdout is closed: stopping; {left} events left pending"
    assert not any("sink" in line for line in lines[:-1]), stderr  # no per-batch complaint
    with psycopg.connect(database_dsn) as conn:
        dead = conn.execute("SELECT count(*) FROM relay.outbox_dead").fetchone()
        attempts = conn.execute("SELECT DISTINCT attempts FROM relay.outbox").fetchall()
    assert dead == (0,)
    assert attempts == [(0,)]
    assert 0 < left < 5000


def relay_fails(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        capture_output=True,
        text=True,
        timeout=GUARD,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_bad_flag_exits_2_with_one_line(database_dsn: str) -> None:
    assert "batch_size" in relay_fails("run", "--dsn", database_dsn, "--batch-size", "lots")
    assert "unrecognized arguments" in relay_fails("run", "--dsn", database_dsn, "--nope")


def test_a_bad_toml_value_exits_2_naming_the_option(database_dsn: str, tmp_path: Path) -> None:
    file = tmp_path / "relay.toml"
    file.write_text('poll_interval = "often"\n')
    line = relay_fails("run", "--dsn", database_dsn, "--config", str(file))
    assert "poll_interval" in line


def test_an_unknown_sink_scheme_exits_2(database_dsn: str) -> None:
    assert "sink" in relay_fails("run", "--dsn", database_dsn, "--sink", "carrier-pigeon://x")


def test_a_missing_schema_says_run_relay_migrate(empty_database_dsn: str) -> None:
    assert "relay migrate" in relay_fails("run", "--dsn", empty_database_dsn)


def test_an_outdated_schema_says_run_relay_migrate(database_dsn: str) -> None:
    with psycopg.connect(database_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM relay.schema_version WHERE version > 1")
    line = relay_fails("run", "--dsn", database_dsn)
    assert "out of date" in line and "relay migrate" in line


@pytest.mark.parametrize("variable", ["RELAY_DSN", "DATABASE_URL"])
def test_a_wrong_password_in_the_environment_is_never_printed(
    variable: str, tmp_path: Path
) -> None:
    """Nothing listens there: the relay waits, saying why on every try, never the password."""
    env = {**os.environ, variable: "postgresql://u:pw-7781@127.0.0.1:1/db"}
    env.pop("RELAY_DSN" if variable == "DATABASE_URL" else "DATABASE_URL", None)
    err = tmp_path / "relay.err"
    with err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "run", "--outage-backoff-cap", "0.2"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
    wait_for(lambda: err.read_text().count("connection refused") >= 3, "three refused tries")
    assert stop(process) == 0
    text = err.read_text()
    assert "pw-7781" not in text and "Traceback" not in text
    assert "start: database unavailable (try 1): connect failed at 127.0.0.1:1/db" in text
