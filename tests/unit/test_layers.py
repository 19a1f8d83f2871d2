"""The embeddable core stays light: importing it loads no part of the operational layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The daemon (and its metrics server's libraries), the command line, the demo and its producer.
OPERATIONAL = (
    "relay.daemon",
    "relay.cli",
    "relay.demo",
    "relay.postgres.producer",
    "hypercorn",
    "prometheus_client",
)


@pytest.mark.parametrize(
    "imports",
    [
        "relay",
        "relay, relay.testing, relay.sinks, relay.postgres.outbox, relay.postgres.admin",
    ],
)
def test_importing_the_core_loads_nothing_operational(imports: str) -> None:
    """In a fresh interpreter: this one has imported everything already."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys, {imports}; print(*sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = result.stdout.split()
    assert "relay" in loaded
    assert [
        name
        for name in loaded
        if any(name == top or name.startswith(top + ".") for top in OPERATIONAL)
    ] == []


# The database layers `relay.enqueue` can write through besides psycopg: optional extras, imported
# only for an object of theirs.
OPTIONAL_WRITERS = ("sqlalchemy", "asyncpg", "greenlet")


def test_importing_relay_and_refusing_a_non_connection_loads_no_optional_database_layer() -> None:
    """In a fresh interpreter, with SQLAlchemy and asyncpg installed (the dev extra)."""
    script = (
        "import sys, relay\n"
        "try:\n"
        "    relay.enqueue(object(), 't', 1)\n"
        "except TypeError:\n"
        "    pass\n"
        "print(*sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = result.stdout.split()
    assert "relay.postgres.enqueue" in loaded
    assert [name for name in loaded if name.partition(".")[0] in OPTIONAL_WRITERS] == []
