"""`PostgresBatch`: a claimed batch, settled in the claim's own transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from ..ports import OutboxEvent, Retry
from .connect import map_psycopg_errors
from .event_rows import row_params
from .trio_connection import TrioConnection

if TYPE_CHECKING:
    from .outbox import PostgresOutbox


@attrs.define(eq=False)
class PostgresBatch:
    """A claimed batch: the events, and the open transaction that holds them."""

    outbox: PostgresOutbox
    conn: TrioConnection
    events: Sequence[OutboxEvent]
    contended: bool = False
    next_due: float | None = None
    settled: bool = False

    async def settle(
        self,
        *,
        retry: Mapping[int, Retry],
        bury: Mapping[int, str],
        hold: Collection[int] = (),
        defer: Mapping[int, Retry] | None = None,
    ) -> None:
        defer = defer or {}
        by_id = {event.id: event for event in self.events} if retry or bury or hold or defer else {}
        put_back = [
            row_params(by_id[id], by_id[id].attempts + 1, r.delay, r.reason)
            for id, r in retry.items()
        ]
        put_back += [row_params(by_id[id], by_id[id].attempts, 0.0, None) for id in hold]
        # Not the events' fault: no attempt counted; the reason makes them hold their key.
        put_back += [
            row_params(by_id[id], by_id[id].attempts, d.delay, d.reason) for id, d in defer.items()
        ]
        dead = [
            row_params(by_id[id], by_id[id].attempts + 1, 0.0, reason)
            for id, reason in bury.items()
        ]
        queries = self.outbox.queries
        with map_psycopg_errors(self.outbox.config, "settle"):
            if put_back or dead:
                async with self.conn.cursor() as cursor:
                    await cursor.execute(queries.quiet)
                    if put_back:
                        await cursor.executemany(queries.put_back, put_back)
                    if dead:
                        await cursor.executemany(queries.bury, dead)
            await self.conn.commit()
        self.settled = True
        await self.outbox._tidy_up(self.conn, removed=len(self.events) - len(put_back))
