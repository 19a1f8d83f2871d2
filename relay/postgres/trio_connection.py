"""A psycopg `AsyncConnection` that trio drives itself, without the asyncio bridge.

psycopg does every network step as a generator that says which socket readiness it waits for,
and `AsyncConnection.wait` runs that generator on asyncio. Through trio-asyncio every such wait
costs a trip through the asyncio loop, its timers and a trio task per watched socket: more than
the database's own round trip, on every claim. `TrioConnection.wait` runs the same generators
on trio's own I/O waits when trio calls it, and hands over to psycopg's asyncio wait otherwise,
so the pool (an asyncio object) keeps connecting, checking and closing connections as before.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import sniffio
import trio
from psycopg.abc import RV, PQGen
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait


class TrioConnection(psycopg.AsyncConnection[Any]):
    """An `AsyncConnection` usable from trio code directly (and from asyncio, as ever).

    A trio cancellation that interrupts a statement in flight closes the connection: libpq
    cannot take another statement until the interrupted one is answered.
    """

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg's signature)
    ) -> RV:
        if sniffio.current_async_library() != "trio":
            return await super().wait(gen, interval=interval, timeout=timeout)
        try:
            if timeout is None:
                return await _run(gen, self.pgconn.socket)
            with trio.fail_after(timeout):
                return await _run(gen, self.pgconn.socket)
        except trio.TooSlowError:
            self._abandon()
            raise psycopg.OperationalError(f"no answer within {timeout}s") from None
        except BaseException:
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                self._abandon()
            raise

    def _abandon(self) -> None:
        self.pgconn.finish()


async def _run(gen: PQGen[RV], fileno: int) -> RV:
    """Drive `gen` to its end, waiting on `fileno` as it asks; return its value."""
    try:
        wanted = next(gen)
        while True:
            ready = await _readiness(fileno, wanted)
            wanted = gen.send(ready)
    except StopIteration as done:
        result: RV = done.value
        return result
    except OSError as exc:
        raise psycopg.OperationalError("connection socket closed") from exc


async def _readiness(fileno: int, wanted: int) -> Ready:
    if wanted == Wait.R:
        await trio.lowlevel.wait_readable(fileno)
        return Ready.R
    if wanted == Wait.W:
        await trio.lowlevel.wait_writable(fileno)
        return Ready.W
    # Both (a flush that must also read, so neither side stalls): whichever comes first.
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLOUT)
    while True:
        found = poller.poll(0)
        if found:
            events = found[0][1]
            readable = events & (select.POLLIN | select.POLLERR | select.POLLHUP)
            writable = events & select.POLLOUT
            return Ready((Ready.R if readable else 0) | (Ready.W if writable else 0))
        async with trio.open_nursery() as nursery:

            async def wake(wait: Callable[[int], Awaitable[None]]) -> None:
                await wait(fileno)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wake, trio.lowlevel.wait_readable)
            nursery.start_soon(wake, trio.lowlevel.wait_writable)
