"""Every SQL statement relay runs against the outbox, named, with identifiers quoted."""

from __future__ import annotations

import attrs
from psycopg import sql

_EVENT_COLUMNS = "id, topic, key, payload, headers::json, created_at, attempts"


@attrs.frozen
class Queries:
    """The statements for one schema."""

    schema: str
    channel: str

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @property
    def claim(self) -> sql.Composed:
        """Delete up to %(limit)s available events, oldest first, returning them.

        An event is not handed out while an earlier event of its key waits for a retry: that is
        what keeps key order across retries. Only retried rows (attempts > 0) can be waiting, and
        a partial index holds just those, so the check stays cheap.
        """
        return sql.SQL(
            """
            DELETE FROM {outbox} WHERE id IN (
                SELECT o.id FROM {outbox} o
                WHERE o.available_at <= now()
                  AND (o.key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM {outbox} w
                        WHERE w.attempts > 0 AND w.key = o.key AND w.id < o.id
                          AND w.available_at > now()))
                ORDER BY o.id
                LIMIT %(limit)s
                FOR UPDATE OF o SKIP LOCKED)
            RETURNING """
            + _EVENT_COLUMNS
        ).format(outbox=self._table("outbox"))

    @property
    def put_back(self) -> sql.Composed:
        """Re-insert a claimed event with its own id, so it keeps its place in key order.

        The delay runs from the settle (`clock_timestamp()`), not from the claim (`now()`), so a
        slow delivery does not eat into the backoff.
        """
        return sql.SQL(
            """
            INSERT INTO {outbox} (id, topic, key, payload, headers, created_at, attempts,
                                  available_at, last_error)
            OVERRIDING SYSTEM VALUE
            VALUES (%(id)s, %(topic)s, %(key)s, %(payload)s, %(headers)s, %(created_at)s,
                    %(attempts)s, clock_timestamp() + make_interval(secs => %(delay)s),
                    %(last_error)s)
            """
        ).format(outbox=self._table("outbox"))

    @property
    def bury(self) -> sql.Composed:
        """Move a claimed event to the dead table."""
        return sql.SQL(
            """
            INSERT INTO {dead} (id, topic, key, payload, headers, created_at, attempts,
                                available_at, last_error)
            VALUES (%(id)s, %(topic)s, %(key)s, %(payload)s, %(headers)s, %(created_at)s,
                    %(attempts)s, now(), %(last_error)s)
            """
        ).format(dead=self._table("outbox_dead"))

    @property
    def next_due(self) -> sql.Composed:
        """Seconds until the earliest scheduled retry, or NULL."""
        return sql.SQL(
            """
            SELECT extract(epoch FROM min(available_at) - now())::float8 FROM {outbox}
            WHERE attempts > 0 AND available_at > now()
            """
        ).format(outbox=self._table("outbox"))

    @property
    def quiet(self) -> sql.SQL:
        """Silence the NOTIFY trigger for this transaction: relay's own re-inserts wake nobody."""
        return sql.SQL("SET LOCAL relay.quiet = 'on'")

    @property
    def listen(self) -> sql.Composed:
        return sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))

    @property
    def check_schema(self) -> sql.Composed:
        """Fails with UndefinedTable when the outbox is missing."""
        return sql.SQL("SELECT 1 FROM {outbox} LIMIT 0").format(outbox=self._table("outbox"))

    def enqueue(self, rows: int) -> sql.Composed:
        """Insert `rows` events in one statement."""
        values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s)") for _ in range(rows))
        return sql.SQL(
            "INSERT INTO {outbox} (topic, key, payload, headers) VALUES {values} RETURNING id"
        ).format(outbox=self._table("outbox"), values=values)
