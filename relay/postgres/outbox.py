"""The `Outbox` port on PostgreSQL, through psycopg.

The pool and the listening connection are psycopg asyncio objects, reached through `relay.aio`.
The claimed connection is a `TrioConnection`, which the drainer's claim, settle and rollback drive
from trio directly: one claim is one round trip. A claim holds its connection and open
transaction while the drainer delivers; leaving the claim without settling rolls it back, so
every event returns untouched.
"""

from __future__ import annotations

import logging
import math
import operator
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import psycopg
import trio
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..aio import aio_as_trio, asyncio_loop, get_running_loop
from ..config import Config
from ..errors import OutboxUnavailable
from ..outages import Waiter, call_reaching
from ..ports import Backlog
from .batch import PostgresBatch
from .connect import connection_kwargs, describe_connection, map_psycopg_errors
from .event_rows import event_from_row, load_jsonb_as_bytes
from .migrations import require_latest
from .notifications import Notifications
from .queries import CLAIM_HEAD_OPENING, Queries
from .trio_connection import TrioConnection

log = logging.getLogger("relay.postgres")

# psycopg binds `asyncio.get_running_loop` when it is imported; if that happened before
# trio-asyncio patched asyncio, psycopg cannot see a trio-asyncio loop. Point it at the patched one.
psycopg.waiting.get_running_loop = get_running_loop  # type: ignore[attr-defined]

_CLEANUP_SECONDS = 5.0
# The window a claim picks its partitions from is one batch of rows per claim sharing the queue.
# When the other relays hold every partition in it, the window moves down the queue, 1, 2, 4 and
# 8 windows from the head.
_FURTHEST_WINDOW = 8
# Rows removed between two VACUUMs of the outbox (see `PostgresOutbox._tidy_up`).
_VACUUM_EVERY = 50_000
# Seconds a claim waits for a pooled connection, and the pool keeps trying to make one before it
# gives up on it (the next claim asks again). Short: psycopg_pool doubles its delay between tries
# without a cap, so a long outage would leave the pool waiting long after the server is back; the
# drainer's own backoff paces the tries instead.
_POOL_TIMEOUT = 10.0
_NO_BYTE_LIMIT = 2**62


