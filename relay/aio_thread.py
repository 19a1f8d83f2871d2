"""The broker clients' crossing: a plain asyncio loop (uvloop when installed) in its own thread.

Why a thread loop: nats-py, aio-pika and redis-py are callback-heavy; on relay's trio-asyncio loop
every callback and every future they resolve is a trip through trio's scheduler (a checkpoint, a
cancel scope, a channel), which made each publish cost several times what it costs on plain
asyncio, and a broker sink reached a fifth of its own client's limit. On a loop of their own, in a
thread, the clients run at their own speed; trio hands each batch over once and sleeps until it is
done. psycopg stays on the trio-asyncio loop of `relay.aio`: its calls are few and large.

`open_loop_thread()` owns the thread: the loop starts on entering and is stopped, its leftover
tasks cancelled, and the thread joined (for at most `CLOSE_TIMEOUT` seconds) on leaving.
`LoopThread.run(fn, *args)` runs the coroutine `fn(*args)` there and waits for it on trio without
blocking trio; cancelling that wait cancels the asyncio task and waits (bounded) until it has
stopped, so nothing the task shares with the caller changes after `run` is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple

import attrs
import trio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0  # seconds the loop's leftover tasks, and then the thread, are given to stop


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the `brokers` extra brings it: about twice asyncio's speed for these
    clients), else asyncio's selector loop. Never through the loop policy: once trio_asyncio is
    imported, the policy's loops are trio-asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.SelectorEventLoop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


@attrs.frozen(eq=False)
class LoopThread:
    """An asyncio loop running in its own thread; see the module's documentation.

    Attributes:
        loop: the loop; touch it only from its thread, or through `call_soon_threadsafe`.
    """

    loop: asyncio.AbstractEventLoop

    async def run(self, fn: Callable[[*Ts], Coroutine[Any, Any, T]], *args: *Ts) -> T:
        """Run `fn(*args)` as a task on the loop and return its result (or raise its exception).

        Raises:
            RuntimeError: the loop is closed, or the task was cancelled from the asyncio side.
        """
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        tasks: list[asyncio.Task[T]] = []

        def finished(_: object) -> None:  # on the loop's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        def start() -> None:  # on the loop's thread
            task = self.loop.create_task(fn(*args))
            task.add_done_callback(finished)
            tasks.append(task)

        def cancel() -> None:  # on the loop's thread, after `start` (callbacks run in order)
            for task in tasks:
                task.cancel()

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:
            raise RuntimeError("the broker client's asyncio loop is closed") from None
        try:
            await done.wait()
        except trio.Cancelled:
            with contextlib.suppress(RuntimeError):  # closed: the task is gone with it
                self.loop.call_soon_threadsafe(cancel)
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await done.wait()
            raise
        try:
            return tasks[0].result()
        except asyncio.CancelledError:
            raise RuntimeError("the broker client's asyncio task was cancelled") from None


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    """The thread: run the loop until stopped, then cancel what is left and close it."""
    loop.call_soon(started.set)
    try:
        loop.run_forever()
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            gathered = asyncio.gather(*leftover, return_exceptions=True)
            loop.run_until_complete(asyncio.wait_for(gathered, CLOSE_TIMEOUT))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except Exception:  # a task that would not stop: the loop is dropped all the same
        logger.warning("the broker client's asyncio loop did not stop cleanly", exc_info=True)
    finally:
        loop.close()


@contextlib.asynccontextmanager
async def open_loop_thread() -> AsyncIterator[LoopThread]:
    """Start an asyncio loop in a daemon thread; stop it and join the thread on leaving (bounded).

    A daemon thread: a loop that does not stop within the bound never keeps the process alive.
    """
    loop = _new_event_loop()
    started = threading.Event()
    thread = threading.Thread(
        target=_serve, args=(loop, started), name="relay-broker-loop", daemon=True
    )
    thread.start()
    await trio.to_thread.run_sync(started.wait)
    try:
        yield LoopThread(loop)
    finally:
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        with trio.move_on_after(2 * CLOSE_TIMEOUT, shield=True):
            await trio.to_thread.run_sync(thread.join, abandon_on_cancel=True)
