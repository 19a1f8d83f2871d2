"""The outbox schema, as numbered migrations applied once each under an advisory lock."""

from __future__ import annotations

from typing import Any

import attrs
import psycopg
from psycopg import sql

from ..config import Config
from ..errors import MigrationRefused, SchemaMissing
from .connect import connection_kwargs, describe_connection, describe_dsn, map_psycopg_errors
from .queries import Queries


@attrs.frozen
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    # Refuse to run while other relay connections are open on the database: relays of the old
    # and the new schema at once would break a guarantee.
    alone: bool = False


# {schema}, {outbox}, {dead}, {notify} are identifiers; {channel} is a literal.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "outbox, dead-letter table and NOTIFY trigger",
        (
            """
        CREATE TABLE {outbox} (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            topic        text NOT NULL,
            key          text,
            payload      jsonb NOT NULL,
            headers      jsonb NOT NULL DEFAULT '{{}}',
            created_at   timestamptz NOT NULL DEFAULT now(),
            attempts     int NOT NULL DEFAULT 0,
            available_at timestamptz NOT NULL DEFAULT now(),
            last_error   text
        )
        """,
            # Only retried rows can hold back their key or be due later: two small partial indexes
            # serve the claim's hold-back check and next_due without taxing the writers' inserts.
            "CREATE INDEX outbox_retrying_key_idx ON {outbox} (key, id) WHERE attempts > 0",
            "CREATE INDEX outbox_retrying_due_idx ON {outbox} (available_at) WHERE attempts > 0",
            """
        CREATE TABLE {dead} (
            id           bigint PRIMARY KEY,
            topic        text NOT NULL,
            key          text,
            payload      jsonb NOT NULL,
            headers      jsonb NOT NULL DEFAULT '{{}}',
            created_at   timestamptz NOT NULL,
            attempts     int NOT NULL,
            available_at timestamptz NOT NULL,
            last_error   text,
            failed_at    timestamptz NOT NULL DEFAULT now()
        )
        """,
            "CREATE INDEX outbox_dead_failed_at_idx ON {dead} (failed_at)",
            # One NOTIFY per statement, carrying nothing: the table is the truth. relay's own
            # re-inserts of failed events set relay.quiet so they do not wake the relay itself.
            """
        CREATE FUNCTION {notify}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF coalesce(current_setting('relay.quiet', true), '') <> 'on' THEN
                PERFORM pg_notify({channel}, '');
            END IF;
            RETURN NULL;
        END
        $$
        """,
            """
        CREATE TRIGGER outbox_notify AFTER INSERT ON {outbox}
        FOR EACH STATEMENT EXECUTE FUNCTION {notify}()
        """,
        ),
    ),
    Migration(
        2,
        "partition index: relays share the outbox by hash partitions of the key",
        (
            # Must stay the expression `queries.partition_of` writes, with PARTITIONS = 64: the
            # claim reads each partition it locked in id order through this index.
            """
        CREATE INDEX IF NOT EXISTS outbox_partition_idx ON {outbox} (
            (CASE WHEN key IS NULL THEN (id & 63)::int ELSE hashtext(key) & 63 END), id)
        """,
        ),
        # Relays before it lock keys, relays after it lock partitions: the two do not exclude
        # each other, and together they could deliver one key's events out of order.
        alone=True,
    ),
    Migration(
        3,
        "deferred events hold their key: the waiting-row indexes cover retried rows and rows put"
        " back with a reason",
        (
            # A route that is down defers its events without counting an attempt: they wait with
            # attempts = 0 but with a last_error, and must hold back their key like a retry.
            # The predicate must stay the one `queries._NOT_HELD_BEHIND_A_RETRY` writes, for the
            # planner to see that the claim's hold check may read them.
            "CREATE INDEX IF NOT EXISTS outbox_waiting_key_idx ON {outbox} (key, id)"
            " WHERE attempts > 0 OR last_error IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS outbox_waiting_due_idx ON {outbox} (available_at)"
            " WHERE attempts > 0 OR last_error IS NOT NULL",
            "DROP INDEX IF EXISTS {retrying_key_idx}",
            "DROP INDEX IF EXISTS {retrying_due_idx}",
        ),
        # Relays before it hold keys only behind retried rows: beside a relay that defers, they
        # could deliver a later event of a deferred event's key first.
        alone=True,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def _render(statement: str, config: Config) -> sql.Composed:
    return sql.SQL(statement).format(
        schema=sql.Identifier(config.schema),
        outbox=sql.Identifier(config.schema, "outbox"),
        dead=sql.Identifier(config.schema, "outbox_dead"),
        notify=sql.Identifier(config.schema, "outbox_notify"),
        channel=sql.Literal(config.channel),
        retrying_key_idx=sql.Identifier(config.schema, "outbox_retrying_key_idx"),
        retrying_due_idx=sql.Identifier(config.schema, "outbox_retrying_due_idx"),
    )


def migrate_connection(conn: psycopg.Connection[Any], config: Config) -> list[Migration]:
    """Bring the schema up to date in one transaction on `conn`; returns what was applied.

    A transaction-scoped advisory lock, keyed by the schema name, serialises concurrent runs: the
    second waits, then finds nothing left to do. No statement timeout: building an index on a
    large outbox may take a while.

    Raises:
        MigrationRefused: a migration that must run `alone` found relay connections open.
    """
    schema = sql.Identifier(config.schema)
    versions = sql.Identifier(config.schema, "schema_version")
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"relay.migrate:{config.schema}"],
        )
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version int PRIMARY KEY, description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(versions)
        )
        select_versions = sql.SQL("SELECT version FROM {}").format(versions)
        applied = {row[0] for row in conn.execute(select_versions)}
        done = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            if migration.alone:
                _refuse_beside_relays(conn, config, migration)
            for statement in migration.statements:
                conn.execute(_render(statement, config))
            conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(versions),
                [migration.version, migration.description],
            )
            done.append(migration)
    return done


