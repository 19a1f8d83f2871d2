"""A TCP proxy on loopback that a test controls: cut every connection, refuse new ones, restore.

It stands between a client and a shared server (a broker on this machine), so a test can break
the client's connection without touching the server other tests and sessions use.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

_CHUNK = 64 * 1024


@attrs.define(eq=False)
class TcpProxy:
    """Forwards connections on `127.0.0.1:port` to `127.0.0.1:target_port`.

    Attributes:
        port: where clients connect; known once `open_tcp_proxy` has started it.
        connections: connections accepted so far (refused ones included).
    """

    target_port: int
    port: int = 0
    connections: int = 0
    _up: bool = True
    _live: set[trio.CancelScope] = attrs.field(factory=set)

    @property
    def up(self) -> bool:
        return self._up

    def break_connections(self) -> None:
        """Cut every open connection at once; new connections are still forwarded."""
        for scope in self._live:
            scope.cancel()

    def go_down(self) -> None:
        """Cut every open connection and close new ones as soon as they are accepted."""
        self._up = False
        self.break_connections()

    def come_back(self) -> None:
        """Forward new connections again."""
        self._up = True

    async def _serve(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                client = await listener.accept()
                self.connections += 1
                if not self._up:
                    await client.aclose()
                    continue
                nursery.start_soon(self._forward, client)

    async def _forward(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._live.add(scope)
            try:
                async with client:
                    server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(_pump, server, client, nursery.cancel_scope)
            except OSError:
                pass  # either side went away: the connection is over
            finally:
                self._live.discard(scope)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(_CHUNK):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()


@asynccontextmanager
async def open_tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    """A running proxy to `127.0.0.1:target_port`, stopped (every connection cut) on the way out."""
    proxy = TcpProxy(target_port)
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    proxy.port = listener.socket.getsockname()[1]
    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(proxy._serve, listener)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
