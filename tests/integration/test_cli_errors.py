"""What a user sees when the command line cannot do its job: one line, no password; exit 2 for
bad configuration, 69 for a database not reached within --wait."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import psycopg
import pytest

from relay.demo.embedded import EmbeddedPostgres

from ..conftest import PostgresServer
from .cli_runs import assert_one_clear_line, relay


def test_migrate_with_a_bad_host_exits_69_with_one_line() -> None:
    """A name that does not resolve (yet: a service not created yet) is an outage, not a typo."""
    dsn = "postgresql://me:s3cr3t-pw@nosuch.invalid/db"
    result = relay("migrate", "--dsn", dsn, "--wait", "0")
    line = assert_one_clear_line(result, secret="s3cr3t-pw", code=69)
    assert "nosuch.invalid" in line


def test_migrate_with_a_closed_port_exits_69_with_one_line() -> None:
    dsn = "host=127.0.0.1 port=1 user=me password=s3cr3t-pw"
    result = relay("migrate", "--dsn", dsn, "--wait", "0")
    line = assert_one_clear_line(result, secret="s3cr3t-pw", code=69)
    assert "127.0.0.1:1" in line
    assert line.endswith("connection refused")


def test_status_waits_up_to_wait_with_one_line_per_try_then_exits_69() -> None:
    dsn = "postgresql://me:s3cr3t-pw@127.0.0.1:1/db"
    result = relay("status", "--dsn", dsn, "--wait", "1.5")
    assert result.returncode == 69, result
    *tries, last = result.stderr.strip().splitlines()
    assert len(tries) >= 2 and all("connection refused; trying again in" in t for t in tries)
    assert last == (
        "relay: database not reachable within 1.5s:"
        " status failed at 127.0.0.1:1/db: connection refused"
    )
    assert "s3cr3t-pw" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("password", ["hunter/22", "hun@ter22", "s3cr#etpw", "s3cr:etpw"])
def test_a_password_holding_a_delimiter_is_not_printed_though_libpq_misreads_it(
    password: str,
) -> None:
    result = relay("migrate", "--dsn", f"postgresql://me:{password}@127.0.0.1:1/db", "--wait", "0")
    # misread, the DSN is malformed (2) or points at a closed port (69)
    line = assert_one_clear_line(result, secret=password, code=(2, 69))
    for piece in ("hunter", "ter22", "s3cr", "etpw"):
        assert piece not in line


def test_migrate_with_a_malformed_dsn_exits_2_with_one_line() -> None:
    result = relay("migrate", "--dsn", "postgresql://me:s3cr3t-pw@localhost:notaport/db")
    assert_one_clear_line(result, secret="s3cr3t-pw")


def test_migrate_with_a_bad_password_exits_2_with_one_line(postgres_server: PostgresServer) -> None:
    server = postgres_server.embedded
    if server is None:
        pytest.skip("needs the embedded server, whose authentication the test may change")
    _add_role_with_password(server, "relay_pw_user", "right-password")
    dsn = f"postgresql://relay_pw_user:wrong-pw-42@127.0.0.1:{server.port}/postgres"
    line = assert_one_clear_line(relay("migrate", "--dsn", dsn), secret="wrong-pw-42")
    assert "password authentication failed" in line


def _add_role_with_password(server: EmbeddedPostgres, role: str, password: str) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if not exists:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(role), psycopg.sql.Literal(password)
                )
            )
            server.require_password(role)


def test_a_password_in_the_environment_dsn_is_not_printed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "migrate", "--wait", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"RELAY_DSN": "postgresql://me:env-secret-9@127.0.0.1:1/db", "PATH": "/usr/bin:/bin"},
    )
    assert_one_clear_line(result, secret="env-secret-9", code=69)


def test_a_dsn_pointing_at_a_server_that_is_not_postgresql_exits_2() -> None:
    """Something answers on the port, but not PostgreSQL (say, an HTTP server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            for _ in range(4):  # libpq may try SSL first, then plain
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        line = assert_one_clear_line(
            relay("migrate", "--dsn", f"postgresql://me:s3cr3t-pw@127.0.0.1:{port}/db"),
            secret="s3cr3t-pw",
        )
    assert f"127.0.0.1:{port}/db" in line


def test_an_unparsable_dsn_never_echoes_its_parts() -> None:
    line = assert_one_clear_line(
        relay("migrate", "--dsn", "postgresql://app:hunter2 x@db/app"), secret="hunter2"
    )
    assert "invalid DSN" in line
