"""relay's PostgreSQL side: the only code that imports psycopg.

A package rather than one `postgres.py`, so that each part stays one job: `queries` (the relay's
own statements, named; the writer's are in `enqueue_queries`, the operator's in `admin_queries`),
`migrations` (the schema), `outbox` (the `Outbox` port; `batch` settles what it claimed,
`event_rows` turns rows into events and back), `enqueue` (the writer's API: `new_events` checks
what it is given, `enqueue_psycopg`, `enqueue_sqlalchemy` and `enqueue_asyncpg` write it through
each layer) and `connect` (connection settings and the psycopg-to-relay error boundary).
"""

from typing import TYPE_CHECKING, Any

from .enqueue import NewEvent as NewEvent
from .enqueue import enqueue as enqueue
from .enqueue import enqueue_async as enqueue_async
from .enqueue import enqueue_many as enqueue_many
from .enqueue import enqueue_many_async as enqueue_many_async
from .migrations import LATEST_VERSION as LATEST_VERSION
from .migrations import migrate as migrate

if TYPE_CHECKING:
    from .outbox import PostgresOutbox as PostgresOutbox
    from .outbox import open_postgres_outbox as open_postgres_outbox


def __getattr__(name: str) -> Any:
    # Loaded on first use: importing trio-asyncio (through relay.aio) installs its asyncio
    # policy, which a program that only enqueues (perhaps from plain asyncio) should not pay for.
    if name in ("PostgresOutbox", "open_postgres_outbox"):
        from . import outbox

        return getattr(outbox, name)
    raise AttributeError(name)


__all__ = [
    "LATEST_VERSION",
    "NewEvent",
    "PostgresOutbox",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "migrate",
    "open_postgres_outbox",
]
