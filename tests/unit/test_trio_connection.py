"""TrioConnection's socket waits, on a socket pair (no database)."""

from __future__ import annotations

import socket

import trio
from psycopg.waiting import Ready, Wait

from relay.postgres.trio_connection import _readiness


async def test_waiting_for_either_side_returns_what_is_ready() -> None:
    left, right = socket.socketpair()
    with left, right, trio.fail_after(5):
        assert await _readiness(left.fileno(), Wait.RW) == Ready.W  # nothing to read yet
        right.send(b"x")
        assert await _readiness(left.fileno(), Wait.RW) == Ready.RW
        assert await _readiness(left.fileno(), Wait.R) == Ready.R
