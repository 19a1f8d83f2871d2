"""Every SQL statement relay runs against the outbox, named, with identifiers quoted."""

from __future__ import annotations

import functools
import zlib

import attrs
from psycopg import sql

from ..config import notify_channel

_EVENT_COLUMNS = "id, topic, key, payload, headers, created_at, attempts"

# True for an outbox row `o` unless an earlier event of its key waits for a retry. Only retried
# rows (attempts > 0) can be waiting, and a partial index holds just those. When no retry waits
# at all, the uncorrelated first test (run once per statement) spares every row the second.
_NOT_HELD_BEHIND_A_RETRY = """(
    -- min(), not EXISTS: the planner then always reads the partial index, never the table
    (SELECT min(r.available_at) FROM {outbox} r WHERE r.attempts > 0 AND r.available_at > now())
        IS NULL
    OR NOT EXISTS (
        SELECT 1 FROM {outbox} w
        WHERE w.attempts > 0 AND w.key = o.key AND w.id < o.id AND w.available_at > now()))"""


@attrs.frozen
class Queries:
    """The statements for one schema, each composed once."""

    schema: str

    @property
    def channel(self) -> str:
        return notify_channel(self.schema)

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    @functools.cached_property
    def lock_keys(self) -> sql.Composed:
        """Take this transaction's advisory locks on the keys of $2 rows, $1 rows from the head of
        the queue, and note them in the transaction's `relay.claim_keys` setting for `claim`.

        Returns the keys locked (an int[] literal), how many keys another relay holds, and the
        seconds until the earliest scheduled retry (or NULL). A key held by another relay's claim
        transaction fails to lock here, so two relays never hold events of one key at once; the
        locks end with the transaction.
        """
        return sql.SQL(
            """
            SELECT set_config('relay.claim_keys',
                              coalesce(array_agg(h) FILTER (WHERE locked), '{{}}')::text, true),
                   count(*) FILTER (WHERE NOT locked),
                   (SELECT extract(epoch FROM min(available_at) - now())::float8 FROM {outbox}
                    WHERE attempts > 0 AND available_at > now())
            FROM (
                SELECT h, pg_try_advisory_xact_lock({namespace}, h) AS locked FROM (
                    SELECT DISTINCT hashtext(key) AS h FROM (
                        SELECT o.key FROM {outbox} o
                        WHERE o.available_at <= now() AND o.key IS NOT NULL
                          -- rows held behind a retry must not fill the window
                          AND """
            + _NOT_HELD_BEHIND_A_RETRY
            + """
                        ORDER BY o.id OFFSET $1 LIMIT $2) head
                ) keys
            ) heads
            """
        ).format(outbox=self._table("outbox"), namespace=sql.Literal(self.lock_namespace))

    @functools.cached_property
    def claim(self) -> sql.Composed:
        """Delete up to $1 available events, oldest first, returning them.

        Keyed events are taken only for the keys `lock_keys` locked, read back once per statement
        from `relay.claim_keys`; events without a key go to whoever is free. An event is not
        handed out while an earlier event of its key waits for a retry: that keeps key order
        across retries.

        It must be a statement of its own, after `lock_keys`: its snapshot is then taken after
        the locks, and sees everything the previous holder of a key committed (a retried event
        put back included, which must keep holding its key).

        `id = ANY(ARRAY(...))` rather than `id IN (...)`: one index lookup per claimed id, where a
        generic plan, guessing at LIMIT $1, would hash-join the whole table.
        """
        return sql.SQL(
            """
            DELETE FROM {outbox} WHERE id = ANY(ARRAY(
                SELECT o.id FROM {outbox} o
                -- clock_timestamp(), not now(): an event put back (held, available at once) by
                -- the key's previous holder after this transaction began must not look
                -- unavailable, or the claim would take a later event of its key first
                WHERE o.available_at <= clock_timestamp()
                  AND (o.key IS NULL
                       -- IN (SELECT ...), not = ANY(...): a hashed lookup, not a walk along
                       -- the array for every row the scan passes
                       OR (hashtext(o.key) IN (
                               SELECT unnest(current_setting('relay.claim_keys')::int[]))
                           AND """
            + _NOT_HELD_BEHIND_A_RETRY
            + """))
                ORDER BY o.id
                LIMIT $1
                FOR UPDATE OF o SKIP LOCKED))
            RETURNING """
            + _EVENT_COLUMNS
        ).format(outbox=self._table("outbox"))

    @functools.cached_property
    def prepare_claim(self) -> sql.Composed:
        """Prepare `lock_keys` and `claim` on a connection, once: planning them costs more than
        running them."""
        return sql.SQL(
            "PREPARE relay_lock_keys(int, int) AS {}; PREPARE relay_claim(int) AS {}"
        ).format(self.lock_keys, self.claim)

    @staticmethod
    def claim_head(limit: int) -> bytes:
        """A claim transaction's opening, in one round trip: BEGIN, `lock_keys`, `claim`.

        Three statements in one simple query (`prepare_claim` first): each still takes its own
        snapshot. Plain bytes, built without psycopg's composition: this runs on every claim.
        """
        limit = int(limit)  # the key-lock window is one batch of rows
        return f"BEGIN; EXECUTE relay_lock_keys(0, {limit}); EXECUTE relay_claim({limit})".encode()

    @staticmethod
    def claim_further(windows: int, limit: int) -> bytes:
        """`lock_keys` and `claim` again, in the open claim transaction, `windows` key-lock
        windows (of one batch of rows each) further down the queue."""
        limit = int(limit)
        skip = int(windows) * limit
        return f"EXECUTE relay_lock_keys({skip}, {limit}); EXECUTE relay_claim({limit})".encode()

    @functools.cached_property
    def lock_namespace(self) -> int:
        """The first half of every key lock: one namespace per schema (a signed 32-bit int)."""
        digest = zlib.crc32(f"relay.keys:{self.schema}".encode())
        return digest - (1 << 32) if digest >= 1 << 31 else digest

    @functools.cached_property
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

    @functools.cached_property
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

    @functools.cached_property
    def backlog(self) -> sql.Composed:
        """Pending events, seconds since the oldest was written, and the NOTIFY queue's usage.

        `count(*)` reads the whole table, O(n): it runs once per metrics scrape, never on the
        delivery path, and `statement_timeout` bounds it on a huge backlog.
        """
        return sql.SQL(
            """
            SELECT count(*), extract(epoch FROM now() - min(created_at))::float8,
                   pg_notification_queue_usage()
            FROM {outbox}
            """
        ).format(outbox=self._table("outbox"))

    @functools.cached_property
    def vacuum(self) -> sql.Composed:
        """Clear removed rows out of the outbox and its indexes (not in a transaction)."""
        return sql.SQL("VACUUM (SKIP_LOCKED) {outbox}").format(outbox=self._table("outbox"))

    @functools.cached_property
    def quiet(self) -> sql.SQL:
        """Silence the NOTIFY trigger for this transaction: relay's own re-inserts wake nobody."""
        return sql.SQL("SET LOCAL relay.quiet = 'on'")

    @functools.cached_property
    def listen(self) -> sql.Composed:
        return sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))

    @functools.cached_property
    def check_schema(self) -> sql.Composed:
        """Fails with UndefinedTable when the outbox is missing."""
        return sql.SQL("SELECT 1 FROM {outbox} LIMIT 0").format(outbox=self._table("outbox"))

    def enqueue(self, rows: int) -> sql.Composed:
        """Insert `rows` events in one statement."""
        values = sql.SQL(", ").join(sql.SQL("(%s, %s, %s, %s)") for _ in range(rows))
        return sql.SQL(
            "INSERT INTO {outbox} (topic, key, payload, headers) VALUES {values} RETURNING id"
        ).format(outbox=self._table("outbox"), values=values)
