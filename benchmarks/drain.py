"""Drain: a pre-filled outbox emptied by pgbench, a bare psycopg loop and relay, side by side."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio

from relay import OutboxEvent, open_relay
from relay.postgres.connect import PLANNER_SETTINGS
from relay.postgres.queries import CLAIM_HEAD_OPENING, CLAIM_PLANNING

from .report import Result
from .server import Bench, pgbench_path

# What the DESIGN calls the limit: one statement per batch, no key bookkeeping.
SIMPLE_CLAIM = """DELETE FROM relay.outbox WHERE id IN (
    SELECT id FROM relay.outbox ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
RETURNING id, topic, key, payload, headers, created_at, attempts"""


class RelayClaim:
    """relay's own claim, statement for statement, rendered from `relay.postgres.queries`:
    the prepared partition-lock statement, then the prepared claim-and-delete (as in
    `PostgresOutbox._claim_on`), on a session with relay's planner settings."""

    options = PLANNER_SETTINGS

    def __init__(self, bench: Bench) -> None:
        self.queries = bench.queries
        self.bench = bench

    def prepare(self, conn: psycopg.Connection[Any]) -> None:
        psycopg.ClientCursor(conn).execute(self.queries.prepare_claim)

    def run(self, cursor: psycopg.ClientCursor[Any], limit: int) -> list[tuple[Any, ...]]:
        """Open the claim transaction and claim, in one round trip, like relay."""
        cursor.execute(self.queries.claim_head(limit, self.bench.config.batch_bytes))
        for _ in range(CLAIM_HEAD_OPENING + 1):  # and past lock_partitions's result
            cursor.nextset()
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def pgbench_script(self) -> str:
        """The same two statements; pgbench -M prepared prepares them itself."""
        lock = self.bench.sql(self.queries.lock_partitions)
        lock = lock.replace("$1", ":skip").replace("$2", ":scan").replace("$3", ":share_with")
        claim = self.bench.sql(self.queries.claim).replace("$1", ":limit")
        claim = claim.replace("$2", ":max_bytes")
        return f"BEGIN;\n{CLAIM_PLANNING};\n{lock.strip()};\n{claim.strip()};\nCOMMIT;\n"

    def pgbench_vars(self, limit: int) -> dict[str, int]:
        return {
            "limit": limit,
            "skip": 0,
            "scan": limit,
            "share_with": 0,  # one client, one claim at a time
            "max_bytes": self.bench.config.batch_bytes,
        }


def pgbench(
    bench: Bench, n: int, batch: int, script: str, variables: dict[str, int], options: str = ""
) -> float:
    """Run `script` N/batch times from one client, its session started with `options`; returns
    events/s (N / elapsed)."""
    bench.fill(n)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    try:
        args: list[str] = [
            str(pgbench_path()),
            "-n",
            "-M",
            "prepared",
            "-c",
            "1",
            "-j",
            "1",
            "-t",
            str(n // batch),
            "-f",
            file.name,
            "-h",
            "127.0.0.1",
            "-p",
            str(bench.server.port),
            "-U",
            "postgres",
        ]
        for name, value in variables.items():
            args += ["-D", f"{name}={value}"]
        started = time.perf_counter()
        done = subprocess.run(
            [*args, "postgres"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PGOPTIONS": options},
        )
        elapsed = time.perf_counter() - started
    finally:
        Path(file.name).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-500:]}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    left = bench.pending()
    if left:
        raise RuntimeError(f"pgbench left {left} events behind")
    # pgbench's own clock leaves out its connection set-up; fall back to the wall clock.
    return float(tps.group(1)) * batch if tps else n / elapsed


def bare_loop(bench: Bench, n: int, batch: int, *, decode: bool) -> float:
    """A synchronous psycopg loop doing relay's claim-and-delete; payloads as bytes or decoded."""
    claim = RelayClaim(bench)
    bench.fill(n)
    seen = 0
    with bench.connect(autocommit=True, options=claim.options) as conn:
        claim.prepare(conn)
        started = time.perf_counter()
        while True:
            with psycopg.ClientCursor(conn) as cursor:
                rows = claim.run(cursor, batch)
            if decode:
                for row in rows:
                    json.loads(row[3])
            conn.commit()
            seen += len(rows)
            if len(rows) < batch:
                break
        elapsed = time.perf_counter() - started
    _check(bench, n, seen)
    return n / elapsed


def _check(bench: Bench, n: int, seen: int) -> None:
    left = bench.pending()
    if seen != n or left:
        raise RuntimeError(f"processed {seen} of {n} events, {left} left in the outbox")


class _Counting:
    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.done = trio.Event()

    def add(self, count: int) -> None:
        self.seen += count
        if self.seen >= self.n:
            self.done.set()


class BytesSink(_Counting):
    """A byte-level no-op sink: touches each event's raw JSON, never decodes it."""

    async def deliver(self, events: Sequence[OutboxEvent]) -> None:
        for event in events:
            event.payload_json  # noqa: B018
        self.add(len(events))


class DecodingHandler(_Counting):
    """A callback sink that reads every event's decoded payload."""

    async def __call__(self, events: Sequence[OutboxEvent]) -> None:
        for event in events:
            event.payload  # noqa: B018
        self.add(len(events))


async def _relay_drain(
    bench: Bench, n: int, batch: int, decode: bool, relays: int, claims_in_flight: int | None
) -> tuple[float, int]:
    sink = DecodingHandler(n) if decode else BytesSink(n)
    # A poll far away: the listener's CONNECT wakeup is what starts the drain.
    config = attrs.evolve(bench.config, batch_size=batch, poll_interval=3600.0)
    if claims_in_flight is not None:
        config = attrs.evolve(config, claims_in_flight=claims_in_flight)
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        handles = [await stack.enter_async_context(open_relay(config, sink)) for _ in range(relays)]
        with trio.fail_after(600):
            await sink.done.wait()
            # The last batches count once their transactions have committed.
            for handle in handles:
                await handle.stop_claiming()
        elapsed = time.perf_counter() - started
    return elapsed, sink.seen


def relay_drain(
    bench: Bench,
    n: int,
    batch: int,
    *,
    decode: bool,
    relays: int = 1,
    claims_in_flight: int | None = None,
) -> float:
    """relay in this process (`relays` of them, sharing the sink), from the first `open_relay`
    until N events are delivered and committed; default settings unless `claims_in_flight`."""
    bench.fill(n)
    elapsed, seen = trio.run(_relay_drain, bench, n, batch, decode, relays, claims_in_flight)
    _check(bench, n, seen)
    return n / elapsed


def run(bench: Bench, n: int, batches: Sequence[int], log: Any) -> list[Result]:
    relay_claim = RelayClaim(bench)
    relay_script = relay_claim.pgbench_script()
    contenders: list[tuple[str, str, Callable[[int], float]]] = [
        (
            "pgbench, relay's claim SQL",
            "limit",
            lambda b: pgbench(
                bench, n, b, relay_script, relay_claim.pgbench_vars(b), relay_claim.options
            ),
        ),
        (
            "pgbench, simple DELETE ... SKIP LOCKED",
            "sql",
            lambda b: pgbench(bench, n, b, SIMPLE_CLAIM + ";\n", {"limit": b}),
        ),
        (
            "bare psycopg loop, payload bytes",
            "bare-bytes",
            lambda b: bare_loop(bench, n, b, decode=False),
        ),
        (
            "bare psycopg loop, payload decoded",
            "bare-decoded",
            lambda b: bare_loop(bench, n, b, decode=True),
        ),
        ("relay, byte-level sink", "relay-bytes", lambda b: relay_drain(bench, n, b, decode=False)),
        (
            # The drain before claims overlapped deliveries (`claims_in_flight` 1).
            "relay, byte-level sink, one claim in flight",
            "relay-bytes-1",
            lambda b: relay_drain(bench, n, b, decode=False, claims_in_flight=1),
        ),
        (
            "relay, callback reading .payload",
            "relay-decoded",
            lambda b: relay_drain(bench, n, b, decode=True),
        ),
        (
            # Like txoutbox's best: several relays in one process (on 2 cores, the claims of one
            # overlap the Python work of another).
            "relay, byte-level sink, 3 relays in one process",
            "relay-bytes-3",
            lambda b: relay_drain(bench, n, b, decode=False, relays=3),
        ),
    ]
    results = []
    for batch in batches:
        for name, tag, measure in contenders:
            rate = measure(batch)
            log(f"  drain batch {batch}: {name}: {rate:,.0f} events/s")
            results.append(Result("drain", name, tag, batch=batch, n=n, rate=rate))
    return results
