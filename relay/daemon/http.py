"""A small HTTP server for the daemon's endpoints: hypercorn's HTTP/1 protocol on trio, with
bounded connections.

The accept loop is our own rather than `hypercorn.trio.serve`, so that the number of connections
is capped: every connection holds a file descriptor, and a crowd of idle clients on the metrics
port must never take the ones the relay needs for its database and broker connections. Past
`MAX_CONNECTIONS` a new connection is closed at once; an idle keep-alive connection is closed
after `IDLE_TIMEOUT` seconds and a request must arrive within `READ_TIMEOUT`.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import attrs
import hypercorn.config
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from ..errors import ConfigError

MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 5.0
READ_TIMEOUT = 10


class _ServerConfig(hypercorn.config.Config):
    """Hypercorn's configuration for our own accept loop."""

    def __init__(self) -> None:
        super().__init__()
        # No access log: a scrape every few seconds is not news, and hypercorn would write it to
        # stdout, which is the stdout sink's. Errors go through the logging tree (to stderr).
        self.accesslog = None
        self.errorlog = logging.getLogger("hypercorn.error")
        self.include_server_header = False
        self.keep_alive_timeout = IDLE_TIMEOUT
        self.read_timeout = READ_TIMEOUT


@attrs.define(eq=False)
class SwitchableApp:
    """An ASGI app that hands every request to `app`, which can be replaced while serving (the
    daemon serves a "starting" app until the relay is up)."""

    app: ASGIFramework

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        await self.app(scope, receive, send)


def shown(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(address: tuple[str, int], field: str = "metrics_addr") -> socket.socket:
    """A listening socket on `address`; a failure is a `ConfigError` of `field`."""
    where = shown(*address)
    host, port = address
    try:
        family, type_, proto, _, sockaddr = (
            await trio.socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        )[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        raise ConfigError(field, f"cannot listen on {where}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(field, f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


@attrs.define(eq=False)
class _Connections:
    """Counts the connections being served, and refuses those past the cap."""

    app: Any
    config: _ServerConfig
    context: WorkerContext
    limit: int
    active: int = 0
    refused: int = 0

    async def __call__(self, stream: trio.SocketStream) -> None:
        if self.active >= self.limit:
            self.refused += 1
            await trio.aclose_forcefully(stream)
            return
        self.active += 1
        try:
            await TCPServer(self.app, self.config, self.context, {}, stream)  # type: ignore[arg-type]
        finally:
            self.active -= 1


async def serve_asgi(
    app: ASGIFramework, sock: socket.socket, *, max_connections: int = MAX_CONNECTIONS
) -> None:
    """Serve `app` on the listening `sock` until cancelled, at most `max_connections` at once.

    Accepting goes on when the process is out of file descriptors (trio's `serve_listeners`
    pauses and tries again), so the server comes back by itself.
    """
    handler = _Connections(ASGIWrapper(app), _ServerConfig(), WorkerContext(None), max_connections)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    await trio.serve_listeners(handler, [listener])
