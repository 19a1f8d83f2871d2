"""The statements the relay itself runs against the outbox (claim, settle, listen, backlog,
tidy-up, schema check), named, with identifiers quoted.

The writer's statements are in `enqueue_queries`, the operator's (`relay status`, `relay dead`) in
`admin_queries`; all three build on `SchemaQueries`.
"""

from __future__ import annotations

import functools
import zlib

import attrs
from psycopg import sql

from ..config import notify_channel

_EVENT_COLUMNS = "id, topic, key, payload, headers, created_at, attempts"

# Keys are spread over this many partitions; a claim transaction locks the partitions it takes
# events from. Events without a key are spread by id: they go to whoever holds their partition.
PARTITIONS = 64
# The metrics' pending count is exact up to this many events, an estimate past it (see `backlog`).
BACKLOG_EXACT_UP_TO = 10_000


def _size(column: str) -> str:
    """SQL for the bytes of a jsonb `column`: as stored (no detoasting) unless compressed, then its
    JSON text's, which is what the claim hands over."""
    return (
        f"(CASE WHEN pg_column_compression({column}) IS NULL THEN pg_column_size({column})"
        f" ELSE octet_length({column}::text) END)::bigint"
    )


def partition_of(alias: str) -> sql.SQL:
    """The partition of the outbox row `alias`, exactly as `outbox_partition_idx` computes it
    (so that the planner matches the index)."""
    return sql.SQL(
        f"(CASE WHEN {alias}.key IS NULL THEN ({alias}.id & {PARTITIONS - 1})::int"
        f" ELSE hashtext({alias}.key) & {PARTITIONS - 1} END)"
    )


def _namespace(name: str) -> int:
    """A signed 32-bit advisory-lock namespace for `name`."""
    digest = zlib.crc32(name.encode())
    return digest - (1 << 32) if digest >= 1 << 31 else digest


# True for an outbox row `o` unless an earlier event of its key waits for a retry or a deferral
# (a route down). Only retried rows (attempts > 0) and rows put back with a reason (a deferral
# keeps attempts, and records a last_error) can be waiting, and partial indexes with this very
# predicate (migration 3) hold just those. When none waits at all, the uncorrelated first test
# (run once per statement) spares every row the second.
_NOT_HELD_BEHIND_A_RETRY = """(
    -- min(), not EXISTS: the planner then always reads the partial index, never the table
    (SELECT min(r.available_at) FROM {outbox} r
     WHERE (r.attempts > 0 OR r.last_error IS NOT NULL) AND r.available_at > now()) IS NULL
    OR NOT EXISTS (
        SELECT 1 FROM {outbox} w
        WHERE (w.attempts > 0 OR w.last_error IS NOT NULL) AND w.key = o.key AND w.id < o.id
          AND w.available_at > now()))"""


# The claim's generic plans are made (and made again, whenever an ANALYZE invalidates them) at an
# EXECUTE, from the statistics of that moment. An outbox is often empty, and its statistics say so:
# planned then, each claim read the whole table (a Seq Scan and a sort per partition), and once a
# backlog built up, every claim cost time in proportion to it (100 ms for 500 of 40,000 events).
# Planned without sequential scans, a claim reads its partitions' heads through their indexes
# whatever the statistics said (test_schema checks the plans made on an empty table).
CLAIM_PLANNING = "SET LOCAL enable_seqscan = off"
# The results `claim_head` returns before `lock_partitions`'s: BEGIN's and CLAIM_PLANNING's.
CLAIM_HEAD_OPENING = 2


@attrs.frozen
class SchemaQueries:
    """Statements for one schema, each composed once: the base of each group of them."""

    schema: str

    def _table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


