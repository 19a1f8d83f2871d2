"""The bridge to asyncio: the one trio-asyncio loop that psycopg and the broker clients run on.

psycopg's async API and the broker clients (nats-py, redis-py, aio-pika) are asyncio-only; relay
runs them on a trio-asyncio loop inside its own trio program. This module and `relay.postgres` are
the only ones that import trio_asyncio. Import it lazily: importing trio_asyncio installs its
asyncio policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import trio_asyncio

P = ParamSpec("P")
T = TypeVar("T")


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """Use the caller's trio-asyncio loop, or open one for as long as the block runs."""
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    failure: Exception | None = None
    async with trio_asyncio.open_loop():
        try:
            yield
        except Exception as exc:
            # Carried past the loop's own nursery, so the caller sees the error itself
            # (say, SchemaMissing) rather than a group around it.
            failure = exc
    if failure is not None:
        raise failure


def aio_as_trio(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """`fn`, an asyncio coroutine function, made awaitable from trio on the current loop."""
    wrapped: Callable[P, Awaitable[T]] = trio_asyncio.aio_as_trio(fn)
    return wrapped
