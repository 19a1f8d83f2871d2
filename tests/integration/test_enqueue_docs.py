"""docs/enqueue.md's examples run as written: each Python block as a script, each `$` line of a
console block as a command, against a fresh database named by `RELAY_DSN`."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg

from .enqueue_layers import asyncpg_dsn

PAGE = Path(__file__).resolve().parents[2] / "docs" / "enqueue.md"
BLOCKS = re.findall(r"^```(python|console)\n(.*?)^```$", PAGE.read_text(), re.M | re.S)
SCRIPTS = [code for kind, code in BLOCKS if kind == "python"]
COMMANDS = [
    line.removeprefix("$ ")
    for kind, code in BLOCKS
    if kind == "console"
    for line in code.splitlines()
    if line.startswith("$ ")
]


def _env(dsn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "PG"))}
    env.pop("DATABASE_URL", None)
    return {**env, "RELAY_DSN": asyncpg_dsn(dsn)}  # a postgresql:// URL, as the page asks


def test_the_page_has_an_example_per_layer() -> None:
    text = "\n".join(SCRIPTS)
    for layer in (
        "psycopg.connect",
        "psycopg.AsyncConnection",
        "Session(engine)",
        "engine.begin() as conn:",
        "AsyncSession(engine)",
        "create_async_engine",
        "asyncpg.connect",
        "asyncpg.create_pool",
    ):
        assert layer in text, layer
    assert COMMANDS == ["relay migrate"]


def test_every_example_runs_and_its_events_are_in_the_outbox(empty_database_dsn: str) -> None:
    """From a database without the outbox: the page's `relay migrate` makes it."""
    database_dsn = empty_database_dsn
    env = _env(database_dsn)
    bin_dir = Path(sys.executable).parent
    for command in COMMANDS:
        argv = shlex.split(command)
        result = subprocess.run(
            [str(bin_dir / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (command, result.stderr)
    for script in SCRIPTS:
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (script, result.stderr)
        assert result.stdout.startswith("enqueued "), result.stdout
    with psycopg.connect(database_dsn) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM relay.outbox ORDER BY id")]
    assert keys == ["order-42", "order-43", None, *(f"order-{n}" for n in range(44, 50))]
