"""`relay.aio_thread`: the broker clients' asyncio loop in a thread, crossed once per call.

Real threads and a real asyncio loop, so the real clock, each test under a `trio.fail_after` guard.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from relay import aio_thread
from relay.aio_thread import open_loop_thread

GUARD = 10


async def test_a_call_runs_on_a_uvloop_of_its_own_thread_and_returns_its_result() -> None:
    async def where(value: int) -> tuple[int, str, str]:
        loop = asyncio.get_running_loop()
        return value + 1, threading.current_thread().name, type(loop).__module__

    with trio.fail_after(GUARD):
        async with open_loop_thread() as aio:
            value, thread, module = await aio.run(where, 41)
    assert value == 42
    assert thread == "relay-broker-loop"
    assert module.startswith("uvloop")


async def test_an_exception_of_the_coroutine_is_raised_as_it_is() -> None:
    async def refuse() -> None:
        raise ValueError("refused")

    with trio.fail_after(GUARD):
        async with open_loop_thread() as aio:
            with pytest.raises(ValueError, match="refused"):
                await aio.run(refuse)


async def test_cancelling_the_wait_cancels_the_task_and_returns_once_it_has_stopped() -> None:
    """Nothing the task shares with the caller changes after `run` is left."""
    steps: list[str] = []

    async def hang() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)  # cleaning up takes a moment, on asyncio
            steps.append("stopped")

    with trio.fail_after(GUARD):
        async with open_loop_thread() as aio:
            with trio.move_on_after(0.1):
                await aio.run(hang)
            assert steps == ["stopped"]


async def test_a_task_that_will_not_stop_is_waited_for_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aio_thread, "CLOSE_TIMEOUT", 0.2)
    release = threading.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue  # swallows every cancellation until the test lets it go

    with trio.fail_after(GUARD):
        async with open_loop_thread() as aio:
            started = trio.current_time()
            with trio.move_on_after(0.1):
                await aio.run(stubborn)
            assert trio.current_time() - started < 1.0
            release.set()


async def test_leaving_stops_the_loop_cancels_what_is_left_and_joins_the_thread() -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with trio.fail_after(GUARD):
        async with open_loop_thread() as aio:
            aio.loop.call_soon_threadsafe(lambda: aio.loop.create_task(forever()))
            await trio.sleep(0.05)
        assert cancelled.is_set()
        assert aio.loop.is_closed()
        assert not any(t.name == "relay-broker-loop" for t in threading.enumerate())
        with pytest.raises(RuntimeError, match="asyncio loop is closed"):
            await aio.run(asyncio.sleep, 0)
