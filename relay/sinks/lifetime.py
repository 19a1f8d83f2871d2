"""The lifetime the network sinks share: entering connects, leaving closes, within bounds.

Why a thread loop: the broker clients (nats-py, aio-pika, redis-py) run on a plain asyncio loop
(uvloop when installed) in a thread that the sink owns while it is entered, not on relay's
trio-asyncio loop, where each of their many callbacks cost a trip through trio's scheduler and the
sinks reached a fifth of their client's own speed. Each batch crosses into that loop once
(`relay.aio_thread`); psycopg stays on trio-asyncio.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, Self, TypeVar

import attrs
import trio

from ..aio_thread import LoopThread, open_loop_thread

S = TypeVar("S")

CLOSE_TIMEOUT = 5.0  # seconds a sink waits for its connection to close before it lets go


@attrs.define(eq=False)
class NetworkSink(abc.ABC, Generic[S]):
    """A sink that holds a connection while it is entered (`async with sink`).

    Entering starts an asyncio loop in a thread of the sink's own (unless `uses_asyncio` is False:
    a client that runs on trio or its own threads), then calls `_connect`; leaving, or a
    `_connect` that fails half-way, closes what it put on its exit stack, then stops the loop and
    joins its thread. It can be entered again once left (the drainer does, after a
    `SinkUnavailable`), never twice at once.
    """

    uses_asyncio: ClassVar[bool] = True
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, init=False, repr=False)
    _session: S | None = attrs.field(default=None, init=False, repr=False)
    _loop: LoopThread | None = attrs.field(default=None, init=False, repr=False)

    @abc.abstractmethod
    async def _connect(self, stack: contextlib.AsyncExitStack) -> S:
        """Connect, pushing on `stack` what closes it (with `close_bounded`); return the session
        `_open` gives `deliver`."""

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError(f"this {type(self).__name__} is already open")
        async with contextlib.AsyncExitStack() as stack:
            try:
                if self.uses_asyncio:
                    self._loop = await stack.enter_async_context(open_loop_thread())
                self._session = await self._connect(stack)
            except BaseException:
                self._loop = None
                raise
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack, self._session, self._loop = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def _aio(self) -> LoopThread:
        """The loop the client runs on, while the sink is entered (or entering)."""
        if self._loop is None:
            raise RuntimeError(f"this {type(self).__name__} runs no asyncio loop")
        return self._loop

    def _open(self) -> S:
        """The session; raises RuntimeError when the sink was not entered."""
        if self._session is None:
            name = type(self).__name__
            raise RuntimeError(f"this {name} is not open: enter it first: async with sink")
        return self._session


async def close_bounded(
    close: Callable[[], Awaitable[object]], *ignore: type[BaseException]
) -> None:
    """Await `close()`, ignoring the exceptions `ignore`, shielded from cancellation and for at most
    `CLOSE_TIMEOUT` seconds: a sink left because it was cancelled still closes, and never hangs."""
    with trio.move_on_after(CLOSE_TIMEOUT, shield=True), contextlib.suppress(*ignore):
        await close()