@attrs.define(eq=False)
class PostgresOutbox:
    """The outbox in `config.schema`, through a pool; open it with `open_postgres_outbox`."""

    config: Config
    pool: AsyncConnectionPool[TrioConnection]
    queries: Queries
    loop: Any = None  # the trio-asyncio loop the pool lives on; None: the caller's current one
    # Where the outbox is, as the first connection reached it (`describe_connection`).
    where: str = "postgresql"
    # A clean connection kept from the last claim for the next one, out of the pool meanwhile.
    _spare: TrioConnection | None = None
    # Pooled connections on which the claim statements are prepared.
    _prepared: weakref.WeakSet[TrioConnection] = attrs.field(factory=weakref.WeakSet)
    # Rows this outbox removed since its last VACUUM.
    _removed: int = 0

    async def _tidy_up(self, conn: TrioConnection, *, removed: int) -> None:
        """VACUUM the outbox after every `_VACUUM_EVERY` rows removed, on `conn` (idle, after a
        commit).

        Every claim scans the primary key from its start, past the entries of every row already
        removed, until a VACUUM clears them: without one, a long drain slows as it goes (scans of
        a 1,000,000-event drain fell from 636 to 354 a second), and autovacuum wakes too seldom
        to help. SKIP_LOCKED: a VACUUM another relay runs is as good.
        """
        self._removed += removed
        if self._removed < _VACUUM_EVERY:
            return
        self._removed = 0
        try:
            with map_psycopg_errors(self.config, "vacuum"):
                await conn.execute(self.queries.vacuum)
        except OutboxUnavailable as exc:  # tidying up is not delivery: say so, and go on
            log.warning("VACUUM of the outbox failed: %s", exc)

    @asynccontextmanager
    async def claim(
        self, limit: int, max_bytes: int | None = None, share_with: int = 0
    ) -> AsyncIterator[PostgresBatch]:
        with map_psycopg_errors(self.config, "claim"):
            conn, rows, contended, due = await self._claim_rows(
                limit, _NO_BYTE_LIMIT if max_bytes is None else max_bytes, share_with
            )
        batch = None
        try:
            batch = PostgresBatch(
                self, conn, [event_from_row(row) for row in rows], contended=contended, next_due=due
            )
            yield batch
        finally:
            with trio.CancelScope(shield=True):
                await self._release(conn, clean=batch is not None and batch.settled)

    async def _claim_rows(
        self, limit: int, max_bytes: int, share_with: int
    ) -> tuple[TrioConnection, list[tuple[Any, ...]], bool, float | None]:
        """A pooled connection with a claim transaction open on it, and what it claimed.

        A pooled connection is not checked before use (that would cost a round trip per claim):
        one that died while idle (a terminated backend, a restarted server) fails the claim's
        first round trip and is replaced. After a server restart every connection the pool
        holds is dead, so the claim tries as many as the pool holds, and one more.
        """
        attempts = self.config.connections + 1
        for attempt in range(1, attempts + 1):
            conn, self._spare = self._spare, None
            if conn is None:
                try:
                    conn = await aio_as_trio(self.pool.getconn)()
                except PoolTimeout:
                    # The pool only says it waited: a connection of our own says why.
                    await aio_as_trio(self._probe)()
                    raise
            try:
                rows, contended, due = await self._claim_on(conn, limit, max_bytes, share_with)
                return conn, rows, contended, due
            except psycopg.OperationalError:
                lost = conn.broken or conn.closed
                with trio.CancelScope(shield=True):
                    await self._release(conn, clean=False, close=True)
                if not lost or attempt == attempts:
                    raise
                log.info("a pooled connection was lost; claiming on a fresh one")
            except psycopg.Error:
                # Whatever failed (a table altered under the relay, say) may have left the
                # connection's prepared claim unusable: a fresh connection prepares it again.
                with trio.CancelScope(shield=True):
                    await self._release(conn, clean=False, close=True)
                raise
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._release(conn, clean=False)
                raise
        raise AssertionError("unreachable")

    async def _claim_on(
        self, conn: TrioConnection, limit: int, max_bytes: int, share_with: int
    ) -> tuple[list[tuple[Any, ...]], bool, float | None]:
        """Lock a share of the partitions at the head of the queue, then claim.

        Returns the rows, whether the claim left events at the head behind (partitions to other
        relays, or events past `max_bytes`: a short batch then does not mean drained), and the
        seconds until the next retry.
        """
        async with psycopg.AsyncClientCursor(conn) as cursor:
            if conn not in self._prepared:
                await cursor.execute(self.queries.prepare_claim)
                self._prepared.add(conn)
            await cursor.execute(self.queries.claim_head(limit, max_bytes, share_with))
            for _ in range(CLAIM_HEAD_OPENING):
                cursor.nextset()
            skip, contended, due = 0, False, None
            while True:
                locked = await cursor.fetchone()
                assert locked is not None
                partitions, _quotas, left, due = locked
                cursor.nextset()
                rows = await cursor.fetchall()
                contended = contended or left > 0
                if rows or partitions != "{}" or not left or skip == _FURTHEST_WINDOW:
                    break
                # Other relays hold every partition in the window: look further down at once, in
                # the same transaction, rather than claim nothing and pause.
                skip = max(1, 2 * skip)
                await cursor.execute(self.queries.claim_further(skip, limit, max_bytes, share_with))
        rows.sort(key=operator.itemgetter(0))  # DELETE ... RETURNING promises no order
        contended = contended or (bool(rows) and rows[0][-1])  # cut short by the byte limit
        return rows, contended, None if due is None else max(0.0, due)

    async def _release(self, conn: TrioConnection, *, clean: bool, close: bool = False) -> None:
        """Give `conn` back to the pool: rolled back unless `clean`, closed if `close` or if it
        cannot be rolled back quickly (the pool replaces a closed connection).

        A clean connection is kept for the next claim instead, when none is kept yet and the pool
        has another for everything else: the pool's two trips through asyncio cost more than the
        claim's own round trip.
        """
        keep = self._spare is None and self.config.connections > 1
        if clean and not close and keep and not conn.closed:
            self._spare = conn
            return
        try:
            if not (close or clean or conn.closed):
                with trio.move_on_after(_CLEANUP_SECONDS) as scope:
                    try:
                        await conn.rollback()
                    except psycopg.Error:
                        close = True
                close = close or scope.cancelled_caught
            if close:
                await conn.close()
        finally:
            # Closed or not, it goes back: the pool replaces a closed connection.
            with trio.move_on_after(_CLEANUP_SECONDS):
                await aio_as_trio(self.pool.putconn)(conn)

    async def backlog(self) -> Backlog:
        """Pending events, the oldest one's age and the NOTIFY queue's usage (`ReportsBacklog`).

        Runs on the outbox's own loop, so any trio task can ask (a metrics server outside the
        relay's task tree too). Exact up to `BACKLOG_EXACT_UP_TO`, an estimate past it: see
        `Queries.backlog`.
        """
        with map_psycopg_errors(self.config, "backlog"):
            pending, age, usage = await aio_as_trio(self._backlog, loop=self.loop)()
        return Backlog(pending=pending, oldest_age=age, notification_queue_usage=usage)

    async def _backlog(self) -> tuple[int, float | None, float]:
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.execute(self.queries.backlog)
            row = await cursor.fetchone()
            await conn.rollback()
        assert row is not None
        pending, age, usage = row
        return int(pending), None if age is None else max(0.0, age), float(usage)

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[AsyncIterator[None]]:
        with map_psycopg_errors(self.config, "listen"):
            conn = await aio_as_trio(self._listen_connection)()
        try:
            yield Notifications(conn, self.config)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_SECONDS):
                await aio_as_trio(conn.close)()

    async def _probe(self) -> None:
        """Connect once and hang up: raises what the server (or the OS) says, if anything."""
        conn = await psycopg.AsyncConnection.connect(
            self.config.dsn, **connection_kwargs(self.config)
        )
        await conn.close()

    async def _listen_connection(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.config.dsn, autocommit=True, **connection_kwargs(self.config)
        )
        try:
            await conn.execute(self.queries.join)  # a member while it listens
            await conn.execute(self.queries.listen)
        except BaseException:
            await conn.close()
            raise
        return conn


