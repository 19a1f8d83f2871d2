"""The machine's Redis, used by the Redis sink tests and the broker-outage test when it answers."""

from __future__ import annotations

import socket

REDIS_PORT = 6379


def redis_answers() -> bool:
    """Whether a Redis answers PING on 127.0.0.1:`REDIS_PORT`."""
    try:
        with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
