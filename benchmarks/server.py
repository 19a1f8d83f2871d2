"""The benchmark's own PostgreSQL server, the outbox fill, and the processes it must clean up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.adapt import Loader

from relay.config import Config
from relay.demo.embedded import EmbeddedPostgres, _bin
from relay.postgres import migrate
from relay.postgres.queries import Queries

SCHEMA = "relay"
KEYS = 1_000
TOPIC = "bench.event"

# A small JSON object, about 110 bytes, keyed over KEYS values.
_FILL = """
INSERT INTO relay.outbox (topic, key, payload)
SELECT %(topic)s, 'k' || (i %% %(keys)s),
       jsonb_build_object('order_id', i, 'customer', 'customer-' || (i %% 997),
                          'amount_cents', (i * 37) %% 100000, 'currency', 'EUR',
                          'items', jsonb_build_array('sku-' || (i %% 13), 'sku-' || (i %% 7)))
FROM generate_series(1, %(n)s) AS i
"""


class JsonbAsBytes(Loader):
    """jsonb as its raw JSON text (what relay's own adapter does)."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


class Processes:
    """Every subprocess the benchmark starts, so that all of them die with it."""

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[Any]] = []

    def start(self, args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(args, **kwargs)
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """SIGTERM (relay's graceful stop), then SIGKILL after `timeout`."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ValueError):
            self._running.remove(process)

    def kill_all(self) -> None:
        for process in list(self._running):
            if process.poll() is None:
                process.kill()
                process.wait()
        self._running.clear()


class Bench:
    """The server, its DSN and helpers shared by every section."""

    def __init__(self, server: EmbeddedPostgres, processes: Processes) -> None:
        self.server = server
        self.processes = processes
        self.dsn = server.dsn()
        self.config = Config(dsn=self.dsn, schema=SCHEMA)
        self.queries = Queries(SCHEMA)

    def connect(
        self, *, raw_jsonb: bool = True, autocommit: bool = False, options: str = ""
    ) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.dsn, autocommit=autocommit, application_name="bench", options=options
        )
        if raw_jsonb:
            conn.adapters.register_loader("jsonb", JsonbAsBytes)
        return conn

    def sql(self, query: Any) -> str:
        with self.connect(autocommit=True) as conn:
            return str(query.as_string(conn))

    def fill(self, n: int, *, vacuum: bool = True, keys: int = KEYS) -> None:
        """Empty the outbox, then insert `n` events in one statement (one NOTIFY)."""
        with self.connect(autocommit=True) as conn:
            conn.execute("TRUNCATE relay.outbox, relay.outbox_dead")
            if vacuum:
                conn.execute("VACUUM ANALYZE relay.outbox")
            if n:
                conn.execute(_FILL, {"topic": TOPIC, "keys": keys, "n": n})
                if vacuum:
                    conn.execute("VACUUM ANALYZE relay.outbox")
            # Flush the fill's dirty pages now, not during the measurement that follows.
            conn.execute("CHECKPOINT")

    def insert(self, n: int, *, keys: int = KEYS) -> float:
        """Insert `n` events in one statement; returns the time the commit returned."""
        with self.connect(autocommit=True) as conn:
            conn.execute(_FILL, {"topic": TOPIC, "keys": keys, "n": n})
            return time.monotonic()

    def pending(self) -> int:
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM relay.outbox").fetchone()
            assert row is not None
            return int(row[0])

    def dead(self) -> int:
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM relay.outbox_dead").fetchone()
            assert row is not None
            return int(row[0])

    def setting(self, name: str) -> str:
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
            assert row is not None
            return str(row[0])

    def relay_command(self, *options: str) -> list[str]:
        """`relay run` against this server, as a subprocess command line."""
        return [sys.executable, "-m", "relay.cli", "run", "--dsn", self.dsn, *options]


@contextlib.contextmanager
def bench_server() -> Iterator[Bench]:
    """A started, migrated server with fsync on; destroyed (and every subprocess killed) on exit.

    SIGTERM is turned into KeyboardInterrupt, so a terminated run cleans up like a Ctrl-C.
    """

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    processes = Processes()
    # fsync on, synchronous_commit on: commits wait for the disk, as in production.
    server = EmbeddedPostgres.create(fast_unsafe=False)
    try:
        server.start()
        bench = Bench(server, processes)
        migrate(bench.config)
        yield bench
    finally:
        processes.kill_all()
        server.destroy()
        signal.signal(signal.SIGTERM, previous)


def pgbench_path() -> Path:
    return _bin("pgbench")


def start_relay(
    bench: Bench, folder: Path, name: str, stdout: Any, *options: str, wait: bool = True
) -> subprocess.Popen[Any]:
    """Start `relay run` (its stderr in folder/name.log); wait until it logs that it runs."""
    log = folder / f"{name}.log"
    with log.open("wb") as stderr:
        process = bench.processes.start(
            bench.relay_command(*options), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    if wait:
        deadline = time.monotonic() + 60
        while b"relay running" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"relay run did not start: {log.read_text()[-2000:]}")
            time.sleep(0.02)
    return process


def wait_empty(bench: Bench, timeout: float, poll: float = 0.02) -> float:
    """Poll until the outbox is empty; returns time.monotonic() when it was seen empty."""
    deadline = time.monotonic() + timeout
    with bench.connect(autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM relay.outbox)").fetchone()
            now = time.monotonic()
            if row and row[0]:
                return now
            if now > deadline:
                raise RuntimeError(f"the outbox was not empty after {timeout:g} s")
            time.sleep(poll)
