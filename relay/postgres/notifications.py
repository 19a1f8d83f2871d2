"""The listening connection's notifications, read in trio."""

from __future__ import annotations

from typing import Any

import attrs
import psycopg
import trio

from ..config import Config
from ..errors import ListenerLost
from .connect import map_psycopg_errors


@attrs.define(eq=False)
class Notifications:
    """Yields once per NOTIFY (a burst may count once); raises `ListenerLost` when it ends.

    Waits for the socket in trio itself and reads notifications with libpq's own calls: nothing
    else uses a listening connection, and psycopg's `notifies()` would wake every 0.1 s to check
    for a timeout, which is most of what an idle relay costs.
    """

    conn: psycopg.AsyncConnection[Any]
    config: Config

    def __aiter__(self) -> Notifications:
        return self

    async def __anext__(self) -> None:
        pgconn = self.conn.pgconn
        with map_psycopg_errors(self.config, "listen", into=ListenerLost):
            while pgconn.notifies() is None:
                await trio.lowlevel.wait_readable(pgconn.socket)
                pgconn.consume_input()  # raises once the server closed the connection
                if pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise ListenerLost("the listening connection ended")
            while pgconn.notifies() is not None:
                pass  # the rest of a burst: one wakeup is enough
