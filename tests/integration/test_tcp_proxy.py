"""The test proxy itself: forwards, cuts, refuses and comes back."""

from __future__ import annotations

import functools

import trio

from ..tcp_proxy import open_tcp_proxy


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(1024):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def test_the_proxy_forwards_cuts_refuses_and_comes_back() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(
                functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
            )
            async with open_tcp_proxy(listener.socket.getsockname()[1]) as proxy:
                stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                await stream.send_all(b"ping")
                assert await stream.receive_some(1024) == b"ping"

                proxy.go_down()
                assert await stream.receive_some(1024) == b""  # cut
                refused = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                assert await refused.receive_some(1024) == b""  # closed at once

                proxy.come_back()
                again = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                await again.send_all(b"pong")
                assert await again.receive_some(1024) == b"pong"
                for each in (stream, refused, again):
                    await each.aclose()
            nursery.cancel_scope.cancel()
