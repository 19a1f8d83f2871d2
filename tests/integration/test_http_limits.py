"""The daemon's HTTP server cannot be made to hold more than its share of file descriptors."""

from __future__ import annotations

import trio

from relay.daemon import http
from relay.daemon.http import listen, serve_asgi
from relay.daemon.observability import StartingApp
from relay.outages import Outages

GUARD = 30


async def _get(port: int, path: str = "/healthz") -> bytes:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        return await stream.receive_some(4096)


async def test_connections_past_the_cap_are_closed_at_once_and_the_rest_still_served() -> None:
    with trio.fail_after(GUARD):
        sock = await listen(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial_serve(StartingApp(Outages()), sock, 4))
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(4)]
            await trio.sleep(0.2)  # all four accepted and held, idle
            excess = await trio.open_tcp_stream("127.0.0.1", port)
            assert await excess.receive_some(1024) == b""  # closed at once, nothing served
            # A place is freed once the server lets go of a connection the client closed, within
            # the idle timeout (hypercorn notices the close when its keep-alive timer ends).
            await idle.pop().aclose()
            started = trio.current_time()
            while not (await _get(port)).startswith(b"HTTP/1.1 200"):
                assert trio.current_time() - started < http.IDLE_TIMEOUT + 2
                await trio.sleep(0.2)
            for stream in [*idle, excess]:
                await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> None:
    with trio.fail_after(GUARD):
        sock = await listen(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial_serve(StartingApp(Outages()), sock, 4))
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                started = trio.current_time()
                assert await stream.receive_some(1024) == b""  # never sent a request
                assert trio.current_time() - started < http.IDLE_TIMEOUT + 2
            nursery.cancel_scope.cancel()


def partial_serve(app: StartingApp, sock: object, limit: int) -> object:
    async def serve() -> None:
        await serve_asgi(app, sock, max_connections=limit)  # type: ignore[arg-type]

    return serve
