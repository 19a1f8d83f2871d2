"""The lifetime the network sinks share: entering connects, leaving closes, within bounds."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, Self, TypeVar

import attrs
import trio

from ..aio import asyncio_loop

S = TypeVar("S")

CLOSE_TIMEOUT = 5.0  # seconds a sink waits for its connection to close before it lets go


@attrs.define(eq=False)
class NetworkSink(abc.ABC, Generic[S]):
    """A sink that holds a connection while it is entered (`async with sink`).

    Entering opens an asyncio loop when the caller has none (unless `uses_asyncio` is False), then
    calls `_connect`; leaving, or a `_connect` that fails half-way, closes what it put on its exit
    stack, then the loop. It can be entered again once left (the drainer does, after a
    `SinkUnavailable`), never twice at once.
    """

    uses_asyncio: ClassVar[bool] = True
    _stack: contextlib.AsyncExitStack | None = attrs.field(default=None, init=False, repr=False)
    _session: S | None = attrs.field(default=None, init=False, repr=False)

    @abc.abstractmethod
    async def _connect(self, stack: contextlib.AsyncExitStack) -> S:
        """Connect, pushing on `stack` what closes it (with `close_bounded`); return the session
        `_open` gives `deliver`."""

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError(f"this {type(self).__name__} is already open")
        async with contextlib.AsyncExitStack() as stack:
            if self.uses_asyncio:
                await stack.enter_async_context(asyncio_loop())
            self._session = await self._connect(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            # Outside any cancel scope of our own: the asyncio loop's nursery, if the loop is
            # ours, must be left in the scope it was entered in.
            await stack.aclose()

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
