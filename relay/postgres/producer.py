"""A writer of single-row transactions, as an application would write: for the demo and benches."""

from __future__ import annotations

import time
from typing import Any

import attrs
import psycopg

from ..config import Config
from .connect import map_psycopg_errors
from .enqueue import enqueue


@attrs.define(eq=False)
class Producer:
    """Writes events one transaction each on its own connection (blocking: run it in a thread).

    `commit_times` maps each id to the wall-clock time its commit returned.
    """

    config: Config
    conn: psycopg.Connection[Any]
    commit_times: dict[int, float] = attrs.field(factory=dict)

    @classmethod
    def connect(cls, config: Config) -> Producer:
        with map_psycopg_errors(config, "producer connect"):
            return cls(config, psycopg.connect(config.dsn, application_name="relay-producer"))

    def write(self, topic: str, payload: Any, *, key: str | None = None) -> int:
        """Enqueue one event and commit; returns its id."""
        with map_psycopg_errors(self.config, "enqueue"):
            id = enqueue(self.conn, topic, payload, key=key, schema=self.config.schema)
            self.conn.commit()
        self.commit_times[id] = time.time()
        return id

    def close(self) -> None:
        self.conn.close()
