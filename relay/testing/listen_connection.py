"""`ListenConnection`: a `MemoryOutbox` listen connection, which can be dropped or silenced."""

from __future__ import annotations

import attrs
import trio


@attrs.define(eq=False)
class ListenConnection:
    """One listen connection: yields once per notification, ends when dropped."""

    _send: trio.MemorySendChannel[None]
    _receive: trio.MemoryReceiveChannel[None]
    silenced: bool = False
    dropped: bool = False

    def notify(self) -> None:
        if not (self.silenced or self.dropped):
            self._send.send_nowait(None)

    def drop(self) -> None:
        self.dropped = True
        self._send.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    def __aiter__(self) -> ListenConnection:
        return self

    async def __anext__(self) -> None:
        try:
            await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if self.dropped:  # what was buffered on a lost connection is lost with it
            raise StopAsyncIteration