@asynccontextmanager
async def open_postgres_outbox(
    config: Config, *, waiter: Waiter | None = None, patience: float = math.inf
) -> AsyncIterator[PostgresOutbox]:
    """Open the outbox at `config.dsn`: a trio-asyncio loop if needed, then a connection pool.

    With a `waiter`, an unreachable server is tried again with its backoff for up to `patience`
    seconds; without one, the first failure is raised.

    Raises:
        OutboxUnavailable: the server cannot be reached (without a `waiter`).
        Unreachable: still unreachable after `patience` seconds (with a `waiter`).
        DsnRejected: the server refuses the DSN for good, or it cannot be parsed.
        SchemaMissing: the outbox tables are not there, or not migrated to the latest version
            (run `relay migrate`).
    """
    async with asyncio_loop() as loop:
        queries = Queries(config.schema)
        kwargs = connection_kwargs(config)
        pool: AsyncConnectionPool[TrioConnection] = AsyncConnectionPool(
            config.dsn,
            # The drainer uses its claimed connection from trio directly: see TrioConnection.
            connection_class=TrioConnection,
            # Autocommit: a claim opens its transaction itself, in its first round trip. No
            # statements prepared by psycopg: after one, psycopg's rollback() sends DEALLOCATE ALL,
            # which would drop relay's own prepared claim statements too.
            kwargs=kwargs | {"autocommit": True, "prepare_threshold": None},
            min_size=config.connections,
            max_size=config.connections,
            timeout=_POOL_TIMEOUT,
            reconnect_timeout=_POOL_TIMEOUT,
            open=False,
            configure=load_jsonb_as_bytes,
            name=f"relay-{config.schema}",
        )
        outbox = PostgresOutbox(config, pool, queries, loop=loop)

        # A direct first connection gives the user the server's own words for a bad DSN, where
        # the pool would only time out; it also checks that the schema was migrated.
        async def check() -> None:
            with map_psycopg_errors(config, "connect"):
                outbox.where = await aio_as_trio(_check_reachable)(config, kwargs, queries)

        if waiter is None:
            await check()
        else:
            await call_reaching(check, waiter, patience=patience)
        with map_psycopg_errors(config, "connect"):
            await aio_as_trio(pool.open)()
        try:
            yield outbox
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLEANUP_SECONDS):
                spare, outbox._spare = outbox._spare, None
                if spare is not None:
                    await aio_as_trio(pool.putconn)(spare)
                await aio_as_trio(pool.close)()


async def _check_reachable(config: Config, kwargs: dict[str, Any], queries: Queries) -> str:
    """Connect once and look for the outbox; returns where it is (`describe_connection`). A
    failure is raised (the caller may try again)."""
    async with await psycopg.AsyncConnection.connect(config.dsn, **kwargs) as conn:
        await conn.execute(queries.check_schema)
        cursor = await conn.execute(queries.schema_version)
        require_latest(config, (await cursor.fetchone() or (None,))[0])
        return describe_connection(conn)