def _refuse_beside_relays(
    conn: psycopg.Connection[Any], config: Config, migration: Migration
) -> None:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND pid <> pg_backend_pid()",
        [config.application_name],
    ).fetchone()
    if row and row[0]:
        raise MigrationRefused(
            f"migration {migration.version} ({migration.description}) must run with no relay"
            f" connected, and {row[0]} relay connection(s) are open on this database: stop every"
            " relay, run `relay migrate`, then start them again"
        )


def migrate(config: Config) -> list[Migration]:
    """Connect with `config` and bring its schema up to date; returns what was applied.

    The connection is named `<application_name>-migrate`, so that a migration that must run
    `alone` tells a relay from another `relay migrate` waiting for its turn.

    Raises:
        OutboxUnavailable: the database cannot be reached or refused a statement.
        MigrationRefused: see `migrate_connection`.
    """
    return migrate_where(config)[1]


def migrate_where(config: Config) -> tuple[str, list[Migration]]:
    """`migrate`, and where it was done (`describe_connection`)."""
    kwargs = connection_kwargs(config) | {"application_name": f"{config.application_name}-migrate"}
    with (
        map_psycopg_errors(config, "migrate"),
        psycopg.connect(config.dsn, autocommit=True, **kwargs) as conn,
    ):
        return describe_connection(conn), migrate_connection(conn, config)


def require_latest(config: Config, version: int | None) -> None:
    """Raise `SchemaMissing` unless the schema was migrated to `LATEST_VERSION`."""
    if version is None or version < LATEST_VERSION:
        raise SchemaMissing(
            f"the outbox in schema {config.schema!r} at {describe_dsn(config.dsn)} is missing or"
            f" out of date (version {version or 'none'}, need {LATEST_VERSION}): run"
            " `relay migrate`"
        )


def schema_version(conn: psycopg.Connection[Any], config: Config) -> int | None:
    """The schema's applied version, or None when it was never migrated."""
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", [f'"{config.schema}".schema_version']
    ).fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute(Queries(config.schema).schema_version).fetchone()
    return found[0] if found else None
