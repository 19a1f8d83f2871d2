"""Peers on the same server: PgQueuer (no-op job), txoutbox (PostgreSQL adapter, no-op publisher).

Each is checked for completeness (every event handled once at least, nothing left pending) and
reported at its best setting from a small sweep; a peer that cannot run says why, never a number.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from typing import Any

from .report import Result, median
from .server import KEYS, Bench

_PAYLOAD_SQL = (
    "convert_to(jsonb_build_object('order_id', i, 'customer', 'customer-' || (i % 997),"
    " 'amount_cents', (i * 37) % 100000, 'currency', 'EUR',"
    " 'items', jsonb_build_array('sku-' || (i % 13), 'sku-' || (i % 7)))::text, 'UTF8')"
)


def _asyncio_run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def _version(package: str) -> str:
    return metadata.version(package)


# --- PgQueuer -------------------------------------------------------------------------------


async def _pgqueuer_once(dsn: str, n: int, batch: int) -> float:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    setup = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(setup))
        if await queries.schema_is_installed():
            await queries.uninstall()
        await queries.install()
        # PgQueuer's own enqueue (bulk, unnest), 10,000 at a time; not timed.
        for start in range(0, n, 10_000):
            count = min(10_000, n - start)
            payloads = [
                json.dumps(
                    {
                        "order_id": i,
                        "customer": f"customer-{i % 997}",
                        "amount_cents": (i * 37) % 100_000,
                        "currency": "EUR",
                        "items": [f"sku-{i % 13}", f"sku-{i % 7}"],
                    }
                ).encode()
                for i in range(start, start + count)
            ]
            await queries.enqueue(["bench"] * count, payloads, [0] * count)
        await setup.execute("VACUUM ANALYZE pgqueuer")
        await setup.execute("CHECKPOINT")

        worker = await asyncpg.connect(dsn)
        try:
            manager = QueueManager(Queries(AsyncpgDriver(worker)))
            seen = 0

            @manager.entrypoint("bench")
            async def job(job: Any) -> None:
                nonlocal seen
                seen += 1

            started = time.perf_counter()
            await manager.run(batch_size=batch, mode=QueueExecutionMode.drain)
            elapsed = time.perf_counter() - started
        finally:
            await worker.close()
        left = await setup.fetchval("SELECT count(*) FROM pgqueuer")
        if seen < n or left:
            raise RuntimeError(f"PgQueuer ran {seen} of {n} jobs, {left} left in its queue")
        await queries.uninstall()
    finally:
        await setup.close()
    return n / elapsed


def _median_of(repeat: int, once: Callable[[], Coroutine[Any, Any, float]]) -> float:
    return median([_asyncio_run(once) for _ in range(repeat)])


def pgqueuer(bench: Bench, n: int, batches: Sequence[int], log: Any, repeat: int = 1) -> Result:
    """PgQueuer's rate at its best batch size; each rate the median of `repeat` runs."""
    name = "PgQueuer"
    try:
        version = _version("pgqueuer")
        name = f"PgQueuer {version}"
        tried = []
        for batch in batches:
            rate = _median_of(repeat, lambda batch=batch: _pgqueuer_once(bench.dsn, n, batch))
            log(f"  peer {name}, batch_size {batch}: {rate:,.0f} jobs/s")
            tried.append((rate, batch))
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        log(f"  peer {name}: not measured: {type(exc).__name__}: {exc}")
        return Result("peers", name, "pgqueuer", n=n, note=f"not measured: {exc}")
    rate, batch = max(tried)
    sweep = ", ".join(f"batch_size {b}: {r:,.0f}/s" for r, b in tried)
    return Result(
        "peers",
        name,
        "pgqueuer",
        batch=batch,
        n=n,
        rate=rate,
        note=f"asyncpg, uvloop, no-op job; best of {sweep}",
    )


# --- txoutbox -------------------------------------------------------------------------------


async def _txoutbox_once(
    dsn: str, n: int, batch: int, relays: int, delete: bool, strict: bool
) -> float:
    import asyncpg
    from txoutbox import OutboxMessage, Relay, RelayConfig
    from txoutbox.adapters.postgres import PostgresStorage

    pool = await asyncpg.create_pool(dsn, min_size=relays + 1, max_size=relays + 1)
    try:
        storage = PostgresStorage(
            pool, table="txoutbox_bench", delete_on_ack=delete, strict_ordering=strict
        )
        await pool.execute("DROP TABLE IF EXISTS txoutbox_bench")
        await storage.create_schema()
        await pool.execute(
            "INSERT INTO txoutbox_bench (topic, key, payload)"
            f" SELECT 'bench.event', 'k' || (i % {KEYS}), {_PAYLOAD_SQL}"
            f" FROM generate_series(1, {n}) AS i"
        )
        await pool.execute("VACUUM ANALYZE txoutbox_bench")
        await pool.execute("CHECKPOINT")

        seen: set[int] = set()
        done = asyncio.Event()

        async def publish(message: OutboxMessage) -> None:
            seen.add(int(message.id))
            if len(seen) >= n:
                done.set()

        config = RelayConfig(batch_size=batch, poll_min=0.001, publish_timeout=None)
        started = time.perf_counter()
        async with contextlib_async_stack() as stack:
            for _ in range(relays):
                await stack.enter_async_context(Relay(storage, publish, config=config))
            await asyncio.wait_for(done.wait(), 600)
        # Leaving the block stopped every relay after its round, acks included.
        elapsed = time.perf_counter() - started
        left = await pool.fetchval("SELECT count(*) FROM txoutbox_bench WHERE status = 'pending'")
        if len(seen) < n or left:
            raise RuntimeError(f"txoutbox published {len(seen)} of {n}, {left} still pending")
        await pool.execute("DROP TABLE txoutbox_bench")
    finally:
        await pool.close()
    return n / elapsed


def contextlib_async_stack() -> Any:
    import contextlib

    return contextlib.AsyncExitStack()


def txoutbox(
    bench: Bench,
    n: int,
    settings: Sequence[tuple[int, int, bool, bool]],
    log: Any,
    repeat: int = 1,
) -> Result:
    """txoutbox's rate at its best of `settings`; each rate the median of `repeat` runs."""
    name = "txoutbox"
    try:
        version = _version("txoutbox")
        name = f"txoutbox {version}"
        tried = []
        for batch, relays, delete, strict in settings:
            rate = _median_of(
                repeat,
                lambda b=batch, r=relays, d=delete, s=strict: _txoutbox_once(
                    bench.dsn, n, b, r, d, s
                ),
            )
            label = (
                f"batch_size {batch}, {relays} relay{'s' if relays > 1 else ''}, "
                f"{'delete' if delete else 'mark done'} on ack, "
                f"strict ordering {'on' if strict else 'OFF'}"
            )
            log(f"  peer {name}, {label}: {rate:,.0f} msgs/s")
            tried.append((rate, batch, label))
    except Exception as exc:
        log(f"  peer {name}: not measured: {type(exc).__name__}: {exc}")
        return Result("peers", name, "txoutbox", n=n, note=f"not measured: {exc}")
    rate, batch, best = max(tried)
    name = f"{name} ({best})"
    sweep = "; ".join(f"{label}: {r:,.0f}/s" for r, _, label in tried)
    return Result(
        "peers",
        name,
        "txoutbox",
        batch=batch,
        n=n,
        rate=rate,
        note=f"PostgresStorage (asyncpg), no-op publisher; {sweep}",
    )
