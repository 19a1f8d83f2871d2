"""The bridge to asyncio: the one trio-asyncio loop that psycopg and the broker clients run on.

psycopg's async API and the broker clients (nats-py, redis-py, aio-pika) are asyncio-only; relay
runs them on a trio-asyncio loop inside its own trio program. This module is the only one that
imports trio_asyncio. Import it lazily: importing trio_asyncio installs its asyncio policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import trio_asyncio

P = ParamSpec("P")
T = TypeVar("T")

# Importing trio_asyncio replaced asyncio's get_running_loop with one that also finds a
# trio-asyncio loop; a library that bound the original earlier can be pointed at this one.
get_running_loop = asyncio.get_running_loop


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[Any]:
    """Use the caller's trio-asyncio loop, or open one for as long as the block runs; yields it."""
    if (loop := trio_asyncio.current_loop.get()) is not None:
        yield loop
        return
    failure: Exception | None = None
    async with trio_asyncio.open_loop() as loop:
        try:
            yield loop
        except Exception as exc:
            # Carried past the loop's own nursery, so the caller sees the error itself
            # (say, SchemaMissing) rather than a group around it.
            failure = exc
    if failure is not None:
        raise failure


def aio_as_trio(fn: Callable[P, Awaitable[T]], *, loop: Any = None) -> Callable[P, Awaitable[T]]:
    """`fn`, an asyncio coroutine function, made awaitable from trio on `loop` (as
    `asyncio_loop` yields it), by default the current task's."""
    wrapped: Callable[P, Awaitable[T]] = trio_asyncio.aio_as_trio(fn, loop=loop)
    return wrapped