@attrs.frozen
class Queries(SchemaQueries):
    """The relay's own statements: claim, settle, listen, backlog, tidy-up, schema check."""

    @property
    def channel(self) -> str:
        return notify_channel(self.schema)

    @functools.cached_property
    def lock_partitions(self) -> sql.Composed:
        """Take this transaction's advisory locks on a fair share of the partitions of a window
        of the queue, and note them in the transaction's settings for `claim`:
        `relay.claim_partitions`, and `relay.claim_quotas` (how many events to take from each, in
        proportion to its rows in the window, together at least $2).

        The claims that share the queue are the relays that hold a membership lock (`join`) and
        $3, the claims the caller will have in flight besides this one. The window is $2 rows per
        sharing claim, $1 rows per sharing claim from the head: what they take together, so that
        with few keys one key behind the others does not fill the window alone. The share is the
        window's partitions divided by the sharing claims, taken oldest first, skipping those
        another claim transaction holds: two claims never hold one key at once, and the living
        share the head of the queue between them. The locks end with the transaction.

        Returns the partitions locked and their quotas (int[] literals), how many of the window's
        partitions it left to others, and the seconds until the earliest scheduled retry (or
        NULL).
        """
        return sql.SQL(
            """
            WITH sharing AS (
                -- the claims sharing the head of the queue: every relay's, the caller's others
                SELECT greatest(1, $3 + (
                    SELECT count(*) FROM pg_locks
                    WHERE locktype = 'advisory' AND classid = {members_oid}
                      AND objsubid = 2 AND granted AND database = (
                          SELECT oid FROM pg_database WHERE datname = current_database())))
                    AS claims
            ), in_window AS (
                SELECT p, min(id) AS first, count(*) AS n FROM (
                    SELECT {partition} AS p, o.id FROM {outbox} o
                    WHERE o.available_at <= now()
                      -- rows held behind a retry must not fill the window
                      AND (o.key IS NULL OR """
            + _NOT_HELD_BEHIND_A_RETRY
            + """)
                    ORDER BY o.id
                    OFFSET $1 * (SELECT claims FROM sharing)
                    LIMIT $2 * (SELECT claims FROM sharing)) head
                GROUP BY p
            ), locked AS (
                -- OFFSET 0: a fence, so that the lock is tried row by row, oldest first, until
                -- the LIMIT has its share (pushed below the sort it would lock every partition)
                SELECT p, n FROM (SELECT p, n FROM in_window ORDER BY first OFFSET 0) oldest_first
                WHERE pg_try_advisory_xact_lock({namespace}, p)
                LIMIT (SELECT ceil(count(*)::float8 / (SELECT claims FROM sharing))::int
                       FROM in_window)
            )
            SELECT set_config('relay.claim_partitions',
                              coalesce(array_agg(p), '{{}}')::text, true),
                   set_config('relay.claim_quotas',
                              coalesce(array_agg(ceil(n * $2::float8 / total)::int), '{{}}')::text,
                              true),
                   (SELECT count(*) FROM in_window) - count(*),
                   (SELECT extract(epoch FROM min(available_at) - now())::float8 FROM {outbox}
                    WHERE (attempts > 0 OR last_error IS NOT NULL) AND available_at > now())
            FROM locked, (SELECT sum(n) AS total FROM locked) window_rows
            """
        ).format(
            outbox=self._table("outbox"),
            partition=partition_of("o"),
            namespace=sql.Literal(self.lock_namespace),
            members_oid=sql.Literal(self.member_namespace & 0xFFFFFFFF),
        )

    @functools.cached_property
    def claim(self) -> sql.Composed:
        """Delete up to $1 available events, and up to $2 bytes of them, of the partitions
        `lock_partitions` locked, each partition's oldest first and as many as its quota,
        returning them, and on each row whether the byte limit left events behind (`cut`).

        A partition's events are taken in id order, up to its quota: for every key the claim takes
        the oldest of its available events, so key order holds. An event is not handed out while
        an earlier event of its key waits for a retry: that keeps key order across retries. The
        byte limit keeps the lowest ids whose running size stays within $2, and always the first
        (a larger event goes alone): a prefix in id order, so key order holds there too. An
        event's size is its payload's and headers' as stored, or, where PostgreSQL compressed
        them, their JSON text's (a compressed size would let a batch hold far more than $2).

        It must be a statement of its own, after `lock_partitions`: its snapshot is then taken
        after the locks, and sees everything the partition's previous holder committed (a retried
        event put back included, which must keep holding its key). No `FOR UPDATE SKIP LOCKED`:
        the partition lock already makes every row of the partition this transaction's alone.

        One index range scan per partition, on `outbox_partition_idx`; `id = ANY(ARRAY(...))`
        rather than `id IN (...)`: one index lookup per claimed id, where a generic plan would
        hash-join the whole table.
        """
        return sql.SQL(
            """
            WITH candidates AS (
                SELECT taken.id, row_number() OVER w AS n, sum(taken.size) OVER w AS running
                FROM unnest(current_setting('relay.claim_partitions')::int[],
                            current_setting('relay.claim_quotas')::int[]) AS share(p, quota)
                CROSS JOIN LATERAL (
                    SELECT o.id, """
            + _size("o.payload")
            + " + "
            + _size("o.headers")
            + """ AS size
                    FROM {outbox} o
                    WHERE {partition} = share.p
                      -- clock_timestamp(), not now(): an event put back (held, available at
                      -- once) by the partition's previous holder after this transaction began
                      -- must not look unavailable, or the claim would take a later event first
                      AND o.available_at <= clock_timestamp()
                      AND (o.key IS NULL OR """
            + _NOT_HELD_BEHIND_A_RETRY
            + """)
                    ORDER BY {partition}, o.id
                    LIMIT share.quota) taken
                WINDOW w AS (ORDER BY taken.id ROWS UNBOUNDED PRECEDING)
            )
            DELETE FROM {outbox} WHERE id = ANY(ARRAY(
                SELECT id FROM candidates WHERE n <= $1 AND (running <= $2 OR n = 1)))
            RETURNING """
            + _EVENT_COLUMNS
            + """, EXISTS (SELECT FROM candidates WHERE n <= $1 AND running > $2 AND n > 1)"""
        ).format(outbox=self._table("outbox"), partition=partition_of("o"))

    @functools.cached_property
    def prepare_claim(self) -> sql.Composed:
        """Prepare `lock_partitions` and `claim` on a connection, once: planning them costs more
        than running them."""
        return sql.SQL(
            "PREPARE relay_lock_partitions(int, int, int) AS {};"
            " PREPARE relay_claim(int, bigint) AS {}"
        ).format(self.lock_partitions, self.claim)

    @staticmethod
    def claim_head(limit: int, max_bytes: int, share_with: int = 0) -> bytes:
        """A claim transaction's opening, in one round trip: BEGIN, `CLAIM_PLANNING`,
        `lock_partitions`, `claim`.

        Four statements in one simple query (`prepare_claim` first): each still takes its own
        snapshot, which the claim's correctness rests on, so READ COMMITTED whatever the server's
        default. Plain bytes, built without psycopg's composition: this runs on every claim.
        """
        limit, max_bytes, share_with = int(limit), int(max_bytes), int(share_with)
        return (
            f"BEGIN ISOLATION LEVEL READ COMMITTED; {CLAIM_PLANNING};"
            f" EXECUTE relay_lock_partitions(0, {limit}, {share_with});"
            f" EXECUTE relay_claim({limit}, {max_bytes})"
        ).encode()

    @staticmethod
    def claim_further(windows: int, limit: int, max_bytes: int, share_with: int = 0) -> bytes:
        """`lock_partitions` and `claim` again, in the open claim transaction, `windows` windows
        further down the queue (see `lock_partitions`)."""
        limit, max_bytes, share_with = int(limit), int(max_bytes), int(share_with)
        skip = int(windows) * limit
        return (
            f"EXECUTE relay_lock_partitions({skip}, {limit}, {share_with});"
            f" EXECUTE relay_claim({limit}, {max_bytes})"
        ).encode()

    @functools.cached_property
    def lock_namespace(self) -> int:
        """The first half of every partition lock: one namespace per schema."""
        return _namespace(f"relay.partitions:{self.schema}")

    @functools.cached_property
    def member_namespace(self) -> int:
        """The first half of every membership lock (see `join`)."""
        return _namespace(f"relay.members:{self.schema}")

    @functools.cached_property
    def join(self) -> sql.Composed:
        """Count this session as one relay draining the schema, until it ends: `lock_partitions`
        divides the partitions by the sessions holding this lock (the listeners)."""
        return sql.SQL("SELECT pg_advisory_lock({}, pg_backend_pid())").format(
            sql.Literal(self.member_namespace)
        )

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
        """Pending events (an estimate past `BACKLOG_EXACT_UP_TO`), seconds since the oldest was
        written, and the NOTIFY queue's usage.

        Cheap enough for every metrics scrape on any backlog: up to `BACKLOG_EXACT_UP_TO` rows are
        counted (an index-only scan of at most that many entries); past it, the count is the
        statistics collector's `n_live_tup`, which every insert and delete keeps up to date (within
        a second or so) without reading the table. The oldest is the lowest id's row (one index
        probe): ids follow insert order.
        """
        return sql.SQL(
            """
            SELECT CASE WHEN head.n < {bound} THEN head.n
                        ELSE greatest(head.n, coalesce((
                            SELECT n_live_tup FROM pg_stat_user_tables
                            WHERE schemaname = {schema} AND relname = 'outbox'), 0)) END,
                   (SELECT extract(epoch FROM now() - created_at)::float8 FROM {outbox}
                    ORDER BY id LIMIT 1),
                   pg_notification_queue_usage()
            FROM (SELECT count(*) AS n FROM (SELECT FROM {outbox} LIMIT {bound}) rows) head
            """
        ).format(
            outbox=self._table("outbox"),
            schema=sql.Literal(self.schema),
            bound=sql.Literal(BACKLOG_EXACT_UP_TO),
        )

    @functools.cached_property
    def vacuum(self) -> sql.Composed:
        """Clear removed rows out of the outbox and its indexes (not in a transaction).

        TRUNCATE false: giving emptied pages at the end back to the system needs an exclusive
        lock, which VACUUM keeps trying for up to 5 s while writers insert; that stalled a drain
        for 3 s. Autovacuum still truncates, on its own time.
        """
        return sql.SQL("VACUUM (SKIP_LOCKED, TRUNCATE false) {outbox}").format(
            outbox=self._table("outbox")
        )

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

    @functools.cached_property
    def schema_version(self) -> sql.Composed:
        """The version the schema was migrated to (NULL when never)."""
        return sql.SQL("SELECT max(version) FROM {}").format(self._table("schema_version"))
